"""The report stage (+experiment=report): one CNN, the study's CNN or yours (model._target_=...,
checkpoint=...), opened up end to end: train (or load), activations, interpreters and shift, each in
its own subfolder, then report.md beside them with their tables and figures and the study's four
conclusions checked on this model. `make reproduce` stays the study's own report (docs/RESULTS.md)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from omegaconf import DictConfig

from mnist_probe.cache import atomic_write
from mnist_probe.names import file_name
from mnist_probe.schema import typed
from mnist_probe.stages import activations, beyond, interpreters, shift, train
from mnist_probe.stages.adapters import run_stages
from mnist_probe.stages.results import ReportResult, StudyResults
from mnist_probe.stages.sections import beyond_section, cnn_rows, gap_section
from mnist_probe.stages.verdicts import conclusions
from mnist_probe.tables import markdown_table

log = logging.getLogger(__name__)

STAGES = {"train": train.run, "activations": activations.run, "interpreters": interpreters.run,
          "shift": shift.run, "beyond": beyond.run}  # fmt: skip


def figure(out_dir: Path, path: str, caption: str) -> str:
    """A figure of a stage's folder, linked relative to report.md; '' when the stage did not draw it."""
    return f"![{caption}]({path})" if (out_dir / path).is_file() else ""


def run(cfg: DictConfig, out_dir: Path) -> ReportResult:
    """Train (or load), activations, interpreters, shift and beyond on the configured CNN, then report.md."""
    start = time.perf_counter()
    done = run_stages(cfg, out_dir, STAGES)
    c = typed(cfg)
    results = StudyResults(done["train"], done["activations"], done["interpreters"], done["shift"],
                           augment=None, losses=[], keras_file=None, bench=None, seeds=None,
                           seconds=time.perf_counter() - start, beyond=done["beyond"])  # fmt: skip
    checked = conclusions(results, c)
    path = write(cfg, out_dir, results, checked)
    log.info("report: %s", path)
    return ReportResult(str(path), results.train.key, results.train.test_acc, results.shift.code_layer,
                        checked)  # fmt: skip


def write(cfg: DictConfig, out_dir: Path, r: StudyResults, checked: list) -> Path:
    """report.md in out_dir, its figures linked from the stages' subfolders."""
    c = typed(cfg)
    act, shifted, first = r.activations, r.shift, r.activations.indices[0]
    what = f"checkpoint `{c.checkpoint}`" if c.checkpoint else f"`{c.model._target_}`"
    probes = r.interpreters.probes or []
    md = [
        f"# What did this CNN learn? {what}",
        "",
        f"Written by `python -m mnist_probe.run +experiment=report` in {r.seconds / 60:.1f} min "
        f"(the run's overrides: .hydra/overrides.yaml). Code vectors are the output of `{act.code_layer}` "
        f"({act.code_dims} values; `code_layer=` changes it).",
        "",
        "## The CNN",
        "",
        markdown_table(cnn_rows(cfg, r.train)),
        figure(out_dir, "train/calibration.png", "calibration"),
        "",
        *gap_section(r.train.gap, "train/gap.png"),
        "## 1. Feature maps and code vectors",
        "",
        f"Test image #{first}, every map of each layer:",
        "",
        *[feature_map(out_dir, layer, first) for layer in act.layers],
        "",
        figure(out_dir, "activations/code_vectors.png", "code vectors"),
        figure(out_dir, "activations/code_heatmap.png", "code heatmap"),
        figure(out_dir, "activations/class_similarity.png", "class similarity"),
        "",
        "## 2. Interpreters on the code vectors, and a linear probe on every layer",
        "",
        markdown_table(r.interpreters.table(), ["interpreter", "features", "test_acc", "study_acc", "diff"]),
        figure(out_dir, "interpreters/interpreters.png", "interpreters"),
        markdown_table(probes, ["layer", "dims", "test_acc"]) if probes else "",
        figure(out_dir, "interpreters/probes.png", "probes"),
        "",
        f"## 3. Translation: test #{shifted.index} (a {shifted.digit}) shifted",
        "",
        markdown_table(shifted.table),
        figure(out_dir, "shift/shift_probability.png", "P(true) against shift"),
        figure(out_dir, "shift/shift_deformation.png", "deformation"),
        "",
        f"At dataset scale ({shifted.samples} test images):" if shifted.dataset else "",
        "",
        markdown_table(shifted.dataset) if shifted.dataset else "",
        figure(out_dir, "shift/shift_heatmap.png", "accuracy heatmaps"),
        "",
        *beyond_section(r.beyond, "beyond"),
        "## The study's conclusions, checked on this CNN",
        "",
    ]
    for k, conclusion in enumerate(checked, 1):
        md += [f"**{k}. {conclusion.claim}** — *{conclusion.verdict}.* {conclusion.text}", ""]
    text = "\n".join(line for line in md if line is not None).replace("\n\n\n", "\n\n")
    return atomic_write(out_dir / "report.md", lambda tmp: tmp.write_text(text))


def feature_map(out_dir: Path, layer: str, index: int) -> str:
    """The link to one layer's feature-map sheet of test image #index (named by its digit too)."""
    sheets = out_dir / "activations" / "feature_maps"
    found = next(sheets.glob(f"{file_name(layer)}_digit*_test{index}.png"), None)
    return f"![{layer}]({found.relative_to(out_dir)})" if found else ""
