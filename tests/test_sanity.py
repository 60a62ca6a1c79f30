"""The model-randomisation test (mnist_probe.sanity): the edge control never moves and is reported
as independent of the model; a method that is a fixed function of the first layer's weights moves
exactly where that layer is randomised; the verdict reads Spearman's interval."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
import torch.nn.functional as F

from mnist_probe.attribution import attribute
from mnist_probe.lenet import LeNet5
from mnist_probe.names import EDGE_CONTROL, RANDOM_ORDER
from mnist_probe.pages.trust import SIMILAR_BELOW, depends_on_model
from mnist_probe.rows import RandomisationRow
from mnist_probe.sanity import (
    SHUFFLED,
    data_randomisation,
    faithfulness,
    model_randomisation,
    randomisable_layers,
    randomisation_sequence,
    similarity,
)


def first_layer_map(model, x, targets):
    """|C1's response|, summed over its channels: depends on c1's weights and nothing else."""
    return F.conv2d(x, model.c1.weight, model.c1.bias, padding=2).abs().sum(1)


def digits(n: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(n, 1, 28, 28)
    x[:, :, 6:22, 10:18] = torch.rand(n, 1, 16, 8, generator=g)  # a blob of ink on a blank page
    return x, torch.arange(n) % 10


def test_the_edge_control_never_moves_and_a_first_layer_method_moves_only_with_that_layer():
    torch.manual_seed(0)
    net = LeNet5().eval()
    x, y = digits()
    layers = randomisable_layers(net)
    assert layers == ["c1", "c3", "c5", "f6", "output"]
    explainers = {"first layer": first_layer_map}
    for mode in ("cascading", "independent"):
        rows = model_randomisation(net, x, y, ["saliency"], mode=mode, explainers=explainers)
        assert len(rows) == 3 * len(layers)  # saliency, the first-layer method, the control; a row a step
        edge = [r for r in rows if r.method == EDGE_CONTROL]
        assert all(r.spearman > 1 - 1e-6 and abs(r.ssim - 1.0) < 1e-6 for r in edge)  # float32 ranks
        first = {r.layer: r.spearman for r in rows if r.method == "first layer"}
        # cascading: c1 joins at the last step; independent: only its own step touches it
        assert first.pop("c1") < 0.99
        assert all(rho > 1 - 1e-6 for rho in first.values()), first
    cascading = model_randomisation(net, x, y, ["saliency"], explainers=explainers)
    assert depends_on_model(cascading, EDGE_CONTROL) == "does not depend on the model"
    assert depends_on_model(cascading, "saliency") != "does not depend on the model"


def test_a_deep_models_cascade_is_sampled_from_the_top_layer_alone_to_every_layer():
    torch.manual_seed(0)
    net = LeNet5().eval()
    x, y = digits(4)
    layers = randomisable_layers(net)  # five
    rows = model_randomisation(net, x, y, ["saliency"], most=3)
    steps = [(r.step, r.layer) for r in rows if r.method == "saliency"]
    # each step's number counts the layers it randomised; the cascade itself is the full one
    assert steps == [(1, layers[-1]), (3, layers[2]), (5, layers[0])]
    whole = model_randomisation(net, x, y, ["saliency"])
    sampled = {(r.method, r.step): r.spearman for r in rows}
    assert sampled == {(r.method, r.step): r.spearman for r in whole if (r.method, r.step) in sampled}
    columns, maps = randomisation_sequence(net, x[0], int(y[0]), ["saliency"], most=3)
    assert columns == ["trained", layers[-1], layers[2], layers[0]]
    assert len(maps["saliency"]) == 4


def test_randomising_leaves_the_trained_model_as_it_was():
    torch.manual_seed(0)
    net = LeNet5().eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x, y = digits(4)
    model_randomisation(net, x, y, ["saliency"], mode="independent")
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_similarity_is_one_for_the_same_map_and_ranks_absolute_values():
    a = torch.randn(5, 28, 28, generator=torch.Generator().manual_seed(1))
    rho, ssim = similarity(a, a)
    assert rho.min() > 0.999999 and ssim.min() > 0.999
    rho, _ = similarity(a, -a)  # the same magnitudes: the same ranks
    assert rho.min() > 0.999999
    rho, _ = similarity(a, torch.randn(5, 28, 28, generator=torch.Generator().manual_seed(2)))
    assert abs(rho.mean()) < 0.1


def test_the_verdict_reads_the_last_cascading_step_and_is_unresolved_across_the_line():
    def rows(low: float, high: float) -> list[RandomisationRow]:
        first = RandomisationRow("m", "cascading", 1, "output", 0.9, 0.9, [0.85, 0.95])
        return [first, RandomisationRow("m", "cascading", 2, "c1", (low + high) / 2, 0.5, [low, high])]

    assert depends_on_model(rows(0.1, 0.3), "m") == "depends on the model"
    assert depends_on_model(rows(0.6, 0.8), "m") == "does not depend on the model"
    assert depends_on_model(rows(SIMILAR_BELOW - 0.1, SIMILAR_BELOW + 0.1), "m") == "not resolved"


def test_deletion_and_insertion_rank_a_faithful_map_above_a_random_order_and_its_reverse_below():
    """A linear model whose evidence for class 0 is known pixel by pixel (w·x): the map w⊙x deletes
    the class soonest and inserts it soonest; the same map reversed does worst; a random order sits
    between."""
    g = torch.Generator().manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 2))
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].bias.zero_()
        model[1].weight[0] = torch.rand(784, generator=g) * 0.05
    x = torch.rand(16, 1, 28, 28, generator=g)
    evidence = (x.flatten(1) * model[1].weight[0]).reshape(16, 28, 28)
    maps = {"faithful": evidence, "reversed": evidence.max() - evidence}
    rows = {(r.method, r.kind): r for r in faithfulness(model, x, torch.zeros(16, dtype=torch.long), maps)}
    for kind, better in (("deletion", float.__lt__), ("insertion", float.__gt__)):
        faithful, random, reverse = (rows[(m, kind)].area for m in ("faithful", RANDOM_ORDER, "reversed"))
        assert better(faithful, random) and better(random, reverse), (kind, faithful, random, reverse)
        assert len(rows[("faithful", kind)].curve) == 20
        low, high = rows[("faithful", kind)].ci
        assert low <= faithful <= high
    assert rows[("faithful", "deletion")].curve[-1] == pytest.approx(0.5)  # everything gone: no evidence


def test_the_sentences_judge_on_intervals_and_report_the_control():
    from mnist_probe.pages.trust import faithful_sentence, sanity_sentence
    from mnist_probe.rows import FaithfulnessRow

    def row(method, low, high):
        return FaithfulnessRow(method, "deletion", (low + high) / 2, [low, high], [])

    text = faithful_sentence(
        [
            row(RANDOM_ORDER, 0.35, 0.40),
            row("saliency", 0.20, 0.25),
            row("grad_cam", 0.30, 0.38),
            row("edge", 0.45, 0.5),
        ]
    )
    assert "saliency 0.23 (95% CI 0.20–0.25): sooner than a random order" in text
    assert "grad cam 0.34 (95% CI 0.30–0.38): not resolved against a random order" in text
    assert "edge 0.47 (95% CI 0.45–0.50): no sooner than a random order" in text
    control = [RandomisationRow(EDGE_CONTROL, "cascading", 1, "c1", 1.0, 1.0, [1.0, 1.0])]
    assert "The edge control lands there, as it must." in sanity_sentence(control)
    broken = [RandomisationRow(EDGE_CONTROL, "cascading", 1, "c1", 0.1, 0.1, [0.0, 0.2])]
    assert "the similarity measure is in doubt" in sanity_sentence(broken)


def test_against_a_network_that_memorised_the_first_layer_method_moves_and_the_control_does_not():
    """The data-randomisation test compares the trained network with another of the same architecture:
    identical weights leave every map in place; other first-layer weights move the first-layer method
    and saliency, never the edge control."""
    torch.manual_seed(0)
    net = LeNet5().eval()
    x, y = digits()
    explainers = {"first layer": first_layer_map}
    same = data_randomisation(net, copy.deepcopy(net), x, y, ["saliency"], explainers=explainers)
    assert [r.method for r in same] == ["saliency", "first layer", EDGE_CONTROL]
    assert all(r.mode == "data" and r.layer == SHUFFLED and r.spearman > 1 - 1e-6 for r in same)
    torch.manual_seed(1)
    other = data_randomisation(net, LeNet5().eval(), x, y, ["saliency"], explainers=explainers)
    rho = {r.method: r.spearman for r in other}
    assert rho["first layer"] < 0.99 and rho["saliency"] < 0.99 and rho[EDGE_CONTROL] > 1 - 1e-6
    assert depends_on_model(other, EDGE_CONTROL, mode="data") == "does not depend on the model"


def test_the_memorising_split_shuffles_the_training_labels_only(tmp_path):
    """memorising() keeps the first N training images and permutes their labels: the same images and
    the same labels as a multiset, most of them moved; the validation labels stay true."""
    from mnist_probe.data import split_tensors
    from mnist_probe.sanity import memorising
    from mnist_probe.specs import DataSpec, Recipe
    from tests.conftest import mnist_root

    data = DataSpec(root=str(mnist_root()))
    shuffled, recipe = memorising(data, Recipe(), 300, 7)
    assert recipe.epochs == 7 and not recipe.augment.enabled and recipe.scheduler is None
    true_x, true_y = split_tensors(
        dataclasses.replace(data, val_size=shuffled.val_size, train_subset=300), "train"
    )
    x, y = split_tensors(shuffled, "train")
    assert torch.equal(x, true_x) and torch.equal(y.sort().values, true_y.sort().values)
    assert (y != true_y).float().mean() > 0.8  # about 90% move under a random permutation of ten classes
    unshuffled = dataclasses.replace(shuffled, shuffle_labels=False)
    assert torch.equal(split_tensors(shuffled, "val")[1], split_tensors(unshuffled, "val")[1])
    assert shuffled.content() != unshuffled.content()  # another cache key: another network


def test_the_randomisation_sequence_starts_from_the_trained_maps():
    torch.manual_seed(0)
    net = LeNet5().eval()
    x, y = digits(2)
    columns, maps = randomisation_sequence(net, x[0], int(y[0]), ["saliency"])
    assert columns == ["trained", "output", "f6", "c5", "c3", "c1"]
    assert set(maps) == {"saliency", EDGE_CONTROL} and all(len(m) == len(columns) for m in maps.values())
    assert torch.allclose(maps["saliency"][0], attribute(net, x[:1], y[:1], "saliency")[0])
    assert all(torch.equal(m, maps[EDGE_CONTROL][0]) for m in maps[EDGE_CONTROL])
    assert not torch.allclose(maps["saliency"][0], maps["saliency"][-1])


def test_each_draw_is_its_own_seed_and_the_score_is_their_mean():
    torch.manual_seed(0)
    net = LeNet5().eval()
    x, y = digits(8)
    three = model_randomisation(net, x, y, ["saliency"], draws=3, seed=7)
    one = model_randomisation(net, x, y, ["saliency"], draws=1, seed=7)
    next_seed = model_randomisation(net, x, y, ["saliency"], draws=1, seed=8)
    for r3, r1, r2 in zip(three, one, next_seed, strict=True):
        assert len(r3.draw_means) == 3 and len(r1.draw_means) == 1 and r3.images == 8
        # draw k is re-initialised with seed + k: the first two draws are the one-draw runs at 7 and 8
        assert r3.draw_means[:2] == pytest.approx([r1.draw_means[0], r2.draw_means[0]], abs=1e-12)
        assert r3.spearman == pytest.approx(sum(r3.draw_means) / 3, abs=1e-6)
        low, high = r3.spearman_ci
        assert low <= r3.spearman <= high
    saliency = [r for r in three if r.method == "saliency"]
    assert any(max(r.draw_means) - min(r.draw_means) > 0.01 for r in saliency)  # the draws differ
    with pytest.raises(ValueError, match="draws=0"):
        model_randomisation(net, x, y, ["saliency"], draws=0)


def mostly_flat(model, x, targets):
    """A method that gives a map for every fourth image only (the rest all zero, as Grad-CAM's after
    its ReLU), and that map depends on the first layer's weights."""
    maps = first_layer_map(model, x, targets)
    keep = (torch.arange(len(x)) % 4 == 0).to(maps.dtype)
    return maps * keep[:, None, None]


