"""`make bench-long` and `--levers`: recipes trained from scratch and tested as they go (time to
99.3%), and the spread of the fast recipe over seeds."""

from __future__ import annotations

import logging
import math
import statistics
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch

from mnist_probe import study
from mnist_probe.config import compose_config
from mnist_probe.schema import typed
from mnist_probe.scoring import accuracy
from mnist_probe.trainer import make_datamodule, make_lit, make_trainer

log = logging.getLogger("mnist_probe.bench")


class AccuracyClock(pl.Callback):
    """Test accuracy every `every` training steps and at the end of each epoch, against the training
    seconds and images seen so far (the clock stops while it tests)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, every: int) -> None:
        self.images, self.labels, self.every = images, labels, max(int(every), 1)
        self.points: list[dict] = []  # {epoch, step, images, seconds, acc}
        self.start = self.paused = 0.0
        self.seen = 0

    def on_train_start(self, trainer, pl_module) -> None:
        self.images = self.images.to(pl_module.device)  # the test set on the device once
        self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.seen += len(batch[1])
        if trainer.global_step % self.every == 0:
            self.measure(trainer, pl_module)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if not self.points or self.points[-1]["step"] != trainer.global_step:
            self.measure(trainer, pl_module)

    def measure(self, trainer, pl_module) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize()
        stop = time.perf_counter()
        acc = accuracy(pl_module.model, self.images, self.labels)
        seconds = stop - self.start - self.paused
        self.points.append(
            {
                "epoch": trainer.current_epoch + 1,
                "step": trainer.global_step,
                "images": self.seen,
                "seconds": seconds,
                "acc": acc,
            }
        )
        self.paused += time.perf_counter() - stop


def time_to_accuracy(cfg, every: float) -> tuple[list[dict], int]:
    """Train cfg's recipe from scratch (no cache), testing every `every` of an epoch: AccuracyClock's
    points, and the number of training images in an epoch."""
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    c = typed(cfg)
    dm = make_datamodule(c.data, c.train)
    dm.setup()
    train_images = len(dm.tensors["train"][1])
    steps_per_epoch = math.ceil(train_images / cfg.train.batch_size)
    clock = AccuracyClock(*dm.tensors["test"], every=round(every * steps_per_epoch))
    with tempfile.TemporaryDirectory() as tmp:
        trainer = make_trainer(
            c.train,
            c.trainer,
            Path(tmp),
            Path(tmp) / "work",
            enable_progress_bar=False,
            extra_callbacks=[clock],
        )
        trainer.fit(make_lit(c.train, c.model, c.data), datamodule=dm)
    return clock.points, train_images


def first_reaching(points: list[dict], target: float) -> dict | None:
    """The first point whose test accuracy is at least target, or None."""
    return next((p for p in points if p["acc"] >= target), None)


# The accuracy the study's CNN reached: how long each recipe takes to get there.
TARGET_ACC = study.CNN_ACC


def accuracy_rows(name: str, points: list[dict], train_images: int) -> list[dict]:
    """Rows for one recipe's curve: when it first reached TARGET_ACC (seconds, images), and where it ended."""
    never = {"seconds": float("nan"), "images": float("nan")}
    hit = first_reaching(points, TARGET_ACC) or never
    end = points[-1]
    return [
        {
            "what": f"{name}: time to {100 * TARGET_ACC:.1f}% test accuracy",
            "value": hit["seconds"],
            "unit": "s",
        },
        {"what": f"{name}: images seen until then", "value": hit["images"], "unit": "images"},
        {
            "what": f"{name}: in epochs of {train_images} images",
            "value": hit["images"] / train_images,
            "unit": "epochs",
        },
        {
            "what": f"{name}: final test accuracy, after {end['seconds']:.0f} s",
            "value": 100 * end["acc"],
            "unit": "%",
        },
    ]


