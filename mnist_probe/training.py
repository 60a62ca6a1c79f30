"""Fit the CNN with Lightning, or load it from the cache when this recipe was trained before.

What to train comes as the specs of mnist_probe.specs (DataSpec, ModelSpec, Recipe, Hardware): the
optimiser, scheduler, augmentation and model are `_target_` specs that Hydra's instantiate builds,
so a notebook builds the same objects the config composes.
"""

from __future__ import annotations

import logging
import shutil
import signal
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import (
    Timer,
)
from pytorch_lightning.trainer.states import TrainerStatus
from pytorch_lightning.utilities.exceptions import SIGTERMException
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from mnist_probe.cache import config_key, get_or_compute, sha256
from mnist_probe.data import split_tensors
from mnist_probe.errors import Stopped
from mnist_probe.gap import GapProbe
from mnist_probe.layer_names import resolve_layers
from mnist_probe.machine import describe
from mnist_probe.model import (
    build_model,
    load_model,
    model_content,
    open_model,
    output_kind,
    outputs_of,
    top1_accuracy,
)
from mnist_probe.model_layers import code_layer
from mnist_probe.model_spec import ModelSpec
from mnist_probe.rows import GapRow, from_json, to_json
from mnist_probe.scoring import logits_of
from mnist_probe.specs import DataSpec, Hardware, Recipe, is_onnx, plain
from mnist_probe.trainer import (
    StopOnCtrlC,
    TrainingParts,
    make_datamodule,
    make_lit,
    make_trainer,
    readable_checkpoint,
    resolve_precision,
)

log = logging.getLogger(__name__)


@dataclass
class OpenedModel:
    """A model the tool opened up, trained here or loaded (any class, a Keras or ONNX file): its cache
    key (every input that decided its weights and its test score), its metadata (test_acc,
    train_seconds, ..., cached) and the layer whose output is its code vector (default: the model's,
    mnist_probe.model_layers.code_layer), the one every interpreter and the shift stage read."""

    model: torch.nn.Module
    key: str
    meta: dict[str, Any]
    code_layer: str | None = None

    def __post_init__(self) -> None:
        chosen = self.code_layer
        self.code_layer = resolve_layers(self.model, chosen)[0] if chosen else code_layer(self.model)

    @property
    def test_acc(self) -> float:
        return self.meta["test_acc"]

    @property
    def gap(self) -> list[GapRow] | None:
        """The train/val gap per epoch (mnist_probe.gap); None: not trained here, or no gap_images."""
        return [from_json(GapRow, row) for row in self.meta["gap"]] if self.meta.get("gap") else None


def train_cnn(
    data: DataSpec,
    recipe: Recipe,
    model: ModelSpec,
    hardware: Hardware,
    seed: int,
    log_dir: Path,
    work_dir: Path,
) -> tuple[torch.nn.Module, dict]:
    """Train with the recipe; resume from work_dir/last.ckpt if a run was interrupted."""
    pl.seed_everything(seed, workers=True, verbose=False)
    dm = make_datamodule(data, recipe)
    lit = make_lit(recipe, model, data)
    gap = None
    if recipe.gap_images:  # a fixed subset: the first training images of the split
        images, labels = split_tensors(data, "train")
        gap = GapProbe(images[: recipe.gap_images], labels[: recipe.gap_images], dm.augment)
    trainer = make_trainer(recipe, hardware, log_dir, work_dir, extra_callbacks=[gap] if gap else [])
    last = work_dir / "last.ckpt"
    done, untimed = 0, 0
    ckpt = readable_checkpoint(last)
    if ckpt is not None:
        part = ckpt.get(type(dm).__qualname__, {}).get("batches_done", 0)  # stopped part-way: its steps
        done = ckpt["epoch"] + (0 if part else 1)
        # Lightning's Timer keeps its clock in the checkpoint, so the time of the epochs before
        # the interruption counts; a checkpoint written without a Timer leaves them untimed.
        untimed = 0 if any(k.startswith("Timer") for k in ckpt.get("callbacks", {})) else done
        log.info(
            "resuming interrupted training from %s (%d of %d epochs done%s)",
            last,
            done,
            recipe.epochs,
            f", and {part} steps of the next" if part else "",
        )
    try:
        with warnings.catch_warnings():  # the datamodule resumes part-way itself (ImageDataModule.state_dict)
            warnings.filterwarnings("ignore", message=".*checkpoint that ended before the epoch ended")
            trainer.fit(lit, datamodule=dm, ckpt_path=str(last) if ckpt is not None else None)
    except SystemExit as stop:  # Lightning's end of a training that a signal stopped
        if trainer.state.status != TrainerStatus.INTERRUPTED:
            raise
        if not isinstance(stop, SIGTERMException):  # a second Ctrl-C: stopped at once, no checkpoint
            raise KeyboardInterrupt from None
        ctrl_c = next(c for c in trainer.callbacks if isinstance(c, StopOnCtrlC)).pressed
        steps = trainer.fit_loop.epoch_loop.batch_progress.current.completed
        where = f"at step {steps} of {trainer.num_training_batches} in epoch {trainer.current_epoch}"
        raise Stopped(signal.SIGINT if ctrl_c else signal.SIGTERM, last, where) from None
    timer = next(c for c in trainer.callbacks if isinstance(c, Timer))
    net = lit.model.cpu().eval()
    # Scored here, in this process, rather than by trainer.test: under DDP every rank would score a
    # shard; this way rank 0 scores all of the test set the same way whatever trained the CNN.
    dm.setup("test")  # a no-op unless the training ran in spawned processes (ddp_spawn)
    images, labels = dm.tensors["test"]
    logits = logits_of(net, images)
    meta = {
        "test_acc": top1_accuracy(logits, labels),
        "test_loss": torch.nn.functional.cross_entropy(logits, labels).item(),
        "val_acc": float(trainer.callback_metrics.get("val_acc", float("nan"))),
        "epochs": int(trainer.current_epoch),
        "train_seconds": round(timer.time_elapsed("train"), 1),  # over every resumed part
        "resumed_after_epochs": done,  # 0: trained in one go
        "untimed_epochs": untimed,  # epochs whose time train_seconds lacks (see above)
        "precision": trainer.precision,
        "device": str(trainer.strategy.root_device),
        "trained_on": describe(),  # a cached CNN may come from another machine: the page says which
        "parts": trained_parts(trainer, timer, timed_before=not untimed),
        "strategy": type(trainer.strategy).__name__,
        "world_size": trainer.world_size,
        "test_images": len(labels),
        "gap": [to_json(r) for r in gap.rows] if gap else None,
    }
    return net, meta


