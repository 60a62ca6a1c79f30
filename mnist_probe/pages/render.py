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

from mnist_probe.cache import atomic_write, write_json
from mnist_probe.errors import UserError, first_line
from mnist_probe.names import PAGE_JSON
from mnist_probe.pages.page_results import PageResults
from mnist_probe.pages.performance import PERFORMANCE_PAGE, PerformanceResults, performance_page
from mnist_probe.pages.report import RESULTS_PAGE, write, write_results
from mnist_probe.pages.sweep import SEEDS_PAGE, SUMMARY_PAGE, SweepRows, seeds_page, summary_page
from mnist_probe.rows import from_json, to_json
from mnist_probe.stages.results import SeedsSummary


def render(results_file: Path) -> Path:
    """The page of `results_file`: report.md of the run whose page.json it is, docs/RESULTS.md of
    make reproduce's RESULTS.json, docs/PERFORMANCE.md of the benchmarks', a sweep's seeds.md or
    summary.md, else the report page (.md) beside it."""
    saved = results_of(results_file)
    if saved.get("page") == PERFORMANCE_PAGE:
        return beside(results_file, performance_page(from_json(PerformanceResults, saved["results"])))
    if saved.get("page") == SEEDS_PAGE:  # the page beside it cites it by name
        seeds = from_json(SeedsSummary, {**saved["results"], "path": results_file.name})
        return beside(results_file, seeds_page(seeds))
    if saved.get("page") == SUMMARY_PAGE:
        return beside(results_file, summary_page(from_json(SweepRows, saved["results"])))
    results = from_json(PageResults, saved["results"])
    if results.setting is None:
        raise SystemExit(f"{results_file} was written before pages kept their setting; run the report again")
    run_dir = Path(results.run_dir) if results.run_dir else results_file.parent
    if saved.get("page") == RESULTS_PAGE:
        return write_results(run_dir, results, results_file.parent)
    if results_file.name == PAGE_JSON:
        return write(results_file.parent, results)
    return write(results_file.parent, results, results_file.with_suffix(".md"))


def write_and_render(results_file: Path, page: str, results) -> Path:
    """results_file ({"page", "results"}) and the page rendered from it alone, beside it (NAME.md)."""
    write_json(results_file, {"page": page, "results": to_json(results)})
    return render(results_file)


def beside(results_file: Path, text: str) -> Path:
    """The page NAME.md beside its results file NAME.json, written whole."""
    return atomic_write(results_file.with_suffix(".md"), lambda tmp: tmp.write_text(text))


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
