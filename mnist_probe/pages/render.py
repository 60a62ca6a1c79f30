"""A report page rendered again from its results file alone, with no run, config or clock:

    python -m mnist_probe.pages.render RUN_DIR/page.json    # RUN_DIR/report.md
    python -m mnist_probe.pages.render docs/NAME.json       # docs/NAME.md, beside its results file
    python -m mnist_probe.pages.render docs/RESULTS.json    # docs/RESULTS.md (make reproduce's)
    python -m mnist_probe.pages.render docs/PERFORMANCE.json    # docs/PERFORMANCE.md (make bench's)
    python -m mnist_probe.pages.render SWEEP_DIR/seeds.json     # seeds.md (summary.json: summary.md)

`make pages` renders every docs/*.json so; a test renders each and compares it with the page committed
beside it, so a change of wording and the pages it changes land together."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from mnist_probe.errors import UserError, first_line
from mnist_probe.names import PAGE_JSON
from mnist_probe.pages.page_results import PageResults
from mnist_probe.pages.performance import PERFORMANCE_PAGE, render_page
from mnist_probe.pages.report import RESULTS_PAGE, write, write_results
from mnist_probe.pages.sweep import SEEDS_PAGE, SUMMARY_PAGE, render_sweep_page
from mnist_probe.rows import from_json


def render(results_file: Path) -> Path:
    """The page of `results_file`: report.md of the run whose page.json it is, docs/RESULTS.md of
    make reproduce's RESULTS.json, docs/PERFORMANCE.md of the benchmarks', a sweep's seeds.md or
    summary.md, else the report page (.md) beside it."""
    saved = results_of(results_file)
    if saved.get("page") == PERFORMANCE_PAGE:
        return render_page(results_file)
    if saved.get("page") in (SEEDS_PAGE, SUMMARY_PAGE):
        return render_sweep_page(results_file)
    results = from_json(PageResults, saved["results"])
    if results.setting is None:
        raise SystemExit(f"{results_file} was written before pages kept their setting; run the report again")
    run_dir = Path(results.run_dir) if results.run_dir else results_file.parent
    if saved.get("page") == RESULTS_PAGE:
        return write_results(run_dir, results, results_file.parent)
    if results_file.name == PAGE_JSON:
        return write(results_file.parent, results)
    return write(results_file.parent, results, results_file.with_suffix(".md"))


def results_of(results_file: Path) -> dict:
    """A page's results file as saved, or a one-line refusal naming what it is not."""
    kinds = "a report's page.json, docs/NAME.json, or a sweep's seeds.json or summary.json"
    try:
        saved = json.loads(results_file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"{results_file}: cannot read it as JSON ({first_line(err)}); give {kinds}") from None
    if not isinstance(saved, dict) or "results" not in saved:
        raise UserError(f"{results_file}: no page's results in it; give {kinds}")
    return saved


if __name__ == "__main__":
    try:
        for name in sys.argv[1:]:
            print(render(Path(name)))
    except UserError as err:
        raise SystemExit(f"error: {err}") from None
