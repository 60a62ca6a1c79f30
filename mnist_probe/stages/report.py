"""The report stage (+experiment=report): one CNN, the study's CNN or yours (model._target_=...,
checkpoint=...), opened up end to end: train (or load), activations, interpreters and shift, each in
its own subfolder, then report.md beside them with their tables and figures and the study's four
conclusions checked on this model. `make reproduce` stays the study's own report (docs/RESULTS.md)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from omegaconf import DictConfig

from mnist_probe.schema import typed
from mnist_probe.stages import activations, beyond, interpreters, shift, train
from mnist_probe.stages.adapters import run_stages
from mnist_probe.stages.page import Figures, write_page
from mnist_probe.stages.results import PageResults, ReportResult
from mnist_probe.stages.verdicts import conclusions

log = logging.getLogger(__name__)

STAGES = {"train": train.run, "activations": activations.run, "interpreters": interpreters.run,
          "shift": shift.run, "beyond": beyond.run}  # fmt: skip


def run(cfg: DictConfig, out_dir: Path) -> ReportResult:
    """Train (or load), activations, interpreters, shift and beyond on the configured CNN, then report.md."""
    start = time.perf_counter()
    done = run_stages(cfg, out_dir, STAGES)
    c = typed(cfg)
    results = PageResults(done["train"], done["activations"], done["interpreters"], done["shift"],
                           augment=None, losses=[], keras_file=None, bench=None, seeds=None,
                           seconds=time.perf_counter() - start, beyond=done["beyond"])  # fmt: skip
    checked = conclusions(results, c)
    path = write(cfg, out_dir, results, checked)
    log.info("report: %s", path)
    return ReportResult(str(path), results.train.key, results.train.test_acc, results.shift.code_layer,
                        checked)  # fmt: skip


def write(cfg: DictConfig, out_dir: Path, r: PageResults, checked: list) -> Path:
    """report.md in out_dir, its figures linked from the stages' subfolders."""
    c = typed(cfg)
    act = r.activations
    what = f"checkpoint `{c.checkpoint}`" if c.checkpoint else f"`{c.model._target_}`"
    head = [
        f"# What did this CNN learn? {what}",
        "",
        f"Written by `python -m mnist_probe.run +experiment=report` in {r.seconds / 60:.1f} min "
        f"(the run's overrides: .hydra/overrides.yaml). Code vectors are the output of `{act.code_layer}` "
        f"({act.code_dims} values; `code_layer=` changes it).",
        "",
    ]
    return write_page(out_dir / "report.md", head, cfg, r, checked, Figures(out_dir, out_dir))
