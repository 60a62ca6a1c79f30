"""The report stage (+experiment=report): one CNN, the study's CNN or yours (model._target_=...,
checkpoint=...), opened up end to end: train (or load), activations, interpreters and shift, each in
its own subfolder, then report.md beside them with their tables and figures and the study's four
conclusions checked on this model. `make reproduce` stays the study's own report (docs/RESULTS.md)."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from omegaconf import DictConfig

from mnist_probe.cache import atomic_write
from mnist_probe.names import PAGE_JSON
from mnist_probe.rows import from_json, to_json
from mnist_probe.schema import typed
from mnist_probe.stages import activations, beyond, interpreters, shift, train
from mnist_probe.stages.adapters import page_setting, run_stages
from mnist_probe.stages.changes import changes_section
from mnist_probe.stages.page import Figures, write_page
from mnist_probe.stages.page_results import PageResults, ReportResult
from mnist_probe.stages.verdicts import conclusions
from mnist_probe.tables import duration

log = logging.getLogger(__name__)

# The stages one CNN goes through, in order, each into its own subfolder (make reproduce chains them too).
CHAIN = {
    "train": train.run,
    "activations": activations.run,
    "interpreters": interpreters.run,
    "shift": shift.run,
    "beyond": beyond.run,
}


def run(cfg: DictConfig, out_dir: Path) -> ReportResult:
    """Train (or load), activations, interpreters, shift and beyond on the configured CNN, then report.md
    (and report.page), both rendered from page.json alone (`python -m mnist_probe.pages` renders again)."""
    start, seconds = time.perf_counter(), {}
    done = run_stages(cfg, out_dir, CHAIN, seconds)
    c = typed(cfg)
    compared, compared_data = None, None
    if c.report is not None and c.report.compare is not None:
        saved = json.loads((Path(c.report.compare) / PAGE_JSON).read_text())
        compared, compared_data = from_json(PageResults, saved["results"]), saved["data"]
    results = PageResults(
        done["train"],
        done["activations"],
        done["interpreters"],
        done["shift"],
        augment=None,
        losses=[],
        keras_file=None,
        bench=None,
        seeds=None,
        seconds=time.perf_counter() - start,
        beyond=done["beyond"],
        stage_seconds=seconds,
        sizes=sizes(c),
        setting=page_setting(cfg),
        compared=compared,
        compared_data=compared_data,
    )
    saved = {"data": c.data.name, "results": to_json(results)}
    atomic_write(out_dir / PAGE_JSON, lambda tmp: tmp.write_text(json.dumps(saved)))
    path = write(out_dir, results)
    log.info("report: %s", path)
    if c.report is not None and c.report.page is not None:
        page = Path(c.report.page)
        atomic_write(page.with_suffix(".json"), lambda tmp: tmp.write_text(json.dumps(saved)))
        log.info("page: %s (its results: %s)", write(out_dir, results, page), page.with_suffix(".json"))
    return ReportResult(
        str(path), results.train.key, results.train.test_acc, results.shift.code_layer, conclusions(results)
    )


def sizes(c) -> dict[str, int | None]:
    """The sizes a report sees, smaller than the stages' own (conf/experiment/report.yaml)."""
    return {
        "training images of each code-vector interpreter": c.report.train_samples,
        "training images of each layer's probe": c.interpreters.probes.train_samples,
        "layers of a deep model drawn, probed and randomised, at most": c.max_layers,
    }


def sizes_said(r: PageResults) -> str:
    """The report's sizes as its head says them, with where their cost is measured."""
    if not r.sizes:
        return ""
    said = "; ".join(f"{what}: {'all' if n is None else f'{n:,}'}" for what, n in r.sizes.items())
    return (
        f" A report sees fewer images than each stage run alone ({said}); docs/PERFORMANCE.md "
        "(make bench-reports) gives what that costs the study's CNN."
    )


def stage_times(r: PageResults) -> str:
    """What each stage took, as a page's head says it ('train 2 s, activations 31 s, ...')."""
    times = ", ".join(f"{name} {duration(s)}" for name, s in (r.stage_seconds or {}).items())
    return times or "stages untimed"


def write(run_dir: Path, r: PageResults, page: Path | None = None) -> Path:
    """report.md in run_dir, its figures linked from the stages' subfolders; or, with page, that page,
    its figures copied into figures-<page's name>/ beside it (or, where run_dir no longer holds them,
    linked there), its head naming the machine and command. From the results alone."""
    s, act = r.setting, r.activations
    tail = changes_section(r, r.compared, (s.data, r.compared_data)) if r.compared else []
    checked = conclusions(r)
    if page is None:
        head = [
            f"# What did this CNN learn? {s.model}",
            "",
            f"Written by `python -m mnist_probe.run +experiment=report` in {r.seconds / 60:.1f} min "
            f"({stage_times(r)}; the run's overrides: .hydra/overrides.yaml). Code vectors are the "
            f"output of `{act.code_layer}` ({act.code_dims} values; `code_layer=` changes it)."
            + sizes_said(r),
            "",
        ]
        return write_page(run_dir / "report.md", head, r, checked, Figures(run_dir, run_dir), tail=tail)
    head = [
        f"# What did a CNN learn about {s.data}? {s.model}",
        "",
        f"Generated by `{s.command}` on {s.date}, on {s.machine}, in "
        f"{r.seconds / 60:.1f} min ({stage_times(r)}). Nothing below is typed by hand. Code vectors are "
        f"the output of `{act.code_layer}` ({act.code_dims} values).{sizes_said(r)}",
        "",
    ]
    figs = Figures(run_dir, page.parent, f"figures-{page.stem}")
    return write_page(page, head, r, checked, figs, tail=tail)
