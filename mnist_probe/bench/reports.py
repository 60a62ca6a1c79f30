"""`make bench-reports`: `+experiment=report` at its default settings on the models people bring, each
opened from a checkpoint (no training in the timed run), with an empty cache: the wall time, and
what each stage of the report took."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mnist_probe.names import PAGE_JSON

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


def _run(args: list[str], cwd: Path, env: dict) -> None:
    command = [sys.executable, "-m", "mnist_probe.run", *args, "trainer.progress_bar=false"]
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(args)} failed: {done.stderr.strip()[-800:]}")


def bench_reports(models: dict[str, tuple[str, str]] = MODELS, cache: str = "outputs/cache") -> list[dict]:
    """For each model: its checkpoint (trained by its recipe, or from `cache`), then the report on that
    checkpoint in a fresh cache, timed; rows of the wall time, each stage's, and the model's accuracy."""
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
            _run(
                [
                    "+experiment=report",
                    *model.split(),
                    f"checkpoint={checkpoint}",
                    f"paths.cache={tmp}/cache",
                    f"hydra.run.dir={tmp}/report",
                ],
                Path.cwd(),
                env,
            )
            seconds = time.perf_counter() - start
            page = json.loads((Path(tmp) / "report" / PAGE_JSON).read_text())["results"]
        rows.append({"what": f"report on {name}, wall time", "value": seconds, "unit": "s"})
        rows.append({"what": f"  {name}: test accuracy", "value": 100 * trained["test_acc"], "unit": "%"})
        for stage, took in (page.get("stage_seconds") or {}).items():
            rows.append({"what": f"  {name}: {stage}", "value": took, "unit": "s"})
        log.info("%s: report in %.0f s", name, seconds)
    return rows