def test_constant_maps_are_counted_left_out_and_leave_the_verdict_unresolved():
    from mnist_probe.pages.trust import MOSTLY_CONSTANT, sanity_sentence
    from mnist_probe.sanity import constant

    torch.manual_seed(0)
    net = LeNet5().eval()
    x, y = digits(12)
    rows = model_randomisation(net, x, y, [], explainers={"flat": mostly_flat}, draws=2)
    last = max((r for r in rows if r.method == "flat"), key=lambda r: r.step)
    assert last.constant_trained == 9 and last.constant_randomised == 2 * 9 and last.left_out == 2 * 9
    assert last.left_out_share == pytest.approx(0.75) and last.left_out_share > MOSTLY_CONSTANT
    # the three maps it has moved with c1 (randomised at the last step): scored on them alone, not 0s
    assert 0 < last.spearman < 0.99
    assert depends_on_model(rows, "flat") == "not resolved"
    text = sanity_sentence(rows)
    assert "flat" in text and "75% of its maps constant, left out" in text and "nothing to judge" in text
    assert constant(mostly_flat(net, x, y)).tolist() == [i % 4 != 0 for i in range(12)]

    # faithfulness leaves the same images out, and counts them
    maps = {"flat": mostly_flat(net, x, y)}
    deletion = next(r for r in faithfulness(net, x, y, maps, steps=4) if r.kind == "deletion")
    assert (deletion.images, deletion.constant) == (12, 9)
    from mnist_probe.pages.trust import faithful_sentence

    assert "75% of its maps constant" in faithful_sentence(faithfulness(net, x, y, maps, steps=4))
