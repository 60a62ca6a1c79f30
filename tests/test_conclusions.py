"""Each of the study's four conclusions, checked on results made to support it and made to refute it."""

import dataclasses

import numpy as np
import pytest

from mnist_probe.names import EDGE_CONTROL
from mnist_probe.pages.conclusions import codes_deform_softly, conclusions, not_continuous
from mnist_probe.pages.page_results import AugmentRow, CkaPair
from mnist_probe.pages.trust import data_randomisation_sentence, standing_sentence
from mnist_probe.pages.verdicts import (
    attribution_sentence,
    cka_pair_sentence,
    gap_sentence,
    position_sentence,
    shift_cka_sentence,
    sweep_position_sentence,
)
from mnist_probe.rows import RandomisationRow
from mnist_probe.stages.adapters import page_setting, recipe_line
from mnist_probe.stages.results import PositionRow, ShiftProb
from tests.builders import beyond_result, curve, gap_row, shift_result, study_results
from tests.conftest import REPO, make_cfg


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    """How make reproduce's run is set up, as its page says it."""
    cfg = make_cfg(tmp_path_factory.mktemp("c"), "+experiment=reproduce", f"reproduce.docs={REPO}/unused")
    return page_setting(cfg)


def verdicts(config, **kwargs) -> list[str]:
    return [c.verdict for c in conclusions(study_results(setting=config, **kwargs))]


def test_code_vectors_keep_what_the_classes_need(config):
    assert verdicts(config)[0] == "supported"
    assert verdicts(config, codes=0.90, cnn=0.99)[0] == "not supported"  # an interpreter 9 points below


def test_convolution_is_the_key_and_position_sensitivity(config):
    assert verdicts(config)[1] == "convolution supported; position sensitivity supported"
    assert verdicts(config, pixels=0.995)[1].startswith("convolution not supported")
    only_unaugmented = "position sensitivity supported only without shift augmentation"
    # judged like for like: the sweep's one network and recipe without and with random shifts
    assert verdicts(config, aug_dy4=0.97)[1].endswith(only_unaugmented)
    assert verdicts(config, aug_dy4=0.97, unaug_dy4=0.97)[1].endswith("position sensitivity not supported")
    assert verdicts(config, cnn_dy4=0.97)[1].endswith("position sensitivity supported")  # another recipe
    text = conclusions(study_results(setting=config))[1].text
    assert "Like for like (keras_cnn, the default recipe, only the augmentation changed)" in text
    assert "keeps 50.00% at dy = -4" in text and "up to 2.8 px 60.00%" in text
    # a page without the sweep: the CNN alone, and no sentence on what augmentation does
    alone = conclusions(dataclasses.replace(study_results(setting=config, cnn_dy4=0.97), augment=None))[1]
    assert alone.verdict.endswith("position sensitivity not supported")
    assert (
        "not tested on this page" in alone.text and "depends on the training augmentation" not in alone.text
    )


def test_probabilities_jump_under_translation(config):
    assert verdicts(config)[2] == "supported"  # P(1) falls 0.97 between dy = -3 and -4
    smooth = {"p_true": (1.0,) * 6, "change": 0.01}
    assert verdicts(config, **smooth, unaug_change=0.15)[2] == "supported only without shift augmentation"
    assert verdicts(config, **smooth, unaug_change=0.01)[2] == "not supported"
    # the pair's CNN with random shifts changes often too: augmentation is not what decides it
    assert verdicts(config, **smooth, unaug_change=0.15, aug_change=0.2)[2] == "not supported"


def test_the_jump_is_taken_between_shifts_1_px_apart_only(config):
    """dy = 0, -2, -4: no two shifts 1 px apart, so no jump is quoted (the fall from 0.98 to 0.01 spans
    2 px); with dy = -3 too, the largest 1-px step, not the 2-px fall from dy = 0 to -2."""

    def text(dys, p):
        rows = [ShiftProb("CNN", 0, dy, q, 3, 1 - q) for dy, q in zip(dys, p, strict=True)]
        shifted = dataclasses.replace(shift_result(), rows=rows)
        return not_continuous(dataclasses.replace(study_results(setting=config), shift=shifted)).text

    assert "no two of its shifts are 1 px apart" in text([0, -2, -4], [1.0, 0.98, 0.01])
    assert "between neighbouring 1-px shifts is 0.050" in text([0, -2, -3, -4], [1.0, 0.10, 0.05, 0.01])


def test_code_vectors_deform_more_softly(config):
    assert verdicts(config)[3] == "supported"
    assert verdicts(config, cos_code=0.3, cos_maps=0.5)[3] == "not supported"


