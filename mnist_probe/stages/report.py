"""Result tables (markdown and CSV), the sweep summary (a Hydra callback), and docs/RESULTS.md
written from the reproduce stage's results: every number in it comes from a run, except the
study's own figures (mnist_probe.study), quoted beside ours."""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import shutil
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from mnist_probe import study
from mnist_probe.cache import atomic_write, write_json
from mnist_probe.model import CODE_LAYER
from mnist_probe.viz import curves_plot, save, spread_plot

log = logging.getLogger(__name__)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def markdown_table(rows: list[dict], columns: list[str] | None = None) -> str:
    """A GitHub-flavoured markdown table of rows (dicts), columns in first-seen order."""
    columns = columns or list(dict.fromkeys(k for row in rows for k in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_table(rows: list[dict], stem: str | Path, columns: list[str] | None = None) -> str:
    """Write rows as stem.md and stem.csv (atomically); return the markdown."""
    columns = columns or list(dict.fromkeys(k for row in rows for k in row))
    md = markdown_table(rows, columns)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    stem = Path(stem)
    atomic_write(stem.with_suffix(".md"), lambda tmp: tmp.write_text(md))
    atomic_write(stem.with_suffix(".csv"), lambda tmp: tmp.write_text(buf.getvalue()))
    return md


def spread(headlines: list[dict[str, float]], reference: dict[str, float]) -> list[dict]:
    """Each headline number over the jobs (seeds): n, mean, std (ddof 1), min, max; where the study
    gave the number (reference), its figure, its distance from our mean in our std, and whether it
    lies inside what our seeds span ([min, max])."""
    rows = []
    for name in dict.fromkeys(k for h in headlines for k in h):
        values = np.array([h[name] for h in headlines if h.get(name) is not None], dtype=float)
        std = float(values.std(ddof=1)) if len(values) > 1 else float("nan")
        row = {"metric": name, "n": len(values), "mean": float(values.mean()), "std": std,
               "min": float(values.min()), "max": float(values.max())}  # fmt: skip
        ref = reference.get(name)
        if ref is not None:
            inside = bool(values.min() <= ref <= values.max())
            row |= {"study": ref, "study_minus_mean_in_std": (ref - row["mean"]) / std if std > 0 else None,
                    "study_inside_our_range": "yes" if inside else "no"}  # fmt: skip
        rows.append(row)
    return rows


def summarize_seeds(sweep_dir: Path, jobs: dict[str, dict]) -> list[dict]:
    """seeds.md/.csv/.json and seeds.png in the sweep dir from the jobs' headlines (seeds stage)."""
    headlines = {name: job["headline"] for name, job in jobs.items() if "headline" in job}
    if not headlines:
        return []
    rows = spread(list(headlines.values()), study.HEADLINE)
    write_table(rows, sweep_dir / "seeds")
    seeds = [jobs[name].get("seed") for name in headlines]
    write_json(sweep_dir / "seeds.json", {"seeds": seeds, "rows": rows, "per_seed": list(headlines.values())})
    save(spread_plot(list(headlines.values()), study.HEADLINE, seeds), sweep_dir / "seeds.png")
    return rows


def summarize_sweep(sweep_dir: str | Path) -> list[dict]:
    """One table from every job of a sweep: each job's `rows`, tagged with its overrides; for a
    sweep of the seeds stage, each headline number with its spread (seeds.md)."""
    sweep_dir = Path(sweep_dir)
    rows, curves, jobs = [], {}, {}
    for results in sorted(sweep_dir.glob("*/results.json"), key=lambda p: int(p.parent.name)):
        job = jobs[results.parent.name] = json.loads(results.read_text())
        overrides = job.get("overrides") or results.parent.name
        for row in job.get("rows", []):
            rows.append({"job": results.parent.name, "overrides": overrides, **row})
        # The CNN's accuracy against shift, one line per job: e.g. a sweep over train.augment.shift
        if "CNN" in job.get("curves", {}):
            curves[overrides] = job["curves"]["CNN"]
    if rows:
        write_table(rows, sweep_dir / "summary")
    summarize_seeds(sweep_dir, jobs)
    if curves:
        # Label each line with the overrides that differ between jobs, not the shared ones.
        common = set.intersection(*(set(k.split()) for k in curves))
        curves = {" ".join(t for t in k.split() if t not in common) or k: v for k, v in curves.items()}

        title = "CNN test accuracy against vertical shift, one line per sweep job"
        save(curves_plot(curves, "dy (px, dx = 0; < 0 is up)", title), sweep_dir / "summary_curves.png")
    return rows


class SweepSummary(Callback):
    """At the end of a multirun, writes summary.md/.csv into the sweep dir from the jobs' results."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        rows = summarize_sweep(sweep_dir)
        if rows:
            log.info("sweep summary: %d rows in %s", len(rows), sweep_dir / "summary.md")
        if (sweep_dir / "seeds.md").is_file():
            log.info("every headline number with its spread over the seeds: %s", sweep_dir / "seeds.md")


# ----------------------------------------------------------------------------- docs/RESULTS.md
FIGURES = {  # docs/figures/NAME <- the stage's file
    "calibration.png": "train/calibration.png",
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
}


def copy_figures(out_dir: Path, results: dict, figures: Path) -> list[str]:
    """Copy the report's figures into docs/figures/ (atomically); return the feature-map names."""
    act = results["activations"]
    first = act["indices"][0]
    maps = []
    for layer in act["layers"]:
        src = next((out_dir / "activations" / "feature_maps").glob(f"{layer}_digit*_test{first}.png"))
        maps.append(f"feature_maps_{layer}.png")
        atomic_write(figures / maps[-1], lambda tmp, src=src: shutil.copyfile(src, tmp))
    for name, src in FIGURES.items():
        if not (out_dir / src).is_file():  # e.g. probes.png with interpreters.probes.enabled=false
            continue
        atomic_write(figures / name, lambda tmp, src=src: shutil.copyfile(out_dir / src, tmp))
    return maps


def pct(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None else f"{100 * x:.{digits}f}%"


def conclusions(cfg: DictConfig, results: dict) -> list[dict]:
    """The study's four conclusions, each with our verdict and the numbers behind it."""
    cnn_acc = results["train"]["test_acc"]
    irows = results["interpreters"]["rows"]
    codes = {r["interpreter"]: r["test_acc"] for r in irows if r["features"] == "codes"}
    pixels = {r["interpreter"]: r["test_acc"] for r in irows if r["features"] == "pixels"}
    act, shift = results["activations"], results["shift"]
    dataset = {r["model"]: r for r in shift.get("dataset", [])}
    aug = results["augment"]["rows"]
    out = []

    # 1. Code vectors reduce dimensionality (and keep what the classes need).
    worst = min(codes, key=codes.get)
    kept = codes[worst] >= cnn_acc - 0.01
    out.append({
        "claim": "Code vectors in hidden layers of CNN reduce the dimensionality of images.",
        "verdict": "supported" if kept else "not supported",
        "text": (
            f"Each 28×28 = 784-pixel image becomes a 256-d code vector (h = 10), after a 3,136-d "
            f"flattened stage (h = 8). The code keeps what the classes need: every interpreter fitted "
            f"on it alone scores {pct(min(codes.values()))}–{pct(max(codes.values()))} "
            f"(worst: {worst}), against {pct(cnn_acc)} for the CNN's own softmax. It is also "
            f"organised by class: mean cosine {act['within_class_cosine']:.3f} within a class vs "
            f"{act['between_class_cosine']:.3f} between classes (ratio {act['within_between_ratio']:.2f}, "
            f"{act['n_codes']} test images)."
        ),
    })  # fmt: skip

    # 2. Position sensitive; convolution is the key to accuracy.
    gain = min(codes.values()) - max(pixels.values()) if pixels else None
    unaug = next((r for r in aug if float(r["train.augment.shift"]) == 0.0), None)
    cnn_grid = dataset.get("CNN", {})
    curve = shift.get("curves", {}).get("CNN")
    at4 = curve[1][curve[0].index(-4)] if curve and -4 in curve[0] else None
    conv_key = bool(pixels) and min(codes.values()) > max(pixels.values())
    ours_sensitive = at4 is not None and at4 < 0.9
    unaug_sensitive = unaug is not None and unaug["acc_dy-4"] is not None and unaug["acc_dy-4"] < 0.9
    position = ("supported" if ours_sensitive else
                "supported only without shift augmentation" if unaug_sensitive else "not supported")
    text = (
        f"Convolution as the key to accuracy: the same interpreters reach {pct(min(codes.values()))} or "
        f"more on the CNN's code vectors but at most {pct(max(pixels.values()) if pixels else None)} "
        f"on raw pixels ({'+' if gain and gain > 0 else ''}{pct(gain)} for the worst code-vector "
        f"interpreter over the best pixel one). "
        f"Position sensitivity depends on the training augmentation: over "
        f"{shift.get('samples', 0)} test images, this CNN (trained with random shifts up to "
        f"{28 * float(cfg.train.augment.shift):.1f} px) keeps {pct(at4)} accuracy at dy = -4 and a mean of "
        f"{pct(cnn_grid.get('acc_grid_mean'))} over the ±{cfg.shift.dataset.radius} px grid."
    )
    if unaug is not None:
        text += (
            f" Trained without shift augmentation ({results['augment']['recipe']} recipe), the CNN "
            f"falls to {pct(unaug['acc_dy-4'])} at dy = -4 (grid mean {pct(unaug['acc_grid_mean'])}): "
            "what the CNN learned is as position sensitive as its training data lets it be."
        )
    out.append({
        "claim": "Information learned in CNN is position sensitive, and convolution is the key "
                 "for high accuracy.",
        "verdict": f"convolution {'supported' if conv_key else 'not supported'}; position sensitivity "
                   f"{position}",
        "text": text,
    })  # fmt: skip

    # 3. Probabilities are not continuous under translation.
    rows = [r for r in shift["rows"] if r["model"] == "CNN" and r["dx"] == 0]
    p = [r["p_true"] for r in sorted(rows, key=lambda r: -r["dy"])]
    jump = max((abs(a - b) for a, b in zip(p, p[1:], strict=False)), default=0.0)
    change = cnn_grid.get("change_1px")
    unaug_change = unaug["change_1px"] if unaug is not None else None
    jumpy = jump > 0.5 or (change is not None and change > 0.05)
    out.append({
        "claim": "The predicted probabilities of CNN are not continuous with respect to translations.",
        "verdict": "supported" if jumpy else ("supported only without shift augmentation"
                                               if unaug_change and unaug_change > 0.05 else "not supported"),
        "text": (
            f"For the study's digit (test #{shift['index']}, a {shift['digit']}), the largest change of "
            f"P(true) between neighbouring 1-px shifts is {jump:.3f}. Over the test images, the CNN's "
            f"top-1 class changes under a single-pixel shift for {pct(change)} of (image, shift) pairs"
            + (f"; {pct(unaug_change)} for the CNN trained without shift augmentation" if unaug_change
               is not None else "")
            + ". In the study, its CNN's P(1) fell from 99.4% to 0.71% between dy = -3 and -4: "
            f"a jump of {study.SHIFT_JUMP:.3f}."
        ),
    })  # fmt: skip

    # 4. Translations deform code vectors more softly (than earlier activations).
    cos = shift["cosines"]
    last = {name: c[-1] for name, c in cos.items()}
    code_name = CODE_LAYER
    softer = all(last[code_name] >= v for k, v in last.items() if k != code_name)
    dy_last = shift["pairs"][-1]
    out.append({
        "claim": "Translations deform CNN code vectors more softly.",
        "verdict": "supported" if softer else "not supported",
        "text": (
            f"Cosine similarity to the unshifted image's activations at the largest shift "
            f"{tuple(dy_last)} (dx, dy): "
            + ", ".join(f"{k} {v:.2f}" for k, v in last.items())
            + (". The code vector (dense_1, h = 10) stays closest to the unshifted one: translation "
               "deforms it less than the feature maps before it." if softer else
               ". The code vector (dense_1, h = 10) is not the one that stays closest here.")
        ),
    })  # fmt: skip
    return out


def training_time(train: dict) -> str:
    """How long the CNN took to train, and what that figure leaves out when training was resumed."""
    if not train.get("train_seconds"):
        return ""  # a user's checkpoint: not trained here
    where = "cached from an earlier run" if train.get("cached") else "in this run"
    text = f"; training the CNN took {train['train_seconds'] / 60:.1f} min ({where})"
    untimed, resumed = train.get("untimed_epochs", 0), train.get("resumed_after_epochs", 0)
    if untimed:
        return text + (f", counting epochs {untimed + 1}-{train['epochs']} only: the first {untimed} "
                       "ran in an earlier, interrupted run that kept no clock")
    if resumed:
        return text + f", across an interruption after epoch {resumed}"
    return text


def cnn_rows(cfg: DictConfig, train: dict) -> list[dict]:
    """The CNN table: accuracy, how confident (when the train stage measured it), the recipe."""
    rows = [{"": f"test accuracy ({train['test_images']:,} MNIST test images)",
             "ours": pct(train["test_acc"]), "study": pct(study.CNN_ACC, 1)}]  # fmt: skip
    sure = train.get("confidence")
    if sure:
        rows.append({"": "test cross-entropy (share carried by the errors; largest logit magnitude)",
                     "ours": f"{sure['cross_entropy']:.3f} ({pct(sure['error_share_of_loss'])} from "
                             f"{sure['errors']} errors; {sure['max_abs_logit']:,.0f})",
                     "study": "not reported"})  # fmt: skip
    cal = train.get("calibration")
    if cal:
        b, a = cal["before"], cal["after"]
        rows.append({"": f"calibration: ECE ({cal['bins']} bins) / NLL / Brier, before → after temperature "
                         "scaling (T fitted on the validation split)",
                     "ours": f"{pct(b['ece'])} / {b['nll']:.4f} / {b['brier']:.4f} → {pct(a['ece'])} / "
                             f"{a['nll']:.4f} / {a['brier']:.4f} (T = {cal['temperature']:.3g})",
                     "study": "not reported"})  # fmt: skip
    rows.append({"": "recipe", "ours": recipe_line(cfg), "study": study.RECIPE})
    return rows


def write_report(cfg: DictConfig, out_dir: Path, results: dict, docs: Path) -> Path:
    """docs/RESULTS.md and docs/figures/*.png from this run's results."""
    figures = docs / "figures"
    maps = copy_figures(out_dir, results, figures)
    results["conclusions"] = conclusions(cfg, results)
    train, act, shift = results["train"], results["activations"], results["shift"]
    seconds = results["seconds"]
    pairs_cols = [c for c in shift["table"][0] if c != "model"]
    study_rows = [{"model": k, **dict(zip(pairs_cols, v, strict=False))}
                  for k, v in study.SHIFT_TABLE.items()]  # fmt: skip
    probes = results["interpreters"].get("probes", [])
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
        "![calibration](figures/calibration.png)" if train.get("calibration") else "",
        *loss_section(results.get("losses"), out_dir, figures),
        *keras_file_section(results.get("keras_file")),
        "## 1. Activations: feature maps (h = 1, 2, 5, 6, 8) and code vectors (h = 10)",
        "",
        f"Test image #{act['indices'][0]}; all 64 maps of each layer.",
        "",
        *[f"![{m}](figures/{m})" for m in maps],
        "",
        f"Code vectors (256-d, h = 10) of one test image per digit, and of {act['n_codes']:,} test images "
        "sorted by class; the class-by-class cosine similarity:",
        "",
        "![code vectors](figures/code_vectors.png)",
        "![code heatmap](figures/code_heatmap.png)",
        "![class similarity](figures/class_similarity.png)",
        "",
        "## 2. Interpreters on the code vectors",
        "",
        markdown_table(results["interpreters"]["rows"],
                       ["interpreter", "features", "test_acc", "study_acc", "diff", "fit_seconds"]),
        "![interpreters](figures/interpreters.png)",
        "",
        "Beyond the study, a linear probe (logistic regression) on every layer: how linearly separable "
        "the classes are at each depth.",
        "",
        markdown_table(probes, ["h", "layer", "dims", "test_acc"]) if probes else "",
        "![probes](figures/probes.png)" if probes else "",
        "",
        f"## 3. Translation: test #{shift['index']} (a {shift['digit']}) shifted up",
        "",
        "P(true class) per model and shift; in brackets the class that took over, when it got at least "
        f"{cfg.shift.min_other:.0%}. Ours:",
        "",
        markdown_table(shift["table"]),
        "The study's:",
        "",
        markdown_table(study_rows),
        "![shifted inputs](figures/shift_strip.png)",
        "![P(true) against shift](figures/shift_probability.png)",
        "![code-vector deformation](figures/shift_deformation.png)",
        "",
        f"### At dataset scale: {shift.get('samples', 0)} test images, every shift in "
        f"±{cfg.shift.dataset.radius} px",
        "",
        "consistency: the top-1 class agrees at two random shifts; change_1px: P(top-1 changes) under a "
        "1-pixel shift.",
        "",
        markdown_table(shift.get("dataset", [])),
        "![accuracy heatmaps](figures/shift_heatmap.png)",
        "![accuracy against dy](figures/shift_accuracy_dy.png)",
        "",
        *every_digit_section(shift),
        *augment_section(results["augment"]),
        *seeds_section(results.get("seeds"), figures),
        *tensorboard_section(out_dir, ["train", "activations", "interpreters", "shift"]),
        "## Performance (`make bench`)",
        "",
        bench_section(results["bench"]),
        "## The study's conclusions, checked",
        "",
    ]
    for k, c in enumerate(results["conclusions"], 1):
        md += [f"**{k}. {c['claim']}** — *{c['verdict']}.* {c['text']}", ""]
    path = docs / "RESULTS.md"
    text = "\n".join(md).replace("\n\n\n", "\n\n")
    atomic_write(path, lambda tmp: tmp.write_text(text))
    return path


def loss_section(rows: list[dict] | None, out_dir: Path, figures: Path) -> list[str]:
    """The study's recipe once per train.loss: how sure each CNN gets, and what that says."""
    if not rows:
        return []
    shown = []
    for row in rows[1:]:
        src = out_dir / "losses" / f"loss={row['train.loss']}" / "calibration.png"
        if src.is_file():
            shown.append(f"calibration_loss={row['train.loss']}.png")
            atomic_write(figures / shown[-1], lambda tmp, src=src: shutil.copyfile(src, tmp))
    return [
        "### Does the loss decide how sure it gets? (`train.loss`)",
        "",
        "The same recipe trained once per loss: `cross_entropy` is PyTorch's on logits; `keras` is Keras 2's "
        "`categorical_crossentropy` on softmax outputs, probabilities clipped to [1e-7, 1 - 1e-7], which "
        "gives no gradient for an example already that sure. ECE over 15 bins; T, the temperature fitted "
        "on the validation split.",
        "",
        markdown_table(rows, [c for c in rows[0] if c != "key"]),
        loss_verdict(rows) if len(rows) > 1 else "Only this CNN's loss was trained in this report; "
        "`reproduce.losses=[cross_entropy,keras]` (the default) trains the recipe with the other one too.",
        "",
        *[f"![{name}](figures/{name})" for name in shown],
        "",
    ]


def loss_verdict(rows: list[dict]) -> str:
    """One sentence, from the numbers: does the clipped loss keep the CNN less sure?"""
    by = {r["train.loss"]: r for r in rows}
    if not {"cross_entropy", "keras"} <= by.keys():
        return ""
    ce, k = by["cross_entropy"], by["keras"]
    big, small = ce["largest logit size"], k["largest logit size"]
    ratio = big / max(small, 1e-9)
    numbers = (f"largest logit size {big:,.0f} with cross_entropy against {small:,.0f} "
               f"clipped (×{ratio:.2g}); test cross-entropy {ce['test cross-entropy']:.4f} against "
               f"{k['test cross-entropy']:.4f}; accuracy {pct(ce['test_acc'])} against {pct(k['test_acc'])}")
    if ratio >= 2 and ce["test cross-entropy"] > k["test cross-entropy"]:
        return f"The clipped loss keeps the CNN less sure: {numbers}."
    if ratio <= 0.5:
        return f"The clipped loss does not keep the CNN less sure; it is the surer one here: {numbers}."
    return f"The loss makes little difference to how sure the CNN gets here: {numbers}."


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


def keras_file_section(trip: dict | None) -> list[str]:
    """The CNN through a Keras 2 weights file and back, as `checkpoint=model.h5` reads one."""
    if not trip:
        return []
    return [
        "### Your own Keras weights (`checkpoint=model.h5` or `.keras`)",
        "",
        f"This CNN written as a Keras 2 weights file (`mnist_probe.save_keras`: HWIO kernels, "
        f"(in, out) dense kernels, dense_1's rows in Keras's H×W×C flatten order; {trip['megabytes']} MB) "
        f"and opened the way `checkpoint=model.h5` opens a Keras-trained CNN: test accuracy "
        f"{pct(trip['test_acc'])} → {pct(trip['test_acc_from_keras_file'])}, the same top-1 class on "
        f"{trip['same_top1']:,} of {trip['images']:,} test images, logits within "
        f"{trip['max_abs_logit_diff']:.2g}.",
        "",
    ]


def every_digit_section(shift: dict) -> list[str]:
    """The study's test on every digit, the accuracy per digit and shift, and what shifted digits become."""
    if "every_digit" not in shift:
        return []
    per = shift["per_class"]
    rows = [{"digit": c, **{f"dy={dy}": acc[k] for k, dy in enumerate(per["dys"])}}
            for c, acc in enumerate(per["accuracy"])]  # fmt: skip
    return [
        "### Every digit, not one",
        "",
        "The study's test on the first test image of each digit (CNN, P(true class); in brackets the class "
        "that took over):",
        "",
        markdown_table(shift["every_digit"]),
        "![every digit](figures/shift_every_digit.png)",
        "",
        f"Accuracy per digit and vertical shift over the {shift.get('samples', 0)} test images of the grid:",
        "",
        markdown_table(rows),
        "![accuracy per digit and shift](figures/shift_per_class.png)",
        "",
        "What the shifted digits become (the most frequent mistakes at each dy):",
        "",
        markdown_table(shift["confusions"]),
        "",
    ]


def augment_section(augment: dict) -> list[str]:
    """Architecture (max vs anti-aliased pooling) against augmentation (training shift)."""
    lever_rows = augment.get("levers", [])
    lines = [
        f"### Architecture vs augmentation ({augment['recipe']} recipe, CNN only)",
        "",
        "One CNN per model and training shift: keras_cnn is the study's network, keras_cnn_aa the same with "
        "anti-aliased max-pooling (max with stride 1, a 3×3 binomial blur with stride 2; Zhang 2019).",
        "",
        markdown_table(augment["rows"]),
        "![architecture vs augmentation](figures/augment_sweep.png)",
        "",
    ]
    if lever_rows:
        best = {kind: max((r for r in lever_rows if r["lever"].startswith(kind)),
                          key=lambda r: r["consistency (points)"], default=None)
                for kind in ("model", "augment")}  # fmt: skip
        lines += ["What each lever buys (differences of the rows above; consistency and grid accuracy up is "
                  "better, change_1px down is better):", "", markdown_table(lever_rows)]
        if best["model"] and best["augment"]:
            m, a = best["model"], best["augment"]
            lines += [f"The architecture's best gain in consistency is {m['consistency (points)']:+.1f} "
                      f"points ({m['lever']}, {m['held fixed']}); the augmentation's is "
                      f"{a['consistency (points)']:+.1f} ({a['lever']}, {a['held fixed']}).", ""]
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


def results_device(results: dict) -> str:
    bench = results.get("bench")
    if bench:
        m = bench["machine"]
        return f"{m.get('gpu') or m['cpu']} ({m['cores']} threads, torch {m['torch']})"
    return str(results["train"].get("device", "this machine"))


def bench_section(bench: dict | None) -> str:
    if not bench:
        return "Not measured: run `make bench` (it writes outputs/bench/bench.json), then this stage again.\n"
    m = bench["machine"]
    head = f"Machine: {m.get('gpu') or m['cpu']}, {m['cores']} threads, torch {m['torch']}.\n\n"
    judged = any("met" in r for r in bench["rows"])  # tables from before the met column have none
    columns = ["what", "value", "unit", "target"] + (["met"] if judged else [])
    return head + markdown_table(bench["rows"], columns)
