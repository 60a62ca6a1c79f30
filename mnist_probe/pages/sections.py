"""The sections of one CNN's page, shared by its report.md (+experiment=report) and docs/RESULTS.md:
the CNN table, why validation accuracy exceeds training accuracy, and the beyond stage's answers.
Each returns markdown lines; its sentences are mnist_probe.pages.verdicts'."""

from __future__ import annotations

from mnist_probe import study
from mnist_probe.intervals import LEVEL
from mnist_probe.names import file_name
from mnist_probe.pages.page_results import Setting
from mnist_probe.pages.trust import (
    data_randomisation_sentence,
    faithful_sentence,
    sanity_sentence,
    standing_sentence,
)
from mnist_probe.pages.verdicts import (
    attribution_sentence,
    gap_sentence,
    position_sentence,
    shift_cka_sentence,
)
from mnist_probe.rows import Confidence
from mnist_probe.specs import KERAS_EPSILON
from mnist_probe.stages.results import BeyondResult, GapRow, RandomisationRow, ShiftResult, TrainResult
from mnist_probe.tables import markdown_table, pct, span

# How the CNN table says what the model outputs (model.OUTPUT_KINDS) and how the tool reads them.
OUTPUTS_READ = {
    "logits": "logits",
    "probabilities": "probabilities (a softmax last), read as their logs",
    "log-probabilities": "log-probabilities (a log-softmax last)",
}


def below_epsilon(sure: Confidence) -> str:
    """How many of the errors lie below the clipped loss's floor, where it gives no gradient (nothing
    for a results file written before they were counted)."""
    if sure.errors_below_epsilon is None:
        return ""
    return f", {sure.errors_below_epsilon} with P(true) < {KERAS_EPSILON:g}"


def cnn_rows(setting: Setting, train: TrainResult) -> list[dict]:
    """The CNN table: accuracy, how confident, how calibrated, the recipe."""
    sure, cal = train.confidence, train.calibration
    b, a = cal.before, cal.after
    others = "; ".join(f"{name}: {pct(acc, 1)}" for name, acc in setting.references.items())
    rows = [
        {
            "": f"test accuracy ({train.test_images:,} {setting.data} test images)",
            "ours": pct(train.test_acc),
            "study": pct(study.CNN_ACC, 1)
            if setting.study
            else "its own CNN on MNIST only"
            + (f"; {setting.data}'s reference CNNs: {others}" if others else ""),
        },
        {
            "": "test cross-entropy (share carried by the errors; largest logit magnitude)",
            "ours": f"{sure.cross_entropy:.3f} ({pct(sure.error_share_of_loss)} from "
            f"{sure.errors} errors{below_epsilon(sure)}; {sure.max_abs_logit:,.0f})",
            "study": "not reported",
        },
        {
            "": f"calibration: ECE ({cal.bins} bins) / NLL / Brier, before → after temperature "
            "scaling (T fitted on the validation split)",
            "ours": f"{pct(b.ece)} / {b.nll:.4f} / {b.brier:.4f} → {pct(a.ece)} / "
            f"{a.nll:.4f} / {a.brier:.4f} (T = {cal.temperature:.3g})",
            "study": "not reported",
        },
    ]
    rows.append(
        {
            "": "outputs, as found on a batch",
            "ours": OUTPUTS_READ[train.outputs],
            "study": "probabilities (a softmax last)",
        }
    )
    rows.append({"": "recipe", "ours": setting.recipe, "study": study.RECIPE})
    return rows


