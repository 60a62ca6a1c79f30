"""Result tables (markdown and CSV) and the Hydra callback that summarises a multirun sweep."""

from __future__ import annotations

import csv
import io
import json
import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from mnist_probe.cache import atomic_write

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


def summarize_sweep(sweep_dir: str | Path) -> list[dict]:
    """One table from every job of a sweep: each job's `rows`, tagged with its overrides."""
    sweep_dir = Path(sweep_dir)
    rows, curves = [], {}
    for results in sorted(sweep_dir.glob("*/results.json"), key=lambda p: int(p.parent.name)):
        job = json.loads(results.read_text())
        overrides = job.get("overrides") or results.parent.name
        for row in job.get("rows", []):
            rows.append({"job": results.parent.name, "overrides": overrides, **row})
        # The CNN's accuracy against shift, one line per job: e.g. a sweep over train.augment.shift
        if "CNN" in job.get("curves", {}):
            curves[overrides] = job["curves"]["CNN"]
    if rows:
        write_table(rows, sweep_dir / "summary")
    if curves:
        from mnist_probe.viz import curves_plot, save

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
        log.info("sweep summary: %d rows in %s", len(rows), sweep_dir / "summary.md")