# `make bench-long`: the fast recipe's and the default recipe's time to 99.3% and final accuracy,
# then the spread of the fast one over SPREAD's seeds.
LONG = {"train=fast": ["train=fast"], "train=default": ["train=default"]}
# `bench --levers`: each lever on its own, on the default recipe cut to one epoch; then the
# combination that became train=fast, and the default recipe (written as bench-levers in --out).
ONE = ["train=default", "train.epochs=1"]
LEVERS = {
    "1 epoch": ONE,
    "1 epoch, peak lr 0.001": [*ONE, "train.scheduler.factory.max_lr=0.001"],
    "1 epoch, peak lr 0.004": [*ONE, "train.scheduler.factory.max_lr=0.004"],
    "1 epoch, warm-up 10%": [*ONE, "train.scheduler.factory.pct_start=0.1"],
    "1 epoch, warm-up 40%": [*ONE, "train.scheduler.factory.pct_start=0.4"],
    "1 epoch, batch 64": [*ONE, "train.batch_size=64"],
    "1 epoch, batch 256": [*ONE, "train.batch_size=256"],
    "1 epoch, label smoothing 0.1": [*ONE, "train.loss=label_smoothing"],
    "1 epoch, no augmentation": [*ONE, "train.augment.enabled=false"],
    "1 epoch, half-strength augmentation": [
        *ONE,
        "train.augment.rotation=5",
        "train.augment.zoom=0.05",
        "train.augment.shift=0.05",
    ],
    "1 epoch, foreach RMSprop": [*ONE, "+train.optimizer.foreach=true"],
    "2 epochs": ["train=default", "train.epochs=2"],
    "train=fast": ["train=fast"],
    "train=default": ["train=default"],
}


# `make bench-long` also trains the recipe `make run` trains once per seed: how reliably it gets there.
SPREAD = ("train=fast", tuple(range(42, 52)))


def spread_rows(name: str, curves: dict[int, list[dict]]) -> list[dict]:
    """Over seeds (seed -> its curve): how many reached TARGET_ACC, the images and seconds they took
    (median, min, max) and the final test accuracy (mean, min, max)."""
    n, target = len(curves), f"{100 * TARGET_ACC:.1f}%"
    hits = [h for h in (first_reaching(c, TARGET_ACC) for c in curves.values()) if h]
    finals = [100 * c[-1]["acc"] for c in curves.values()]
    rows = [
        {
            "what": f"{name}, {n} seeds: reached {target} test accuracy",
            "value": len(hits),
            "unit": f"of {n} seeds",
        },
        {
            "what": f"{name}, {n} seeds: final test accuracy, mean (min and max after the unit)",
            "value": statistics.mean(finals),
            "unit": f"% [{min(finals):.2f}, {max(finals):.2f}]",
        },
    ]
    for key, unit in (("images", "images"), ("seconds", "s")):
        got = [h[key] for h in hits] or [float("nan")]
        what = (
            f"{name}, {n} seeds: {key} to {target}, median of those that got there "
            "(min and max after the unit)"
        )
        rows.append(
            {
                "what": what,
                "value": statistics.median(got),
                "unit": f"{unit} [{min(got):.0f}, {max(got):.0f}]",
            }
        )
    return rows


def bench_spread(overrides: list[str], every: float, recipe: str, seeds) -> tuple[list[dict], dict]:
    """recipe trained from scratch once per seed: spread_rows, and each seed's curve."""
    curves = {}
    for seed in seeds:
        log.info("bench-long: %s, seed %d", recipe, seed)
        cfg = compose_config("paths.output_dir=outputs/bench", recipe, *overrides, f"seed={seed}")
        curves[seed], _ = time_to_accuracy(cfg, every)
    return spread_rows(recipe, curves), {f"{recipe} seed={s}": c for s, c in curves.items()}


def bench_long(overrides: list[str], every: float, recipes: dict[str, list[str]]) -> tuple[list[dict], dict]:
    """Each recipe trained from scratch: rows (time and images to 99.3%, final accuracy) and every
    recipe's curve."""
    rows, curves = [], {}
    for name, extra in recipes.items():
        cfg = compose_config("paths.output_dir=outputs/bench", *extra, *overrides)
        log.info("bench-long: %s (%s)", name, " ".join(extra))
        # The default recipe is there for its final accuracy: a test every quarter epoch will do.
        often = max(every, 0.25) if name == "train=default" else every
        curves[name], train_images = time_to_accuracy(cfg, often)
        rows += accuracy_rows(name, curves[name], train_images)
    return rows, curves
