"""`make bench-reports`: `+experiment=report` at its default settings on the models people bring, each
opened from a checkpoint (no training in the timed run), with an empty cache: the wall time, and
what each stage of the report took."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

log = logging.getLogger("mnist_probe.bench")

TIMM = "model._target_=timm.create_model +model.in_chans=1 +model.num_classes=10 +model.model_name="
SHORT = "train=default train.epochs=1 data.train_subset=5000"  # a model early in its training
# name -> (the model's overrides, how its checkpoint is trained: a recipe's overrides)
MODELS = {
    "the study's CNN (train=fast)": ("", "train=fast"),
    "torchvision ResNet-18, 1-channel stem": ("model._target_=mnist_probe.bench.peers.grey_resnet18", SHORT),
    "timm mobilenetv3_small_050": (TIMM + "mobilenetv3_small_050", SHORT),
    "timm resnet18": (TIMM + "resnet18", SHORT),
}


# What a report on any model may take on a laptop's two cores: a report still running then is stopped,
# and what it had done by then is what the page shows.
REPORT_LIMIT_S = 600
# What a run's log says of its stages and of the beyond stage's steps (stages.adapters: run_stages, step).
TOOK = re.compile(r"- (\w+ stage done in|beyond: .+ took) ([\d.]+) (s|min)$")


def _run(args: list[str], cwd: Path, env: dict, limit: float | None = None) -> bool:
    """python -m mnist_probe.run ARGS; False where it was stopped at `limit` seconds."""
    command = [sys.executable, "-m", "mnist_probe.run", *args, "trainer.progress_bar=false"]
    try:
        done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=limit)
    except subprocess.TimeoutExpired:
        return False
    if done.returncode:
        raise RuntimeError(f"{' '.join(args)} failed: {done.stderr.strip()[-800:]}")
    return True


def took(log_file: Path) -> dict[str, float]:
    """Seconds each stage, and each step of the beyond stage, took, as a run's log says (to 0.1 min)."""
    times = {}
    for line in log_file.read_text().splitlines() if log_file.is_file() else []:
        found = TOOK.search(line)
        if found:
            what = found.group(1).removesuffix(" stage done in").removesuffix(" took")
            times[what] = float(found.group(2)) * (60 if found.group(3) == "min" else 1)
    return times


def bound_rows(report: Path, full: Path) -> list[dict]:
    """What the report's bounds cost a model: each code-vector interpreter's and the layer probes' test
    accuracy in the report (fewer training images) against the interpreters stage's at its full sizes,
    from the two runs' results.json (the report's interpreters part, and the stage's)."""
    ours, theirs = (json.loads(path.read_text()) for path in (report, full))
    full_rows = {(r["interpreter"], r["features"]): r["test_acc"] for r in theirs["rows"]}
    rows = []
    for r in ours["rows"]:
        whole = full_rows.get((r["interpreter"], r["features"]))
        if whole is not None and r["features"] == "codes":
            what = f"  the study's CNN: {r['interpreter']} on codes, report minus full sizes"
            rows.append({"what": what, "value": 100 * (r["test_acc"] - whole), "unit": "points"})
    probes = {r["layer"]: r["test_acc"] for r in theirs.get("probes") or []}
    cost = [r["test_acc"] - probes[r["layer"]] for r in ours.get("probes") or [] if r["layer"] in probes]
    if cost:
        what = "  the study's CNN: linear probes, report minus full sizes (the layer that lost most)"
        rows.append({"what": what, "value": 100 * min(cost), "unit": "points"})
    return rows


def bench_reports(
    models: dict[str, tuple[str, str]] = MODELS,
    cache: str = "outputs/cache",
    extra: tuple[str, ...] = (),
    limit: float | None = REPORT_LIMIT_S,
) -> list[dict]:
    """For each model: its checkpoint (trained by its recipe, or from `cache`), then the report on that
    checkpoint in a fresh cache, timed and stopped at `limit` seconds; rows of the wall time, what each
    stage (and each step of the beyond stage) took by then, and the model's accuracy.
    `extra`: overrides of both runs (smaller ones, for a smoke run)."""
    rows = []
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")])}
    for name, (model, recipe) in models.items():
        with tempfile.TemporaryDirectory() as tmp:
            log.info("%s: its checkpoint (%s)", name, recipe)
            _run(
                [
                    "+experiment=train",
                    *model.split(),
                    *recipe.split(),
                    *extra,
                    f"paths.cache={cache}",
                    f"hydra.run.dir={tmp}/train",
                ],
                Path.cwd(),
                env,
            )
            trained = json.loads((Path(tmp) / "train" / "results.json").read_text())
            checkpoint = Path(tmp) / "model.pt"
            shutil.copy(trained["checkpoint"], checkpoint)
            log.info("%s: +experiment=report on its checkpoint, empty cache", name)
            start = time.perf_counter()
            finished = _run(
                [
                    "+experiment=report",
                    *model.split(),
                    f"checkpoint={checkpoint}",
                    *extra,
                    f"paths.cache={tmp}/cache",
                    f"hydra.run.dir={tmp}/report",
                ],
                Path.cwd(),
                env,
                limit,
            )
            seconds = time.perf_counter() - start
            stages = took(Path(tmp) / "report" / "run.log")
            cuts = []
            reported = Path(tmp) / "report" / "interpreters" / "results.json"
            if model == "" and reported.is_file() and not extra:  # the bounds' cost, on the study's CNN
                log.info("%s: the interpreters stage at its full sizes, beside the report's", name)
                _run(
                    [
                        "+experiment=interpreters",
                        f"checkpoint={checkpoint}",
                        f"paths.cache={tmp}/cache",
                        f"hydra.run.dir={tmp}/full",
                    ],
                    Path.cwd(),
                    env,
                )
                cuts = bound_rows(reported, Path(tmp) / "full" / "results.json")
        note = "" if finished else f" [stopped at {limit:.0f} s, unfinished]"
        rows.append({"what": f"report on {name}, wall time{note}", "value": seconds, "unit": "s"})
        rows.append({"what": f"  {name}: test accuracy", "value": 100 * trained["test_acc"], "unit": "%"})
        rows += [{"what": f"  {name}: {stage}", "value": s, "unit": "s"} for stage, s in stages.items()]
        rows += cuts
        log.info("%s: report %s in %.0f s", name, "done" if finished else "stopped", seconds)
    return rows
