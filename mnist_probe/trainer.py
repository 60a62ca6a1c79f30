"""Lightning's pieces as a run sets them up: the DataModule and LightningModule of a recipe, the Trainer
with its callbacks (a Ctrl-C or SIGTERM stops after the step in flight, with a checkpoint there), the
precision 'auto' picks, and an interrupted run's checkpoint, read or moved aside."""

from __future__ import annotations

import logging
import math
import os
import signal
import threading
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from pytorch_lightning.callbacks import (
    LearningRateMonitor,
    ModelCheckpoint,
    OnExceptionCheckpoint,
    Timer,
    TQDMProgressBar,
)
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities.exceptions import SIGTERMException
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from mnist_probe.data import ImageDataModule
from mnist_probe.lit import LitCNN
from mnist_probe.machine import describe
from mnist_probe.model import (
    build_model,
)
from mnist_probe.model_spec import ModelSpec
from mnist_probe.precision import fastest
from mnist_probe.specs import DataSpec, Hardware, Recipe, plain
from mnist_probe.tables import duration

log = logging.getLogger(__name__)


def resolve_precision(precision: str, accelerator: str) -> str:
    """'auto' -> the faster of 32-true and bf16-mixed on this machine, measured once
    (mnist_probe.precision); other values pass through."""
    if precision != "auto":
        return str(precision)
    return fastest(accelerator)["chosen"]


def make_datamodule(data: DataSpec, recipe: Recipe) -> ImageDataModule:
    """The DataModule of data, with the recipe's batch size and augmentation."""
    return ImageDataModule(data, batch_size=recipe.batch_size, augment=instantiate(plain(recipe.augment)))


def make_lit(recipe: Recipe, model: ModelSpec, data: DataSpec | None = None) -> LitCNN:
    """The LightningModule: a fresh model, built for data's images (default MNIST's), with the recipe's
    optimiser and scheduler."""
    data = data or DataSpec()
    net = build_model(model, data.shape, data.num_classes)
    if recipe.channels_last:
        # NHWC lets oneDNN pick faster conv kernels: measured ~1.3x per training step on this CPU.
        net = net.to(memory_format=torch.channels_last)
    sched = recipe.scheduler
    return LitCNN(
        net,
        optimizer=instantiate(recipe.optimizer),
        scheduler=instantiate(sched.factory) if sched else None,
        scheduler_monitor=sched.monitor if sched else None,
        scheduler_interval=sched.interval if sched else "epoch",
        loss=recipe.loss,
    )


class StopOnCtrlC(pl.Callback):
    """Ctrl-C taken as Lightning takes SIGTERM: the step in flight ends, then the training stops by
    an exception (OnExceptionCheckpoint saves it there), never half-way through an optimiser step.
    A second Ctrl-C stops at once."""

    def __init__(self) -> None:
        self.pressed, self._previous = False, None

    def _on_sigint(self, signum, frame) -> None:
        if self.pressed:
            raise KeyboardInterrupt
        self.pressed = True
        os.kill(os.getpid(), signal.SIGTERM)  # Lightning's own handler: stop after this step

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._on_sigint)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


class EpochLog(pl.Callback):
    """A log line at the end of each epoch: its metrics, what it took and about how long the training
    has left, so a run without a progress bar (a log file, a batch job) is never silent for an epoch.
    A training resumed where an epoch's batches were done but its end was not ends that epoch with no
    batch of its own to time: its line gives the metrics alone."""

    def __init__(self) -> None:
        self.started, self.first_batch = None, 0

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.started = time.monotonic()
        self.first_batch = trainer.fit_loop.epoch_loop.batch_progress.total.ready

    @rank_zero_only
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        metrics = "; ".join(
            f"{name} {float(value):.4f}"
            for name, value in sorted(trainer.callback_metrics.items())
            if name.startswith(("train_", "val_")) and not name.endswith(("_step", "_epoch"))
        )
        epochs, steps = trainer.max_epochs or -1, trainer.max_steps or -1
        said = f"epoch {trainer.current_epoch + 1}{f' of {epochs}' if epochs > 0 else ''} done"
        said += f" ({metrics})" if metrics else ""
        batches = trainer.fit_loop.epoch_loop.batch_progress.total.ready - self.first_batch
        if self.started is not None and batches > 0:
            seconds = time.monotonic() - self.started
            left = [(epochs - trainer.current_epoch - 1) * trainer.num_training_batches] if epochs > 0 else []
            left += [steps - trainer.global_step] if steps > 0 else []
            said += f" in {duration(seconds)}"
            said += f", about {duration(seconds / batches * min(left))} left" if left else ""
        log.info(said)
        self.started = None