def trained_parts(trainer: pl.Trainer, timer: Timer, timed_before: bool) -> list[dict]:
    """Each part of the training (one per run that resumed it): machine, epochs and seconds. A part
    from before parts were kept gets, where the Timer rode along (timed_before), the seconds it
    counted that the others did not."""
    parts = next(c for c in trainer.callbacks if isinstance(c, TrainingParts)).parts
    if timed_before and parts and parts[0]["seconds"] is None:  # only a first part can lack them
        known = sum(p["seconds"] for p in parts[1:])
        parts[0]["seconds"] = round(max(timer.time_elapsed("train") - known, 0.0), 1)
    return parts


def scored_logits(cnn: OpenedModel, data: DataSpec, cache_dir: str | Path) -> torch.Tensor:
    """The CNN's logits on the scored test images, computed once per CNN and images (the train stage's
    confidence and calibration, and the interpreters' paired intervals, read the same ones)."""
    return _cached_logits(cnn.model, cnn.key, data, cache_dir)


def _cached_logits(net: torch.nn.Module, key: str, data: DataSpec, cache_dir: str | Path) -> torch.Tensor:
    """scored_logits of the network keyed `key`: also what scores a checkpoint, so one pass serves both."""

    def compute(staging: Path) -> dict:
        images, _ = split_tensors(data, "scored")
        torch.save(logits_of(net, images), staging / "logits.pt")
        return {"images": len(images)}

    def load(entry: Path, meta: dict) -> torch.Tensor:
        return torch.load(entry / "logits.pt", weights_only=True)

    return get_or_compute(Path(cache_dir) / f"logits-{config_key(key, data.content())}", compute, load)[0]


def cnn_key(
    data: DataSpec,
    recipe: Recipe,
    seed: int,
    model: ModelSpec | None = None,
    hardware: Hardware | None = None,
) -> str:
    """The cache key of a trained CNN: every input that decides its weights and its test score.
    Of the hardware, that is the precision (auto as what it resolves to on this machine: bf16 trains
    other weights), the accelerator, and how many processes shared each step, when more than one;
    not how the run looks or which strategy ran it."""
    hardware = hardware or Hardware()
    content = {k: v for k, v in plain(recipe).items() if k not in ("loss", "gap_images", "epoch_images")}
    content |= {"loss": recipe.loss} if recipe.loss != "cross_entropy" else {}
    # null (the whole split) leaves the key as it was before the field existed: cached CNNs keep theirs
    content |= {"epoch_images": recipe.epoch_images} if recipe.epoch_images is not None else {}
    content |= {
        "accelerator": hardware.accelerator,
        "precision": resolve_precision(hardware.precision, hardware.accelerator),
    }
    content |= {"world_size": hardware.world_size} if hardware.world_size > 1 else {}
    network = model_content(model or ModelSpec(), data.shape, data.num_classes)
    return config_key(data.content(), network, content, seed)


