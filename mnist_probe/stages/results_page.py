"""docs/RESULTS.md, written from the reproduce stage's typed results: every number in it comes from a
run, except the study's own figures (mnist_probe.study), quoted beside ours. The verdicts it prints
are mnist_probe.stages.verdicts'."""

from __future__ import annotations

import os
import shutil
from datetime import date
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from mnist_probe import study
from mnist_probe.cache import atomic_write
from mnist_probe.machine import describe
from mnist_probe.plots import file_name
from mnist_probe.stages.results import (
    AugmentResult,
    BeyondResult,
    Conclusion,
    GapRow,
    KerasRoundTrip,
    LossRow,
    ShiftResult,
    StudyResults,
    TrainResult,
)
from mnist_probe.stages.verdicts import (
    attribution_sentence,
    cka_pair_sentence,
    gap_sentence,
    loss_verdict,
    pct,
    position_sentence,
    shift_cka_sentence,
    sweep_position_sentence,
)
from mnist_probe.tables import markdown_table

FIGURES = {  # docs/figures/NAME <- the stage's file
    "calibration.png": "train/calibration.png",
    "gap.png": "train/gap.png",
    "code_vectors.png": "activations/code_vectors.png",
    "code_heatmap.png": "activations/code_heatmap.png",
    "class_similarity.png": "activations/class_similarity.png",
    "interpreters.png": "interpreters/interpreters.png",
    "probes.png": "interpreters/probes.png",
    "shift_strip.png": "shift/shift_strip.png",
    "shift_probability.png": "shift/shift_probability.png",
    "shift_deformation.png": "shift/shift_deformation.png",
    "shift_heatmap.png": "shift/shift_heatmap.png",
    "shift_accuracy_dy.png": "shift/shift_accuracy_dy.png",
    "shift_change_1px.png": "shift/shift_change_1px.png",
    "shift_every_digit.png": "shift/shift_every_digit.png",
    "shift_per_class.png": "shift/shift_per_class.png",
    "augment_sweep.png": "augment/augment_sweep.png",
    "gap_default.png": "augment/gap.png",
    "augment_positions.png": "augment/positions.png",
}


def copy_figures(out_dir: Path, results: StudyResults, figures: Path) -> list[str]:
    """Copy the report's figures into docs/figures/ (atomically); return the feature-map names."""
    act = results.activations
    first = act.indices[0]
    maps = []
    for layer in act.layers:
        src = next((out_dir / "activations" / "feature_maps").glob(f"{layer}_digit*_test{first}.png"))
        maps.append(f"feature_maps_{layer}.png")
        atomic_write(figures / maps[-1], lambda tmp, src=src: shutil.copyfile(src, tmp))
    sources = FIGURES | {f"{n}.png": f"beyond/{n}.png" for n in BEYOND_FIGURES}
    if results.beyond is not None:
        sources |= {f"filters_{file_name(layer)}.png": f"beyond/filters_{file_name(layer)}.png"
                    for layer in results.beyond.filter_layers}  # fmt: skip
    if results.augment is not None:  # the sweep's CKA pairs
        sources |= {f"augment_cka_{p.name}.png": f"augment/cka_{p.name}.png" for p in results.augment.cka}
    for name, src in sources.items():
        if not (out_dir / src).is_file():  # e.g. probes.png with interpreters.probes.enabled=false
            continue
        atomic_write(figures / name, lambda tmp, src=src: shutil.copyfile(out_dir / src, tmp))
    return maps


def training_time(train: TrainResult) -> str:
    """How long the CNN took to train, and what that figure leaves out when training was resumed."""
    if not train.train_seconds:
        return ""  # a user's checkpoint: not trained here
    where = "cached from an earlier run" if train.cached else "in this run"
    text = f"; training the CNN took {train.train_seconds / 60:.1f} min ({where})"
    untimed, resumed = train.untimed_epochs, train.resumed_after_epochs
    if untimed:
        return text + (f", counting epochs {untimed + 1}-{train.epochs} only: the first {untimed} "
                       "ran in an earlier, interrupted run that kept no clock")
    if resumed:
        return text + f", across an interruption after epoch {resumed}"
    return text


