"""The pages of a sweep (`-m`), each from its results file in the sweep dir alone: summary.md (every
job's rows, from summary.json) and, for a sweep of the seeds stage, seeds.md (each headline number
over the seeds, from seeds.json); RESULTS.md's seeds section is seeds.md's body."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnist_probe.intervals import LEVEL
from mnist_probe.rows import from_json
from mnist_probe.stages.results import SeedsSummary
from mnist_probe.tables import markdown_table

SUMMARY_PAGE = "summary"  # summary.json's "page"
SEEDS_PAGE = "seeds"  # seeds.json's "page"


@dataclass(frozen=True)
class SweepRows:
    """A sweep's summary.json: every job's rows (each stage's own), tagged with the job and its overrides."""

    rows: list[dict[str, Any]]


def summary_page(summary: SweepRows) -> str:
    """summary.md: one table of every job's rows."""
    jobs = len({row["job"] for row in summary.rows})
    return "\n".join(
        [
            "# Sweep summary",
            "",
            f"Every row of the {jobs} jobs' results, each tagged with its job and overrides.",
            "",
            markdown_table(summary.rows),
        ]
    )


def seeds_page(seeds: SeedsSummary) -> str:
    """seeds.md: each headline number over the seeds, with seeds.png beside it."""
    title = f"# Every headline number over {len(seeds.seeds)} seeds ({', '.join(map(str, seeds.seeds))})"
    return "\n".join([title, "", *seeds_body(seeds, "![seeds](seeds.png)")])


def read_seeds(results_file: Path) -> SeedsSummary:
    """A seeds sweep's seeds.json (also as written before it named its page), its path kept."""
    saved = json.loads(results_file.read_text())
    return from_json(SeedsSummary, {**saved.get("results", saved), "path": str(results_file)})


SEEDS_COLUMNS = [
    "metric",
    "n",
    "mean",
    "std",
    "ci_low",
    "ci_high",
    "min",
    "max",
    "study",
    "study_inside_our_range",
]


def seeds_section(seeds: SeedsSummary | None, figs) -> list[str]:
    """Every headline number over a `make seeds` sweep (reproduce.seeds), beside the study's figure."""
    if not seeds:
        return [
            "## Seeds",
            "",
            "Not measured in this report: run `make seeds`, then this stage with "
            "`reproduce.seeds=<that sweep dir>/seeds.json`.",
            "",
        ]
    figure = figs.link(Path(seeds.path).resolve().with_name("seeds.png"), "seeds")
    return [
        f"## Seeds: {len(seeds.seeds)} seeds ({', '.join(map(str, seeds.seeds))})",
        "",
        *seeds_body(seeds, figure),
    ]


def seeds_body(seeds: SeedsSummary, figure: str) -> list[str]:
    """Where the spread comes from, which numbers the study's figure falls inside, the table, the figure."""
    outside = [r.metric for r in seeds.rows if r.study_inside_our_range == "no"]
    inside = [r.metric for r in seeds.rows if r.study_inside_our_range == "yes"]
    listed = ",".join(map(str, seeds.seeds))
    command = f"python -m mnist_probe.run {seeds.overrides or '+experiment=seeds'} seed={listed}"
    return [
        f"From `{seeds.path}` (`{command}`). Each number over the seeds (std with ddof 1; "
        f"ci_low–ci_high: the mean's {LEVEL:.0%} interval, Student's t over the seeds); the study's single "
        "run beside it. Inside what our seeds span: "
        + (", ".join(inside) or "none")
        + "; outside: "
        + (", ".join(outside) or "none")
        + ".",
        "",
        markdown_table(seeds.rows, SEEDS_COLUMNS),
        figure,
        "",
    ]