def test_the_texts_quote_the_numbers_they_judge(config):
    texts = [c.text for c in conclusions(study_results(cnn_dy4=0.6123, unaug_dy4=0.4321, setting=config))]
    assert "keeps 61.23% accuracy at dy = -4" in texts[1] and "it keeps 43.21% at dy = -4" in texts[1]
    assert "largest change of P(true) between neighbouring 1-px shifts is 0.970" in texts[2]
    assert "dense_1 0.90" in texts[3] and "conv2d_2 0.40" in texts[3]


def test_the_gap_sentence_names_its_largest_part():
    rows = [gap_row(0, 0.788, 0.93, 0.95, 0.985, 0.978), gap_row(1, 0.97, 0.975, 0.98, 0.99, 0.991)]
    text = gap_sentence(rows)
    first, second = text.split("; after")
    assert first.startswith("After epoch 0 validation accuracy exceeds the progress bar's train_acc by 19.0")
    assert "lag +14.2" in first and "the largest part: lag" in first
    assert second.startswith(" epoch 1") and "by 2.1 points" in second
    flipped = gap_sentence([gap_row(0, 0.99, 0.99, 0.99, 0.995, 0.98)])
    assert "falls short of" in flipped and "the largest part: generalisation" in flipped
    assert "not measured" in gap_sentence([])


def test_the_largest_part_is_named_only_where_its_interval_clears_the_others():
    """The same numbers, with intervals narrow (1,000 images agree) and wide (the parts overlap)."""
    row = gap_row(0, 0.788, 0.93, 0.95, 0.985, 0.978)  # lag +14.2, dropout +2.0, aug +3.5, gen -0.7
    narrow = {p: [v - 0.01, v + 0.01] for p, v in row.parts().items()}
    wide = {**narrow, "augmentation": [-0.05, 0.16]}  # reaches past lag's lower end (0.132)
    clear = gap_sentence([dataclasses.replace(row, ci=narrow)])
    assert "the largest part: lag (95% CI 13.20–15.20 points)" in clear
    unclear = gap_sentence([dataclasses.replace(row, ci=wide)])
    assert "the largest part not resolved (lag: 95% CI 13.20–15.20 points)" in unclear


def test_the_gap_parts_intervals_cover_the_parts_they_bound():
    """Paired differences on 500 simulated images: each part's interval holds its own value, and
    the true difference of the simulated rates in about 95% of 50 draws."""
    from mnist_probe.gap import part_intervals, split_gap

    rng = np.random.default_rng(0)
    covered = 0
    for draw in range(50):
        train = rng.random(500) < 0.93
        eval_ = train | (rng.random(500) < 0.3)  # eval mode rescues 30% of train mode's errors: +2.1
        clean = eval_ | (rng.random(500) < 0.5)
        ci = part_intervals({"train": train, "eval": eval_, "clean": clean}, running=0.8, val=0.97, seed=draw)
        parts = split_gap(0.8, train.mean(), eval_.mean(), clean.mean(), 0.97)
        assert all(lo <= parts[p] <= hi for p, (lo, hi) in ci.items())
        covered += ci["dropout"][0] <= 0.07 * 0.3 <= ci["dropout"][1]
    assert 43 <= covered <= 50  # 47.5 expected; 43 is two standard deviations below


def test_the_beyond_sentences_follow_the_numbers():
    assert "saliency moves with the digit" in attribution_sentence(beyond_result().attributions)
    assert "does not move" in attribution_sentence(beyond_result(consistency_last=0.5).attributions)
    kept = beyond_result(code_position=0.5)
    assert "position is given up" in position_sentence(beyond_result().positions, "dense_1")
    said = position_sentence(kept.positions, "dense_1")
    assert "position is still known" in said and "R² = 0.90 of it from conv2d_1 and 0.50 from dense_1" in said
    assert "the code layer changes least" in shift_cka_sentence(beyond_result())
    assert "conv2d_2, not the code layer, changes least" in shift_cka_sentence(beyond_result(code_cka=0.3))