def cnn_rows(cfg: DictConfig, train: TrainResult) -> list[dict]:
    """The CNN table: accuracy, how confident, how calibrated, the recipe."""
    sure, cal = train.confidence, train.calibration
    b, a = cal.before, cal.after
    rows = [{"": f"test accuracy ({train.test_images:,} MNIST test images)",
             "ours": pct(train.test_acc), "study": pct(study.CNN_ACC, 1)},
            {"": "test cross-entropy (share carried by the errors; largest logit magnitude)",
             "ours": f"{sure.cross_entropy:.3f} ({pct(sure.error_share_of_loss)} from "
                     f"{sure.errors} errors; {sure.max_abs_logit:,.0f})",
             "study": "not reported"},
            {"": f"calibration: ECE ({cal.bins} bins) / NLL / Brier, before → after temperature "
                 "scaling (T fitted on the validation split)",
             "ours": f"{pct(b.ece)} / {b.nll:.4f} / {b.brier:.4f} → {pct(a.ece)} / "
                     f"{a.nll:.4f} / {a.brier:.4f} (T = {cal.temperature:.3g})",
             "study": "not reported"}]  # fmt: skip
    rows.append({"": "recipe", "ours": recipe_line(cfg), "study": study.RECIPE})
    return rows


def gap_section(gap: list[GapRow] | None, figure: str, recipe: str = "", explain: bool = True) -> list[str]:
    """Why validation accuracy exceeds training accuracy: the gap per epoch and its four parts (with
    what each column means unless explain=False, for a second recipe right after the first)."""
    if not gap:
        return []
    parts = ("gap", "lag", "dropout", "augmentation", "generalisation")
    rows = [{"epoch": r.epoch, "train_acc (bar)": pct(r.running), "train mode, augmented": pct(r.train),
             "eval mode, augmented": pct(r.eval), "eval mode, clean": pct(r.clean), "val_acc": pct(r.val),
             **{p: f"{100 * getattr(r, p):+.2f}" for p in parts}} for r in gap]  # fmt: skip
    what = ("The study's motivation asks it. At each epoch's end, on the same training images: the running "
            "mean the progress bar shows, the network in train mode on augmented images, in eval mode on the "
            "same augmented images, in eval mode on clean ones, and validation accuracy. The gap (points) "
            "splits into lag (the weights improved during the epoch), dropout (and BatchNorm), "
            "augmentation and generalisation:") if explain else "The same measurement:"  # fmt: skip
    return [
        "### Why validation accuracy exceeds training accuracy" + (f": {recipe}" if recipe else ""),
        "",
        what,
        "",
        markdown_table(rows),
        f"![gap]({figure})",
        "",
        gap_sentence(gap),
        "",
    ]


BEYOND_FIGURES = ("attributions", "attribution_strip", "attribution_consistency", "positions", "shift_cka",
                  "cka_seeds")  # fmt: skip


