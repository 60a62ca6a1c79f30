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
from mnist_probe.pages.conclusions import conclusions
from mnist_probe.pages.page_results import PageResults, ReportResult
from mnist_probe.pages.report import write
from mnist_probe.rows import from_json, to_json
from mnist_probe.schema import typed
from mnist_probe.stages import activations, beyond, interpreters, shift, train
from mnist_probe.stages.adapters import page_setting, run_stages

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
        "draws of each model-randomisation step": c.beyond.randomisation_draws,
    }