class TrainingParts(pl.Callback):
    """Which machine ran which epochs of a training, and for how long. A training stopped and resumed
    (another day, another machine) is timed as the sum of its parts; this says what each part was.
    Carried in last.ckpt like the Timer. A checkpoint from before this callback starts the list with
    a part whose machine and time are unknown (None)."""

    def __init__(self) -> None:
        self.parts: list[dict] = []
        self._started: float | None = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        first = trainer.current_epoch + 1  # 1-based: the epoch this part starts in
        part_way = trainer.fit_loop.epoch_loop.batch_progress.current.completed > 0
        if first > 1 and not self.parts:  # resumed from a checkpoint that kept no parts
            last = first if part_way else first - 1
            self.parts.append({"machine": None, "first_epoch": 1, "last_epoch": last, "seconds": None})
        self.parts.append({"machine": describe(), "first_epoch": first, "last_epoch": first, "seconds": 0.0})
        self._started = time.monotonic()

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.parts[-1]["last_epoch"] = trainer.current_epoch + 1  # once an epoch, not once a step

    def _update(self) -> None:
        if self._started is not None:
            self.parts[-1]["seconds"] = round(time.monotonic() - self._started, 1)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._update()

    def state_dict(self) -> dict:  # what a checkpoint keeps, called as it is saved
        self._update()
        return {"parts": [dict(part) for part in self.parts]}

    def load_state_dict(self, state_dict: dict) -> None:
        self.parts = [dict(part) for part in state_dict["parts"]]


class CheckpointOnStop(OnExceptionCheckpoint):
    """OnExceptionCheckpoint for a stop between steps only (SIGTERM, a first Ctrl-C): any other
    exception may strike inside a step, and the last whole epoch's checkpoint is kept instead."""

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException):
        if isinstance(exception, SIGTERMException):
            super().on_exception(trainer, pl_module, exception)


def make_trainer(
    recipe: Recipe, hardware: Hardware, log_dir: Path, work_dir: Path, **overrides
) -> pl.Trainer:
    """The Trainer of a real run (logging, checkpoints); `make bench` passes max_steps etc."""
    kwargs = dict(
        max_epochs=recipe.epochs,
        # train.epoch_images: an epoch of that many images, whole batches (None: the whole split)
        limit_train_batches=math.ceil(recipe.epoch_images / recipe.batch_size)
        if recipe.epoch_images
        else None,
        accelerator=hardware.accelerator,
        strategy=hardware.strategy,
        devices=hardware.devices,
        num_nodes=hardware.num_nodes,
        precision=resolve_precision(hardware.precision, hardware.accelerator),
        deterministic=recipe.deterministic,
        logger=TensorBoardLogger(save_dir=str(log_dir), name="tb", version="train"),
        callbacks=[
            # The latest epoch as work/last.ckpt, overwritten each epoch (Lightning writes it
            # through an fsspec transaction: a temp file renamed into place, never half a file).
            ModelCheckpoint(dirpath=work_dir, filename="last", save_top_k=1, enable_version_counter=False),
            # Stopped part-way (Ctrl-C, SIGTERM: Lightning ends the step in flight and raises), the
            # same file at the step where it stopped: the datamodule's state resumes the epoch there.
            CheckpointOnStop(dirpath=work_dir, filename="last"),
            StopOnCtrlC(),
            LearningRateMonitor(logging_interval="epoch"),
            Timer(),  # training time, carried across resumes in last.ckpt
            TrainingParts(),  # which machine ran which epochs, carried the same way
            EpochLog(),
            # tqdm's bar, whatever else is installed (Lightning picks rich's where rich is there)
            *([TQDMProgressBar()] if overrides.get("enable_progress_bar", hardware.progress_bar) else []),
        ],
        enable_progress_bar=hardware.progress_bar,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    kwargs["callbacks"] += overrides.pop("extra_callbacks", [])
    return pl.Trainer(**{**kwargs, **overrides})


def readable_checkpoint(path: Path) -> dict | None:
    """An interrupted run's last.ckpt, if it reads; a damaged one is logged, moved aside, and the
    training starts over (never resumed from a wrong file)."""
    if not path.is_file():
        return None
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(ckpt, dict) or "epoch" not in ckpt or "state_dict" not in ckpt:
            raise ValueError("not a Lightning checkpoint")
        return ckpt
    except Exception as err:
        if rank_zero_only.rank > 0:  # rank 0 of a DDP training moves it aside; its workers follow it
            return None
        aside = path.with_name(f"{path.name}.damaged")
        log.warning(
            "checkpoint %s is damaged (%s): moved to %s, training from the start",
            path,
            type(err).__name__,
            aside.name,
        )
        os.replace(path, aside)
        return None