def _load(net: torch.nn.Module):
    return lambda entry, meta: load_model(entry / "model.pt", net)


def from_checkpoint(
    path: str | Path, data: DataSpec, cache_dir: str | Path, model: ModelSpec | None = None
) -> OpenedModel:
    """A user's checkpoint (a state dict or Lightning .ckpt of model's class, a Keras file of the
    study's CNN, or an ONNX file, which carries its own architecture), checked and scored on the
    scored test set once; keyed by the file's content and the test images it was scored on."""
    path = Path(path).expanduser()
    model = model or ModelSpec()
    net = open_model(model, path, data.shape, data.num_classes)  # missing, truncated, does not fit: refused
    # an ONNX graph is its own architecture: what it reads and which output it scores by still count
    onnx = {"onnx": model.content()} if model.content() else "onnx"
    architecture = onnx if is_onnx(path) else model_content(model, data.shape, data.num_classes)
    key = "file-" + config_key(sha256(path), architecture, data.content())
    images, labels = split_tensors(data, "scored")
    output_kind(logits_of(net, images[:500]), f"checkpoint {path}", trained=True)  # a sigmoid: refused

    def compute(staging: Path) -> dict:
        return {
            "test_acc": top1_accuracy(_cached_logits(net, key, data, cache_dir), labels),
            "test_images": len(labels),
            "checkpoint": str(path),
            "train_seconds": None,
        }

    _, meta, cached = get_or_compute(Path(cache_dir) / f"cnn-{key}", compute, lambda entry, meta: None)
    return OpenedModel(
        net,
        key,
        {**meta, "key": key, "cached": cached, "outputs": outputs_of(net), "data_files": data.files()},
    )


def ddp_worker(
    entry: Path, data: DataSpec, recipe: Recipe, model: ModelSpec, hardware: Hardware, seed: int
) -> NoReturn:
    """A DDP process other than rank 0 (started by Lightning's ddp launcher, or by srun on a cluster):
    it trains beside rank 0, in rank 0's staging dir, writing nothing (Lightning checkpoints and logs
    from rank 0 only), then leaves. Scoring, the cache entry and every later stage are rank 0's."""
    rank = rank_zero_only.rank
    if not (entry / "meta.json").is_file():  # rank 0 found no cached CNN: it trains, with us
        log.info("rank %d: training beside rank 0 (%s)", rank, entry.name)
        staging = entry.with_name(entry.name + ".partial")
        train_cnn(data, recipe, model, hardware, seed, staging / "train_logs", staging / "work")
    log.info("rank %d: done; rank 0 goes on alone", rank)
    raise SystemExit(0)


def fit_or_load(
    data: DataSpec,
    recipe: Recipe,
    seed: int,
    cache_dir: str | Path,
    log_dir: str | Path | None = None,
    model: ModelSpec | None = None,
    hardware: Hardware | None = None,
) -> OpenedModel:
    """The CNN that `recipe` trains on `data` with `seed`: from the cache (meta's checkpoint: where the
    entry is now) if trained before, else now (once, under a lock; resumed if an earlier run was killed).
    Its training curves go to log_dir/tb/train (default: the cache entry's train_logs/)."""
    model, hardware = model or ModelSpec(), hardware or Hardware()
    net = build_model(model, data.shape, data.num_classes)  # no classifier of data's images: refused first
    key = cnn_key(data, recipe, seed, model, hardware)
    entry = Path(cache_dir) / f"cnn-{key}"
    if rank_zero_only.rank > 0:
        ddp_worker(entry, data, recipe, model, hardware, seed)

    def compute(staging: Path) -> dict:
        log.info("training CNN %s (%d epochs); cache entry %s", key, recipe.epochs, entry)
        logs = Path(log_dir) if log_dir else entry.with_name(entry.name + ".train_logs")
        trained, meta = train_cnn(data, recipe, model, hardware, seed, logs, staging / "work")
        torch.save(trained.state_dict(), staging / "model.pt")
        shutil.rmtree(staging / "work", ignore_errors=True)
        return {**meta, "key": key}

    net, meta, cached = get_or_compute(entry, compute, _load(net))
    if cached:
        log.info("loaded cached CNN %s (test acc %.4f)", key, meta["test_acc"])
    return OpenedModel(
        net,
        key,
        {
            **meta,
            "cached": cached,
            "outputs": outputs_of(net),
            "data_files": data.files(),
            "checkpoint": str(entry / "model.pt"),
        },
    )
