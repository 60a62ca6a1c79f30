"""The sections only docs/RESULTS.md has (pages/page.py writes the page): its head, the study's recipe
once per loss, the Keras file both ways, the architecture × augmentation sweep and TensorBoard.
Every number comes from a run, except the study's own figures (mnist_probe.study),
quoted beside ours; the sentences are mnist_probe.pages.verdicts'."""

from __future__ import annotations

from mnist_probe.pages.page_results import AugmentResult, KerasRoundTrip, LossRow
from mnist_probe.pages.sections import gap_section
from mnist_probe.pages.verdicts import (
    cka_pair_sentence,
    loss_verdict,
    sweep_position_sentence,
)
from mnist_probe.specs import KERAS_EPSILON
from mnist_probe.stages.results import TensorBoardRow
from mnist_probe.tables import markdown_table, pct


def loss_section(rows: list[LossRow], figs, bins: int) -> list[str]:
    """The study's recipe once per train.loss: how sure each CNN gets (ECE over `bins` bins), and what
    that says."""
    if not rows:
        return []
    # the other losses' CNNs (the main one's figure is calibration.png)
    shown = [
        figs.link(
            f"losses/loss={r.loss}/calibration.png",
            f"calibration_loss={r.loss}.png",
            f"calibration_loss={r.loss}.png",
        )
        for r in rows
    ]
    return [
        "### Does the loss decide how sure it gets? (`train.loss`)",
        "",
        "The same recipe trained once per loss: `cross_entropy` is PyTorch's on logits; `clipped` is "
        "Keras 2's `categorical_crossentropy` on softmax outputs, probabilities clipped to "
        f"[{KERAS_EPSILON:g}, 1 - {KERAS_EPSILON:g}], which gives no gradient for an example already that "
        "sure of its class, or of another: an error it can never correct. "
        f"ECE over {bins} bins; T, the temperature fitted on the validation split.",
        "",
        markdown_table([r.table_row() for r in rows]),
        loss_verdict(rows)
        if len(rows) > 1
        else "Only this CNN's loss was trained in this report; "
        "`reproduce.losses=[cross_entropy,clipped]` (the default) trains the recipe with the other one too.",
        "",
        *shown,
        "",
    ]


def tensorboard_section(rows: list[TensorBoardRow], run_dir: str) -> list[str]:
    """What the run logged to TensorBoard, by tag group, and the command that shows it."""
    if not rows:
        return []
    table = [
        {
            "tag group": r.group,
            "kind": r.kind,
            "tags": r.tags,
            "entries": r.entries,
            "where": r.where,
            "steps": r.steps,
        }
        for r in rows
    ]
    return [
        "## TensorBoard",
        "",
        f"`tensorboard --logdir {run_dir}` (or `make tensorboard` for every run) shows what this run logged, "
        "read back here from its event files. In `shift_scrub` the step is the shift's position in the "
        "study's sequence: the step slider scrubs the translation and the feature maps deform with it. A "
        "multirun sweep adds each job's overrides and headline numbers to the HParams dashboard.",
        "",
        markdown_table(table),
        "",
    ]


def keras_file_section(trip: KerasRoundTrip | None) -> list[str]:
    """The CNN through a Keras 2 weights file and back, as `checkpoint=model.h5` reads one."""
    if not trip:
        return []
    return [
        "### Your own Keras weights (`checkpoint=model.h5` or `.keras`)",
        "",
        f"This CNN written as a Keras 2 weights file (`mnist_probe.save_keras`: HWIO kernels, "
        f"(in, out) dense kernels, dense_1's rows in Keras's H×W×C flatten order; {trip.megabytes} MB) "
        f"and opened the way `checkpoint=model.h5` opens a Keras-trained CNN: test accuracy "
        f"{pct(trip.test_acc)} → {pct(trip.test_acc_from_keras_file)}, the same top-1 class on "
        f"{trip.same_top1:,} of {trip.images:,} test images, logits within "
        f"{trip.max_abs_logit_diff:.2g}.",
        "",
    ]


