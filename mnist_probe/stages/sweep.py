"""The sweep summary: a Hydra callback that, at the end of a multirun, writes one table from every
job's results.json into the sweep dir (summary.json/.md/.csv), the CNN's accuracy-against-shift curves of
the jobs, and, for a sweep of the seeds stage, each headline number with its spread (seeds.md).

Hydra builds this callback for every run, single runs too, so it imports no torch: only the tables
and the plots."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from mnist_probe.pages.render import write_and_render
from mnist_probe.pages.sweep import SEEDS_PAGE, SUMMARY_PAGE, SweepRows
from mnist_probe.plots import curves_plot, save, spread_plot
from mnist_probe.rows import SeedSpread
from mnist_probe.stages.results import SeedsSummary
from mnist_probe.tables import spread, write_csv

log = logging.getLogger(__name__)


def shared_overrides(overrides: list[str]) -> list[str]:
    """The overrides every job of a sweep was given (each job's as one string), in the first's order."""
    given = [o.split() for o in overrides]
    return [t for t in given[0] if all(t in g for g in given)] if given else []


def summarize_seeds(sweep_dir: Path, jobs: dict[str, dict]) -> list[SeedSpread]:
    """seeds.json/.md/.csv and seeds.png in the sweep dir from the jobs' headlines (seeds stage)."""
    headlines = {name: job["headline"] for name, job in jobs.items() if "headline" in job}
    if not headlines:
        return []
    # The study's figures every job can be set beside (none off MNIST, no shift figures for another digit)
    theirs = [jobs[name].get("study", {}) for name in headlines]
    reference = {k: v for k, v in theirs[0].items() if all(k in t for t in theirs)}
    rows = spread(list(headlines.values()), reference)
    write_csv(rows, sweep_dir / "seeds.csv")
    seeds = [jobs[name].get("seed") for name in headlines]
    # What every job was run with but its seed: the recipe and settings the spread belongs to
    given = shared_overrides([jobs[name].get("overrides", "") for name in headlines])
    shared = " ".join(t for t in given if not t.startswith("seed="))
    summary = SeedsSummary(seeds, shared, rows, list(headlines.values()))
    write_and_render(sweep_dir / "seeds.json", SEEDS_PAGE, summary)
    save(spread_plot(list(headlines.values()), reference, seeds), sweep_dir / "seeds.png")
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
            curve = job["curves"]["CNN"]
            curves[overrides] = (curve["dys"], curve["accs"])
    if rows:
        write_csv(rows, sweep_dir / "summary.csv")
        write_and_render(sweep_dir / "summary.json", SUMMARY_PAGE, SweepRows(rows))
    summarize_seeds(sweep_dir, jobs)
    if curves:
        # Label each line with the overrides that differ between jobs, not the shared ones.
        common = set(shared_overrides(list(curves)))
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
