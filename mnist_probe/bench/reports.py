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

import numpy as np
from hydra.utils import instantiate

from mnist_probe.config import compose_config
from mnist_probe.interpretation import subsample
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


# Training images the SVM on the study's CNN's code vectors is fitted on, beside all 54,000: what a
# budget that cut them would cost (make run's CNN is fitted whole within its budget).
SVM_CUTS = (25_000, 10_000)


def svm_cut_rows(cache: Path) -> list[dict]:
    """The calibrated SVM (the catalog's) on the code vectors a report cached (train split, scored test
    images), fitted on all of them and on SVM_CUTS of them: its test accuracy each time."""
    codes = {}
    for meta in cache.glob("codes-*/meta.json"):
        with np.load(meta.parent / "codes.npz") as z:
            codes[json.loads(meta.read_text())["split"]] = (z["codes"], z["labels"])
    (x, y), (x_test, y_test) = codes["train"], codes["scored"]
    spec = compose_config("+experiment=interpreters").interpreters.catalog.svm.estimator
    rows = []
    for n in (len(y), *SVM_CUTS):
        svm = instantiate(spec).fit(*subsample(x, y, n))
        acc = float((svm.predict(x_test) == y_test).mean())
        rows.append(
            {
                "what": f"  the study's CNN: svm on {n:,} of its {len(y):,} code vectors",
                "value": 100 * acc,
                "unit": "%",
            }
        )
    return rows


def bench_reports(
    models: dict[str, tuple[str, str]] = MODELS, cache: str = "outputs/cache", extra: tuple[str, ...] = ()
) -> list[dict]:
    """For each model: its checkpoint (trained by its recipe, or from `cache`), then the report on that
    checkpoint in a fresh cache, timed; rows of the wall time, each stage's, and the model's accuracy.
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
            _run(
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
            )
            seconds = time.perf_counter() - start
            page = json.loads((Path(tmp) / "report" / PAGE_JSON).read_text())["results"]
            cuts = svm_cut_rows(Path(tmp) / "cache") if model == "" and not extra else []
        rows.append({"what": f"report on {name}, wall time", "value": seconds, "unit": "s"})
        rows.append({"what": f"  {name}: test accuracy", "value": 100 * trained["test_acc"], "unit": "%"})
        for stage, took in (page.get("stage_seconds") or {}).items():
            rows.append({"what": f"  {name}: {stage}", "value": took, "unit": "s"})
        rows += cuts
        log.info("%s: report in %.0f s", name, seconds)
    return rows