def augment_gap(augment: AugmentResult | None, figs) -> list[str]:
    """The gap again for the sweep's reference CNN: the lighter recipe's, beside the study's."""
    if augment is None or augment.reference is None:
        return []
    return gap_section(
        augment.gap,
        figs.link("augment/gap.png", "gap", "gap_default.png"),
        f"the {augment.recipe} recipe ({augment.reference.label()})",
        explain=False,
    )


def augment_section(augment: AugmentResult, figs, side: int) -> list[str]:
    """Architecture (max vs anti-aliased pooling) against augmentation (training shift), on images
    `side` px wide."""
    lever_rows = augment.levers
    lines = [
        f"### Architecture vs augmentation ({augment.recipe} recipe, CNN only)",
        "",
        "One CNN per model and training shift: keras_cnn is the study's network, keras_cnn_aa the same with "
        "anti-aliased max-pooling (max with stride 1, a 3×3 binomial blur with stride 2; Zhang 2019).",
        "",
        markdown_table([r.table_row(side) for r in augment.rows]),
        figs.link("augment/augment_sweep.png", "architecture vs augmentation"),
        "",
    ]
    if lever_rows:
        best = {
            kind: max((r for r in lever_rows if r.kind == kind), key=lambda r: r.consistency, default=None)
            for kind in ("model", "augment")
        }
        lines += [
            "What each lever buys (differences of the rows above; consistency and grid accuracy up is "
            "better, change_1px down is better):",
            "",
            markdown_table([r.table_row() for r in lever_rows]),
        ]
        if best["model"] and best["augment"]:
            m, a = best["model"], best["augment"]
            lines += [
                f"The architecture's best gain in consistency is {m.consistency:+.1f} "
                f"points ({m.lever}, {m.held_fixed}); the augmentation's is "
                f"{a.consistency:+.1f} ({a.lever}, {a.held_fixed}).",
                "",
            ]
    return lines + sweep_positions(augment, figs) + sweep_cka(augment, figs)


def sweep_positions(augment: AugmentResult, figs) -> list[str]:
    """Each CNN of the sweep's position and class probes, layer by layer: the levers' mechanism."""
    probed = [r for r in augment.rows if r.positions]
    if not probed:
        return []
    layers = [p.layer for p in probed[0].positions]

    def table(field: str) -> str:
        rows = [
            {"CNN": r.label(), **{p.layer: f"{getattr(p, field):.3f}" for p in r.positions}} for r in probed
        ]
        return markdown_table(rows, ["CNN", *layers])

    return [
        "#### How much position each layer keeps, by architecture and augmentation",
        "",
        "Each test image is moved by one of the shifts in ±2 px. Per layer, a ridge regression reads the "
        "shift (dx, dy) from the activations, another probe the digit (held-out half of the images). "
        "Position, R² of (dx, dy) (0: no better than guessing the mean shift):",
        "",
        table("position_r2"),
        f"Position, accuracy over the {round(1 / probed[0].positions[0].position_chance)} shifts "
        f"(chance {pct(probed[0].positions[0].position_chance, 1)}):",
        "",
        table("position_acc"),
        "Class:",
        "",
        table("class_acc"),
        figs.link("augment/positions.png", "position and class probes by CNN", "augment_positions.png"),
        "",
        sweep_position_sentence(augment.rows),
        "",
    ]


def sweep_cka(augment: AugmentResult, figs) -> list[str]:
    """What two networks share: linear CKA between every pair of their layers."""
    if not augment.cka:
        return []
    ref = augment.reference.label() if augment.reference else "the first CNN"
    lines = [
        "#### What two networks share (linear CKA)",
        "",
        f"CKA between every layer of {ref} and every layer of another CNN, on the same test "
        "images: the same recipe with another seed, and the other pooling.",
        "",
    ]
    for pair in augment.cka:
        figure = figs.link(f"augment/cka_{pair.name}.png", f"CKA {pair.name}", f"augment_cka_{pair.name}.png")
        lines += [figure, "", cka_pair_sentence(pair), ""]
    return lines
