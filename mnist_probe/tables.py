"""Result tables: rows (dicts or dataclasses) as GitHub-flavoured markdown and CSV, and the spread of
numbers over repeated runs (seeds); numbers and intervals as cells and sentences print them."""

from __future__ import annotations

import csv
import dataclasses
import io
from pathlib import Path
from typing import Any

import numpy as np

from mnist_probe.cache import atomic_write
from mnist_probe.intervals import LEVEL, seed_interval
from mnist_probe.rows import SeedSpread


def pct(x: float | None, digits: int = 2, style: str = "f") -> str:
    """A fraction as a percentage, 'n/a' when missing: `digits` decimals, or with style='g' `digits`
    significant digits, as the study wrote its probabilities (100%, 99.99%, 0.71%, 1.4e-04%)."""
    return "n/a" if x is None else f"{100 * x:.{digits}{style}}%"


def duration(seconds: float) -> str:
    """A time as people say it: '42 s' under two minutes, else '3.5 min'."""
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _dicts(rows: list) -> list[dict]:
    return [dataclasses.asdict(r) if dataclasses.is_dataclass(r) else r for r in rows]


def markdown_table(rows: list, columns: list[str] | None = None) -> str:
    """A GitHub-flavoured markdown table of rows (dicts or dataclasses), columns in first-seen order."""
    rows = _dicts(rows)
    columns = columns or list(dict.fromkeys(k for row in rows for k in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_table(rows: list, stem: str | Path, columns: list[str] | None = None) -> str:
    """Write rows as stem.md and stem.csv (atomically); return the markdown."""
    rows = _dicts(rows)
    columns = columns or list(dict.fromkeys(k for row in rows for k in row))
    md = markdown_table(rows, columns)
    atomic_write(Path(stem).with_suffix(".md"), lambda tmp: tmp.write_text(md))
    write_csv(rows, Path(stem).with_suffix(".csv"), columns)
    return md


def write_csv(rows: list, path: str | Path, columns: list[str] | None = None) -> Path:
    """Write rows as a CSV file (atomically), columns in first-seen order."""
    rows = _dicts(rows)
    columns = columns or list(dict.fromkeys(k for row in rows for k in row))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return atomic_write(path, lambda tmp: tmp.write_text(buf.getvalue()))


def spread(headlines: list[dict[str, float]], reference: dict[str, float]) -> list[SeedSpread]:
    """Each headline number over the jobs (seeds): n, mean, std (ddof 1), the mean's 95% interval
    over the seeds (intervals.seed_interval), min, max; where the study gave the number (reference),
    its figure, its distance from our mean in our std, and whether it lies inside what our seeds
    span ([min, max])."""
    rows = []
    for name in dict.fromkeys(k for h in headlines for k in h):
        values = np.array([h[name] for h in headlines if h.get(name) is not None], dtype=float)
        std = float(values.std(ddof=1)) if len(values) > 1 else float("nan")
        low, high = seed_interval(values) or (float("nan"), float("nan"))
        mean = float(values.mean())
        ref = reference.get(name)
        beside = {}
        if ref is not None:
            beside = {
                "study": ref,
                "study_minus_mean_in_std": (ref - mean) / std if std > 0 else None,
                "study_inside_our_range": "yes" if values.min() <= ref <= values.max() else "no",
            }
        rows.append(
            SeedSpread(
                name, len(values), mean, std, low, high, float(values.min()), float(values.max()), **beside
            )
        )
    return rows


def valued(value: float, interval: list[float] | tuple[float, float] | None, digits: int = 2) -> str:
    """A unitless number with its interval where it has one: '0.85 (95% CI 0.83–0.88)'."""
    return f"{value:.{digits}f}" + (f" ({shown(interval, 1, digits, '')})" if interval else "")


def span(interval: list[float] | tuple[float, float] | None, scale: float = 1, digits: int = 2) -> str:
    """An interval's two ends as a table cell prints them: '0.15–0.19' ('' where there is none)."""
    if interval is None:
        return ""
    low, high = (scale * v for v in interval)
    return f"{low:.{digits}f}–{high:.{digits}f}"


def shown(interval: tuple[float, float] | None, scale: float = 100, digits: int = 2, unit: str = "%") -> str:
    """An interval as sentences print it: '95% CI 99.12–99.47%' ('' where there is none)."""
    if interval is None:
        return ""
    return f"{LEVEL:.0%} CI {span(interval, scale, digits)}{unit}"