def test_the_cka_sentences_are_unresolved_where_the_intervals_overlap():
    """The code layer 'changes least' only where its interval clears every other layer's; two networks
    'part with depth' only where the first and last layers' intervals part."""
    base = beyond_result(code_cka=0.95, conv_cka=0.9)  # code 0.95 against conv 0.90 at dy = -5
    narrow = [[[v - 0.01, v + 0.01] for v in row] for row in base.shift_cka]
    wide = [[[v - 0.1, v + 0.1] for v in row] for row in base.shift_cka]
    resolved = shift_cka_sentence(dataclasses.replace(base, shift_cka_ci=narrow))
    assert "the code layer changes least" in resolved and "dense_1 0.95 (95% CI 0.94–0.96)" in resolved
    unresolved = shift_cka_sentence(dataclasses.replace(base, shift_cka_ci=wide))
    assert "not resolved which layer changes least (dense_1 by its point value)" in unresolved

    def pair(half: float) -> CkaPair:
        layers = ["conv2d_1", "dense_1"]
        return CkaPair(
            "seeds",
            "a",
            "b",
            layers,
            layers,
            [[0.95, 0.2], [0.3, 0.6]],
            [[[0.95 - half, 0.95 + half], [0.1, 0.3]], [[0.2, 0.4], [0.6 - half, 0.6 + half]]],
        )

    assert "they part with depth" in cka_pair_sentence(pair(0.05))
    assert "not resolved whether they part or converge" in cka_pair_sentence(pair(0.2))


def randomised(method: str, mode: str, low: float, high: float) -> RandomisationRow:
    return RandomisationRow(method, mode, 1, "layer", (low + high) / 2, 0.5, [low, high])


def test_which_sentences_on_the_maps_stand_follows_both_sanity_checks():
    """A method stands where its maps depend on the weights (cascading) and on the labels (data);
    one check it fails sends it to 'describe the image'; a check across the line leaves it unresolved."""
    result = dataclasses.replace(
        beyond_result(),
        attributions=[
            dataclasses.replace(beyond_result().attributions[0], method=m)
            for m in ("saliency", "grad_cam", "integrated_gradients")
        ],
        sanity=[
            randomised("saliency", "cascading", 0.0, 0.1),
            randomised("grad_cam", "cascading", 0.0, 0.1),
            randomised("integrated_gradients", "cascading", 0.8, 0.9),
        ],
        data_randomisation=[
            randomised("saliency", "data", 0.1, 0.2),
            randomised("grad_cam", "data", 0.4, 0.6),
            randomised("integrated_gradients", "data", 0.0, 0.1),
        ],
    )
    text = standing_sentence(result)
    assert "those on saliency stand" in text
    assert "those on integrated gradients describe the image more than the network" in text
    assert "those on grad cam stand unresolved" in text
    assert "stand untested" in standing_sentence(dataclasses.replace(result, sanity=[]))


def test_the_data_randomisation_sentence_says_when_the_network_did_not_memorise():
    rows = [randomised("saliency", "data", 0.1, 0.2), randomised(EDGE_CONTROL, "data", 1.0, 1.0)]
    text = data_randomisation_sentence(rows, 0.98, 500)
    assert "500 training images with their labels shuffled (it fits 98.0% of them; one such network" in text
    assert "saliency 0.15 (95% CI 0.10–0.20): depends on what the network learnt" in text
    assert "The edge control lands there, as it must." in text
    assert "it has not memorised them and the test is weak" in data_randomisation_sentence(rows, 0.4, 500)
    assert "No data-randomisation test" in data_randomisation_sentence([], None, None)


def sweep_row(model: str, shift: float, code_position: float) -> AugmentRow:
    positions = [
        PositionRow("conv2d_1", 50176, 0.95, 0.4, 0.9, 1 / 25),
        PositionRow("dense_1", 256, code_position, 0.05, 0.99, 1 / 25),
    ]
    return AugmentRow(model, shift, 0.99, curve({}), 0.8, 0.9, 0.02, positions)


def test_the_sweep_position_sentence_ranks_the_cnns_by_what_their_code_layer_keeps():
    rows = [sweep_row("max", 0.0, 0.06), sweep_row("max", 0.1, 0.05), sweep_row("aa", 0.0, 0.30)]
    text = sweep_position_sentence(rows)
    assert "read linearly from the code layer (dense_1): max, shift 0.0 0.06; max, shift 0.1 0.05" in text
    assert "least position in max, shift 0.1 and most in aa, shift 0.0" in text
    assert "still known at the code layer in 1 of the 3 CNNs" in text
    assert "given up by the code layer in all 2 CNNs" in sweep_position_sentence(rows[:2])
    unprobed = AugmentRow("m", 0.0, 0.99, curve({}), 0.8, 0.9, 0.02)
    assert "No position probe" in sweep_position_sentence([unprobed])