def gap_section(gap: list[GapRow] | None, figure: str, recipe: str = "", explain: bool = True) -> list[str]:
    """Why validation accuracy exceeds training accuracy: the gap per epoch and its four parts (with
    what each column means unless explain=False, for a second recipe right after the first); figure
    is the line that shows its plot."""
    if not gap:
        return []
    parts = ("gap", *GapRow.PARTS)
    rows = [
        {
            "epoch": r.epoch,
            "train_acc (bar)": pct(r.running),
            "train mode, augmented": pct(r.train),
            "eval mode, augmented": pct(r.eval),
            "eval mode, clean": pct(r.clean),
            "val_acc": pct(r.val),
            **{p: f"{100 * getattr(r, p):+.2f}" for p in parts},
        }
        for r in gap
    ]
    what = (
        (
            "The study's motivation asks it. At each epoch's end, on the same training images: the running "
            "mean the progress bar shows, the network in train mode on augmented images, in eval mode on the "
            "same augmented images, in eval mode on clean ones, and validation accuracy. The gap (points) "
            "splits into lag (the weights improved during the epoch), dropout (and BatchNorm), "
            "augmentation and generalisation:"
        )
        if explain
        else "The same measurement:"
    )
    return [
        "### Why validation accuracy exceeds training accuracy" + (f": {recipe}" if recipe else ""),
        "",
        what,
        "",
        markdown_table(rows),
        figure,
        "",
        gap_sentence(gap),
        "",
    ]


def sanity_section(beyond: BeyondResult, fig) -> list[str]:
    """Can these explanations be trusted? The model-randomisation test, per method and step."""
    if not beyond.sanity:
        return []
    table = [randomisation_cells(r) for r in sorted(beyond.sanity, key=lambda r: r.step)]
    return [
        "### Can these explanations be trusted? The model-randomisation test",
        "",
        "Each method's maps on the network with its layers' weights re-initialised, from the output down "
        "(a column a step, named by the layer it adds), against its maps on the trained network: "
        "Spearman's rank correlation of the absolute values (Adebayo et al. 2018; Quantus's MPRT), the mean "
        "over the randomisation draws with its interval over the draws and the images together, and the "
        "spread of the draws' means. A constant map ranks nothing: it is counted, not scored (Quantus leaves "
        "it out too). The edge control, a Sobel filter of the input, knows nothing of the network:",
        "",
        markdown_table(table),
        fig("sanity", "model randomisation"),
        sanity_sentence(beyond.sanity),
        "",
        "One image's maps at each step, each on its own scale:",
        "",
        fig("sanity_sequence", "model randomisation, one image"),
        "",
        *data_randomisation_section(beyond),
        *faithfulness_section(beyond),
        standing_sentence(beyond),
        "",
    ]


def randomisation_cells(r: RandomisationRow) -> dict[str, str]:
    """One method and step of a randomisation test as its table prints it."""
    scored = [v for v in r.draw_means if v == v]  # NaN: a draw whose maps were all constant
    return {
        "step: layers randomised": f"{r.step}: {r.layer}",
        "method": r.method,
        "Spearman": f"{r.spearman:.2f}" if scored else "none scored",
        f"{LEVEL:.0%} CI": span(r.spearman_ci) if scored else "",
        "draws (min–max)": f"{len(r.draw_means)}: {span((min(scored), max(scored)))}" if scored else "",
        "constant maps: trained / randomised (all draws)": f"{r.constant_trained} / {r.constant_randomised}",
        "left out": f"{r.left_out_share:.0%}",
        "SSIM": f"{r.ssim:.2f}",
    }


def data_randomisation_section(beyond: BeyondResult) -> list[str]:
    """The data-randomisation test: each method against the network that memorised shuffled labels."""
    if not beyond.data_randomisation:
        return []
    table = [randomisation_cells(r) for r in beyond.data_randomisation]
    return [
        "The data-randomisation test (Adebayo et al. 2018): the same network trained on shuffled labels, "
        "which it can only memorise; each method's maps of the same images and classes against the "
        "trained network's:",
        "",
        markdown_table(table),
        data_randomisation_sentence(
            beyond.data_randomisation, beyond.memorised_accuracy, beyond.memorised_images
        ),
        "",
    ]


