"""docs/PERFORMANCE.json and the page rendered from it: the runs `make bench`, `make bench-long`, `make
bench-run` and `make bench-reports` leave in outputs/bench/ replace their parts of the results file;
the parts not run this time stay as they were measured."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

from mnist_probe.pages.performance import (
    PARTS,
    PERFORMANCE_PAGE,
    BenchPart,
    BenchRun,
    PerformanceResults,
    read_results,
)
from mnist_probe.pages.render import write_and_render
from mnist_probe.rows import from_json

log = logging.getLogger("mnist_probe.bench")


def labelled(name: str, label: str | None) -> str:
    """The JSON name of another run of part `name` (--label): NAME@LABEL, a column of its own."""
    return f"{name}@{label}" if label else name


def measured(out: Path, stored: PerformanceResults) -> PerformanceResults:
    """stored with the runs in out: a part's run (NAME.json) replaces its part, with the other runs
    beside it in out (NAME@LABEL.json); other runs alone join the part's stored columns."""
    parts = dict(stored.parts)
    for name in PARTS:
        others = {p.stem.split("@", 1)[1]: _run(p) for p in sorted(out.glob(f"{name}@*.json"))}
        if (out / f"{name}.json").is_file():
            parts[name] = BenchPart(_run(out / f"{name}.json"), others)
        elif others and name in parts:
            parts[name] = dataclasses.replace(parts[name], others=parts[name].others | others)
    return PerformanceResults(parts)


def _run(path: Path) -> BenchRun:
    return from_json(BenchRun, json.loads(path.read_text()))


def write_page(out: Path, page: Path) -> Path:
    """page (docs/PERFORMANCE.md) and its results file beside it, with the runs in out."""
    results_file = page.with_suffix(".json")
    page = write_and_render(results_file, PERFORMANCE_PAGE, measured(out, read_results(results_file)))
    log.info("wrote %s", page)
    return page