def beyond_section(beyond: BeyondResult | None, figures: str) -> list[str]:
    """Where the network looks, what each filter wants, how much position each layer keeps, what
    translations change (the beyond stage); its figures under `figures`/."""
    if beyond is None:
        return []

    def fig(name: str, caption: str) -> str:
        return f"![{caption}]({figures}/{name}.png)"

    def along(dys: list[int], values: list[float]) -> dict[str, str]:
        return {f"dy={dy}": f"{v:.3f}" for dy, v in zip(dys, values, strict=True)}

    curves = [{"method": a.method, **along(a.dys, a.consistency)} for a in beyond.attributions]
    cka = [{"layer": name, **along(beyond.cka_dys, beyond.shift_cka_at(name))} for name in beyond.cka_layers]
    return [
        "## Beyond the study: where it looks, what each filter wants, where position goes",
        "",
        "### Where the network looks, and whether that moves with the digit",
        "",
        fig("attributions", "attributions"),
        fig("attribution_strip", "attribution strip"),
        "Correlation between the attribution of the shifted digit and the shifted attribution of the "
        "original (1: it moves with the digit):",
        "",
        markdown_table(curves),
        attribution_sentence(beyond.attributions),
        "",
        "### What each filter wants",
        "",
        "Per conv layer, each filter's top test patches (receptive-field crops) and, beside them, the "
        "input optimised to excite its centre unit:",
        "",
        *[fig(f"filters_{file_name(layer)}", f"filters of {layer}") for layer in beyond.filter_layers],
        "",
        "### How much position each layer keeps",
        "",
        markdown_table(beyond.positions, ["layer", "dims", "position_r2", "position_acc", "position_chance",
                                          "class_acc"]),
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


def write_report(
    cfg: DictConfig, out_dir: Path, results: StudyResults, conclusions: list[Conclusion], docs: Path
) -> Path:
    """docs/RESULTS.md and docs/figures/*.png from this run's results and the verdicts on them."""
    figures = docs / "figures"
    maps = copy_figures(out_dir, results, figures)
    train, act, shift = results.train, results.activations, results.shift
    seconds = results.seconds
    study_rows = [{"model": k, **dict(zip(shift.columns, v, strict=False))}
                  for k, v in study.SHIFT_TABLE.items()]  # fmt: skip
    probes = results.interpreters.probes or []
    md = [
        "# What did my CNN learn? The study reproduced",
        "",
        f"Generated by `python -m mnist_probe.run +experiment=reproduce` (`make reproduce`) on "
        f"{date.today().isoformat()}, on {results_device(results)}. Nothing below is typed by hand "
        "except the study's own figures, quoted beside ours. The stages took "
        f"{seconds / 60:.1f} min in this run"
        + training_time(train) + ".",
        "",
        "## The CNN",
        "",
        markdown_table(cnn_rows(cfg, train)),
        "![calibration](figures/calibration.png)",
        *gap_section(train.gap, "figures/gap.png", "the study's recipe"),
        *augment_gap(results.augment),
        *loss_section(results.losses, out_dir, figures),
        *keras_file_section(results.keras_file),
        "## 1. Activations: feature maps (h = 1, 2, 5, 6, 8) and code vectors (h = 10)",
        "",
        f"Test image #{act.indices[0]}; all 64 maps of each layer.",
        "",
        *[f"![{m}](figures/{m})" for m in maps],
        "",
        f"Code vectors (256-d, h = 10) of one test image per digit, and of {act.n_codes:,} test images "
        "sorted by class; the class-by-class cosine similarity:",
        "",
        "![code vectors](figures/code_vectors.png)",
        "![code heatmap](figures/code_heatmap.png)",
        "![class similarity](figures/class_similarity.png)",
        "",
        "## 2. Interpreters on the code vectors",
        "",
        markdown_table(results.interpreters.table(),
                       ["interpreter", "features", "test_acc", "study_acc", "diff", "fit_seconds"]),
        "![interpreters](figures/interpreters.png)",
        "",
        "Beyond the study, a linear probe (logistic regression) on every layer: how linearly separable "
        "the classes are at each depth.",
        "",
        markdown_table(probes, ["h", "layer", "dims", "test_acc"]) if probes else "",
        "![probes](figures/probes.png)" if probes else "",
        "",
        f"## 3. Translation: test #{shift.index} (a {shift.digit}) shifted up",
        "",
        "P(true class) per model and shift; in brackets the class that took over, when it got at least "
        f"{cfg.shift.min_other:.0%}. Ours:",
        "",
        markdown_table(shift.table),
        "The study's:",
        "",
        markdown_table(study_rows),
        "![shifted inputs](figures/shift_strip.png)",
        "![P(true) against shift](figures/shift_probability.png)",
        "![code-vector deformation](figures/shift_deformation.png)",
        "",
        f"### At dataset scale: {shift.samples} test images, every shift in "
        f"±{cfg.shift.dataset.radius} px",
        "",
        "consistency: the top-1 class agrees at two random shifts; change_1px: P(top-1 changes) under a "
        "1-pixel shift.",
        "",
        markdown_table(shift.dataset),
        "![accuracy heatmaps](figures/shift_heatmap.png)",
        "![accuracy against dy](figures/shift_accuracy_dy.png)",
        "",
        *every_digit_section(shift),
        *augment_section(results.augment),
        *beyond_section(results.beyond, "figures"),
        *seeds_section(results.seeds, figures),
        *tensorboard_section(out_dir, ["train", "activations", "interpreters", "shift"]),
        "## Performance (`make bench`)",
        "",
        bench_section(results.bench),
        "## The study's conclusions, checked",
        "",
    ]
    for k, c in enumerate(conclusions, 1):
        md += [f"**{k}. {c.claim}** — *{c.verdict}.* {c.text}", ""]
    path = docs / "RESULTS.md"
    text = "\n".join(md).replace("\n\n\n", "\n\n")
    atomic_write(path, lambda tmp: tmp.write_text(text))
    return path


def loss_section(rows: list[LossRow], out_dir: Path, figures: Path) -> list[str]:
    """The study's recipe once per train.loss: how sure each CNN gets, and what that says."""
    if not rows:
        return []
    shown = []
    for row in rows:
        src = out_dir / "losses" / f"loss={row.loss}" / "calibration.png"
        if src.is_file():  # the other losses' CNNs (the main one's figure is calibration.png)
            shown.append(f"calibration_loss={row.loss}.png")
            atomic_write(figures / shown[-1], lambda tmp, src=src: shutil.copyfile(src, tmp))
    return [
        "### Does the loss decide how sure it gets? (`train.loss`)",
        "",
        "The same recipe trained once per loss: `cross_entropy` is PyTorch's on logits; `clipped` is "
        "Keras 2's "
        "`categorical_crossentropy` on softmax outputs, probabilities clipped to [1e-7, 1 - 1e-7], which "
        "gives no gradient for an example already that sure. ECE over 15 bins; T, the temperature fitted "
        "on the validation split.",
        "",
        markdown_table([r.table_row() for r in rows]),
        loss_verdict(rows) if len(rows) > 1 else "Only this CNN's loss was trained in this report; "
        "`reproduce.losses=[cross_entropy,clipped]` (the default) trains the recipe with the other one too.",
        "",
        *[f"![{name}](figures/{name})" for name in shown],
        "",
    ]


def tensorboard_tags(run_dir: Path, stages: list[str]) -> list[dict]:
    """What these stages of a run logged to TensorBoard, by tag group (the tag's first part): how many
    tags, how many entries, which steps; read back from the event files, so the report says what is
    there."""
    from tensorboard.backend.event_processing import event_accumulator as ea  # only when reporting

    groups: dict[str, dict] = {}
    found = [e for stage in stages for e in sorted((run_dir / stage).rglob("events.out.tfevents.*"))]
    for events in found:
        acc = ea.EventAccumulator(str(events), size_guidance={ea.IMAGES: 0, ea.SCALARS: 0, ea.TENSORS: 0})
        acc.Reload()
        tags = acc.Tags()
        for kind, read in (("images", acc.Images), ("scalars", acc.Scalars)):
            for tag in tags.get(kind, []):
                steps = [e.step for e in read(tag)]
                g = groups.setdefault(tag.split("/")[0], {"tag group": tag.split("/")[0], "kind": kind,
                                                         "tags": 0, "entries": 0, "steps": set(),
                                                         "where": str(events.parent.relative_to(run_dir))})
                g["tags"] += 1
                g["entries"] += len(steps)
                g["steps"].update(steps)
    rows = []
    for g in groups.values():
        steps = sorted(g.pop("steps"))
        g["steps"] = f"{steps[0]}..{steps[-1]}" if len(steps) > 1 else str(steps[0]) if steps else ""
        rows.append(g)
    return rows


def tensorboard_section(run_dir: Path, stages: list[str]) -> list[str]:
    rows = tensorboard_tags(run_dir, stages)
    if not rows:
        return []
    where = os.path.relpath(run_dir) if run_dir.is_absolute() and Path.cwd() in run_dir.parents else run_dir
    return [
        "## TensorBoard",
        "",
        f"`tensorboard --logdir {where}` (or `make tensorboard` for every run) shows what this run logged, "
        "read back here from its event files. In `shift_scrub` the step is the shift's position in the "
        "study's sequence: the step slider scrubs the translation and the feature maps deform with it. A "
        "multirun sweep adds each job's overrides and headline numbers to the HParams dashboard.",
        "",
        markdown_table(rows),
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


def every_digit_section(shift: ShiftResult) -> list[str]:
    """The study's test on every digit, the accuracy per digit and shift, and what shifted digits become."""
    per = shift.per_class
    if per is None:  # shift.dataset.enabled=false
        return []
    rows = [{"digit": c, **{f"dy={dy}": acc[k] for k, dy in enumerate(per.dys)}}
            for c, acc in enumerate(per.accuracy)]  # fmt: skip
    return [
        "### Every digit, not one",
        "",
        "The study's test on the first test image of each digit (CNN, P(true class); in brackets the class "
        "that took over):",
        "",
        markdown_table(shift.every_digit),
        "![every digit](figures/shift_every_digit.png)",
        "",
        f"Accuracy per digit and vertical shift over the {shift.samples} test images of the grid:",
        "",
        markdown_table(rows),
        "![accuracy per digit and shift](figures/shift_per_class.png)",
        "",
        "What the shifted digits become (the most frequent mistakes at each dy):",
        "",
        markdown_table(shift.confusions),
        "",
    ]


def augment_gap(augment: AugmentResult | None) -> list[str]:
    """The gap again for the sweep's reference CNN: the lighter recipe's, beside the study's."""
    if augment is None or augment.reference is None:
        return []
    return gap_section(augment.gap, "figures/gap_default.png",
                       f"the {augment.recipe} recipe ({augment.reference.label()})", explain=False)


def augment_section(augment: AugmentResult) -> list[str]:
    """Architecture (max vs anti-aliased pooling) against augmentation (training shift)."""
    lever_rows = augment.levers
    lines = [
        f"### Architecture vs augmentation ({augment.recipe} recipe, CNN only)",
        "",
        "One CNN per model and training shift: keras_cnn is the study's network, keras_cnn_aa the same with "
        "anti-aliased max-pooling (max with stride 1, a 3×3 binomial blur with stride 2; Zhang 2019).",
        "",
        markdown_table([r.table_row() for r in augment.rows]),
        "![architecture vs augmentation](figures/augment_sweep.png)",
        "",
    ]
    if lever_rows:
        best = {kind: max((r for r in lever_rows if r.kind == kind), key=lambda r: r.consistency,
                          default=None)
                for kind in ("model", "augment")}  # fmt: skip
        lines += ["What each lever buys (differences of the rows above; consistency and grid accuracy up is "
                  "better, change_1px down is better):", "",
                  markdown_table([r.table_row() for r in lever_rows])]
        if best["model"] and best["augment"]:
            m, a = best["model"], best["augment"]
            lines += [f"The architecture's best gain in consistency is {m.consistency:+.1f} "
                      f"points ({m.lever}, {m.held_fixed}); the augmentation's is "
                      f"{a.consistency:+.1f} ({a.lever}, {a.held_fixed}).", ""]
    return lines + sweep_positions(augment) + sweep_cka(augment)


def sweep_positions(augment: AugmentResult) -> list[str]:
    """Each CNN of the sweep's position and class probes, layer by layer: the levers' mechanism."""
    probed = [r for r in augment.rows if r.positions]
    if not probed:
        return []
    layers = [p.layer for p in probed[0].positions]

    def table(field: str) -> str:
        rows = [{"CNN": r.label(), **{p.layer: f"{getattr(p, field):.3f}" for p in r.positions}}
                for r in probed]  # fmt: skip
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
        "![position and class probes by CNN](figures/augment_positions.png)",
        "",
        sweep_position_sentence(augment.rows),
        "",
    ]


def sweep_cka(augment: AugmentResult) -> list[str]:
    """What two networks share: linear CKA between every pair of their layers."""
    if not augment.cka:
        return []
    ref = augment.reference.label() if augment.reference else "the first CNN"
    lines = ["#### What two networks share (linear CKA)", "",
             f"CKA between every layer of {ref} and every layer of another CNN, on the same test "
             "images: the same recipe with another seed, and the other pooling.", ""]  # fmt: skip
    for pair in augment.cka:
        lines += [f"![CKA {pair.name}](figures/augment_cka_{pair.name}.png)", "", cka_pair_sentence(pair), ""]
    return lines


SEEDS_COLUMNS = ["metric", "n", "mean", "std", "min", "max", "study", "study_inside_our_range"]


def seeds_section(seeds: dict | None, figures: Path) -> list[str]:
    """Every headline number over a `make seeds` sweep (reproduce.seeds), beside the study's figure."""
    if not seeds:
        return ["## Seeds", "", "Not measured in this report: run `make seeds`, then this stage with "
                "`reproduce.seeds=<that sweep dir>/seeds.json`.", ""]  # fmt: skip
    src = Path(seeds["path"]).with_name("seeds.png")
    if src.is_file():
        atomic_write(figures / "seeds.png", lambda tmp: shutil.copyfile(src, tmp))
    outside = [r["metric"] for r in seeds["rows"] if r.get("study_inside_our_range") == "no"]
    inside = [r["metric"] for r in seeds["rows"] if r.get("study_inside_our_range") == "yes"]
    return [
        f"## Seeds: the default recipe, {len(seeds['seeds'])} seeds ({', '.join(map(str, seeds['seeds']))})",
        "",
        f"From `{seeds['path']}` (`make seeds`). Each number over the seeds (std with ddof 1); the study's "
        "single run beside it. Inside what our seeds span: " + (", ".join(inside) or "none")
        + "; outside: " + (", ".join(outside) or "none") + ".",
        "",
        markdown_table(seeds["rows"], SEEDS_COLUMNS),
        "![seeds](figures/seeds.png)" if src.is_file() else "",
        "",
    ]


def recipe_line(cfg: DictConfig) -> str:
    t = cfg.train
    scheduler = (OmegaConf.select(cfg, "train.scheduler.factory._target_") or "none").split(".")[-1]
    return (f"{t.epochs} epochs, batch {t.batch_size}, {t.optimizer._target_.split('.')[-1]}, {scheduler}, "
            f"augmentation rotation {t.augment.rotation}°, zoom {t.augment.zoom}, shift {t.augment.shift}")


def results_device(results: StudyResults) -> str:
    bench = results.bench
    if bench:
        m = bench["machine"]
        return f"{m.get('gpu') or m['cpu']} ({m['cores']} threads, torch {m['torch']})"
    return describe()  # no bench.json: this machine, as every stage's results.json names it


def bench_section(bench: dict | None) -> str:
    if not bench:
        return "Not measured: run `make bench` (it writes outputs/bench/bench.json), then this stage again.\n"
    m = bench["machine"]
    head = f"Machine: {m.get('gpu') or m['cpu']}, {m['cores']} threads, torch {m['torch']}.\n\n"
    return head + markdown_table(bench["rows"], ["what", "value", "unit"])