def faithfulness_section(beyond: BeyondResult) -> list[str]:
    """Deletion and insertion areas per method, beside a random order and the edge control."""
    if not beyond.faithfulness:
        return []
    areas = {(r.method, r.kind): r for r in beyond.faithfulness}
    table = [
        {
            "order of the pixels": m,
            **{
                f"{kind} area": f"{areas[(m, kind)].area:.3f}"
                for kind in ("deletion", "insertion")
                if (m, kind) in areas
            },
            "constant maps (left out)": "{0.constant} of {0.images}".format(areas[(m, "deletion")]),
        }
        for m in dict.fromkeys(r.method for r in beyond.faithfulness)
    ]
    return [
        "Faithfulness (Petsiuk et al. 2018): the pixels each map ranks first removed from the image "
        "(deletion; the area under P(true class) is small for a faithful map) or revealed on a blank "
        f"one (insertion; large), 1/{max(len(r.curve) for r in beyond.faithfulness)} of them at a time:",
        "",
        markdown_table(table),
        faithful_sentence(beyond.faithfulness),
        "",
    ]


def beyond_section(beyond: BeyondResult | None, figs, item: str = "digit") -> list[str]:
    """Where the network looks, what each filter wants, how much position each layer keeps, what
    translations change (the beyond stage's results and figures)."""
    if beyond is None:
        return []

    def fig(name: str, caption: str) -> str:
        return figs.link(f"beyond/{name}.png", caption)

    def along(dys: list[int], values: list[float]) -> dict[str, str]:
        return {f"dy={dy}": f"{v:.3f}" for dy, v in zip(dys, values, strict=True)}

    curves = [{"method": a.method, **along(a.dys, a.consistency)} for a in beyond.attributions]
    cka = [{"layer": name, **along(beyond.cka_dys, beyond.shift_cka_at(name))} for name in beyond.cka_layers]
    return [
        "## Beyond the study: where it looks, what each filter wants, where position goes",
        "",
        f"### Where the network looks, and whether that moves with the {item}",
        "",
        fig("attributions", "attributions"),
        fig("attribution_strip", "attribution strip"),
        f"Correlation between the attribution of the shifted {item} and the shifted attribution of the "
        f"original (1: it moves with the {item}):",
        "",
        markdown_table(curves),
        fig("attribution_consistency", "attribution consistency"),
        attribution_sentence(beyond.attributions, item),
        "",
        *sanity_section(beyond, fig),
        "### What each filter wants",
        "",
        "Per conv layer, each filter's top test patches (receptive-field crops) and, beside them, the "
        "input optimised to excite its centre unit:",
        "",
        *[fig(f"filters_{file_name(layer)}", f"filters of {layer}") for layer in beyond.filter_layers],
        "",
        "### How much position each layer keeps",
        "",
        markdown_table(
            beyond.positions, ["layer", "dims", "position_r2", "position_acc", "position_chance", "class_acc"]
        ),
        fig("positions", "position and class probes"),
        position_sentence(beyond.positions, beyond.code_layer),
        "",
        "### What a translation changes, layer by layer (CKA)",
        "",
        markdown_table(cka),
        fig("shift_cka", "shift CKA"),
        shift_cka_sentence(beyond),
        "",
        fig("cka_seeds", "CKA between two seeds") if beyond.cka is not None else "",
        "",
    ]


def every_digit_section(shift: ShiftResult, figs) -> list[str]:
    """The study's test on every class, the accuracy per class and shift, and what shifted images become."""
    per, item = shift.per_class, shift.item
    if per is None:  # shift.dataset.enabled=false
        return []
    rows = [
        {item: shift.classes[c], **{f"dy={dy}": acc[k] for k, dy in enumerate(per.dys)}}
        for c, acc in enumerate(per.accuracy)
    ]
    return [
        f"### Every {item}, not one",
        "",
        f"The study's test on the first test image of each {item} (CNN, P(true class); in brackets the class "
        "that took over):",
        "",
        markdown_table(shift.every_digit),
        figs.link("shift/shift_every_digit.png", f"every {item}"),
        "",
        f"Accuracy per {item} and vertical shift over the {shift.samples} test images of the grid:",
        "",
        markdown_table(rows),
        figs.link("shift/shift_per_class.png", f"accuracy per {item} and shift"),
        "",
        f"What the shifted {item}s become (the most frequent mistakes at each dy):",
        "",
        markdown_table(shift.confusions),
        "",
    ]