def test_the_cka_pair_sentence_says_whether_two_networks_part_with_depth():
    def pair(first: float, last: float) -> CkaPair:
        return CkaPair(
            "seeds", "a", "b", ["conv2d_1", "dense_1"], ["conv2d_1", "dense_1"], [[first, 0.2], [0.3, last]]
        )

    assert "conv2d_1 0.95, dense_1 0.60; they part with depth" in cka_pair_sentence(pair(0.95, 0.6))
    assert "they converge with depth" in cka_pair_sentence(pair(0.5, 0.9))
    assert "about as alike at the code layer" in cka_pair_sentence(pair(0.9, 0.88))
    other = CkaPair("x", "a", "b", ["conv1"], ["c1"], [[0.5]])
    assert other.same_layers() == {} and "share no layer name" in cka_pair_sentence(other)


def test_the_recipe_line_says_what_the_recipe_trains_with(tmp_path):

    assert recipe_line(make_cfg(tmp_path, "train=fashion")).endswith(", no augmentation")
    fast = recipe_line(make_cfg(tmp_path, "train=fast"))
    assert fast.startswith("2 epochs of 36,000 images, batch 64") and "loss label_smoothing" in fast
    assert "augmentation rotation 10.0°, zoom 0.1, shift 0.1" in fast
    plain = recipe_line(make_cfg(tmp_path, "train=fast", "train.augment.enabled=false"))
    assert plain.endswith("no augmentation")


def test_what_changes_between_two_runs_is_judged_on_both_intervals():
    """Two report runs' results: a difference whose intervals part is read as one, an overlap is not
    resolved, a number without an interval is shown and not judged, the gap is in points, and the
    page.json a report writes reads back as the results it was written from."""
    from mnist_probe.pages.changes import changes_section
    from mnist_probe.pages.page_results import PageResults
    from mnist_probe.rows import from_json, to_json

    def run(cnn: float, ci: list[float], svm: float, svm_ci: list[float]) -> PageResults:
        r = study_results(cnn=cnn, codes=svm)
        inter = r.interpreters
        rows = [
            dataclasses.replace(x, minus_cnn_ci=svm_ci if x.interpreter == "svm" else None)
            for x in inter.rows
        ]
        gap = [gap_row(0, 0.9, 0.91, 0.92, 0.93, 0.94)]
        inter = dataclasses.replace(inter, cnn=dataclasses.replace(inter.cnn, ci=ci), rows=rows)
        train = dataclasses.replace(r.train, gap=gap, epochs=5)
        return dataclasses.replace(r, train=train, interpreters=inter)

    clothes = run(0.92, [0.915, 0.925], 0.921, [-0.002, 0.004])
    digits = run(0.995, [0.993, 0.997], 0.995, [-0.001, 0.001])
    assert from_json(PageResults, to_json(digits)) == digits  # what report.compare reads back
    text = "\n".join(changes_section(clothes, digits, ("Fashion-MNIST", "MNIST")))
    assert "The CNN's test accuracy: 92.00% (95% CI 91.50–92.50%) on Fashion-MNIST against 99.50%" in text
    assert "(lower on Fashion-MNIST)." in text.splitlines()[4]
    svm = next(line for line in text.splitlines() if line.startswith("- svm on codes"))
    assert svm.endswith("(not resolved).")
    assert "+4.00 points on Fashion-MNIST" in text  # 0.94 - 0.90, in points
    assert "- dt on codes, minus the CNN's accuracy: -0.40% on Fashion-MNIST against -0.50% on MNIST." in text


def test_conclusion_4_is_supported_only_where_cosine_and_cka_agree(config):
    """Where the page holds CKA beside cosine, the verdict weighs both: cosine finds the code layer
    softest (0.9 against 0.4); where CKA finds conv2d_2 softest (0.95 against 0.6), not resolved, and
    the text says what each measure finds."""
    both = dataclasses.replace(
        study_results(setting=config), beyond=beyond_result(code_cka=0.95, conv_cka=0.6)
    )
    assert codes_deform_softly(both).verdict == "supported"
    split = dataclasses.replace(both, beyond=beyond_result(code_cka=0.6, conv_cka=0.95))
    c = codes_deform_softly(split)
    assert c.verdict == "not resolved"
    assert "By cosine, the code vector (dense_1" in c.text and "stays closest" in c.text
    assert "by linear CKA, conv2d_2, not the code layer, changes least" in c.text
    assert "do not agree" in c.text
    neither = dataclasses.replace(
        study_results(setting=config, cos_code=0.3, cos_maps=0.5),
        beyond=beyond_result(code_cka=0.6, conv_cka=0.95),
    )
    assert codes_deform_softly(neither).verdict == "not supported"
    assert codes_deform_softly(study_results(setting=config)).verdict == "supported"  # cosine alone
