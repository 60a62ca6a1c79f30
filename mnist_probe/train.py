"""Fit the CNN with Lightning, or load it from the cache when this config was trained before."""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import shutil
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint, Timer
from pytorch_lightning.loggers import TensorBoardLogger

from mnist_probe import UserError
from mnist_probe.cache import atomic_write, config_key, locked, write_json
from mnist_probe.data import MNISTDataModule, load_mnist, to_float
from mnist_probe.model import KerasCNN, LitCNN

log = logging.getLogger(__name__)

# Data keys that change where or how files are read, not which images train the model.
_DATA_KEYS_NOT_IN_KEY = {"root", "download", "verify", "eval_batch_size", "test_subset"}
# Train keys that change how the run looks, not what it learns.
_TRAIN_KEYS_NOT_IN_KEY = {"progress_bar", "channels_last"}


def checkpoint_path(cfg: DictConfig) -> Path | None:
    """The user's checkpoint (cfg.checkpoint) if one is set; it must exist."""
    if not cfg.get("checkpoint"):
        return None
    path = Path(cfg.checkpoint).expanduser()
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist; fix the path or drop checkpoint= to train one")
    return path


def cnn_key(cfg: DictConfig) -> str:
    """Hash of everything that decides the trained weights: data split, model, recipe, seed
    (or, with checkpoint=PATH, of the checkpoint file's bytes)."""
    path = checkpoint_path(cfg)
    if path is not None:
        return "file-" + hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    data = {k: v for k, v in OmegaConf.to_container(cfg.data, resolve=True).items()
            if k not in _DATA_KEYS_NOT_IN_KEY}  # fmt: skip
    train = {k: v for k, v in OmegaConf.to_container(cfg.train, resolve=True).items()
             if k not in _TRAIN_KEYS_NOT_IN_KEY}  # fmt: skip
    return config_key(data, cfg.model, train, cfg.seed)


def split_key(cfg: DictConfig) -> str:
    """Hash of what decides the training split alone (for models fitted on raw pixels)."""
    return config_key({k: cfg.data[k] for k in ("val_size", "split_seed", "train_subset")})


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux
        return ""


def cpu_has_fast_bf16() -> bool:
    """True where the CPU has AMX: measured here, AVX512-BF16 alone trains no faster than fp32."""
    return "amx_bf16" in _cpuinfo()


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), else what the platform module says."""
    lines = _cpuinfo().splitlines()
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return names[0] if names else platform.processor()


def resolve_precision(precision: str, accelerator: str) -> str:
    """'auto' -> bf16-mixed on a bf16 GPU or an AMX CPU, else 32-true; other values pass through."""
    if precision != "auto":
        return str(precision)
    on_gpu = accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    if on_gpu:
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "bf16-mixed" if cpu_has_fast_bf16() else "32-true"


def build_datamodule(cfg: DictConfig, batch_size: int | None = None) -> MNISTDataModule:
    """The DataModule for cfg.data, with the training recipe's batch size and augmentation."""
    augment = instantiate(cfg.train.augment) if "augment" in cfg.train else None
    return instantiate(
        cfg.data, _target_="mnist_probe.data.MNISTDataModule",
        batch_size=batch_size or cfg.train.batch_size, augment=augment,
    )  # fmt: skip


def split_tensors(cfg: DictConfig, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images and labels of 'train' or 'val' (the seeded split) or 'test' (all 10k)."""
    if split == "test":
        return load_mnist(cfg.data.root, "test", cfg.data.download)
    dm = build_datamodule(cfg)
    dm.setup()
    return dm.tensors[split]


def scored_test_set(cfg: DictConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The test images the CNN is scored on: all 10k, or the first data.test_subset of them."""
    images, labels = split_tensors(cfg, "test")
    n = cfg.data.get("test_subset") or len(labels)
    return images[:n], labels[:n]


def load_model(path: str | Path, model_cfg: DictConfig | None = None) -> KerasCNN:
    """Load a cached state dict into a fresh KerasCNN (weights only: no pickled code runs)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist; train first or fix the path")
    model = instantiate(model_cfg) if model_cfg is not None else KerasCNN()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise UserError(
            f"checkpoint {path} could not be read ({type(err).__name__}): it is truncated or not "
            "a mnist_probe checkpoint; delete it and train again"
        ) from None
    if isinstance(state, dict) and "state_dict" in state:  # a Lightning checkpoint
        state = {k.removeprefix("model."): v for k, v in state["state_dict"].items()}
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as err:
        first = str(err).strip().splitlines()[0]
        raise UserError(
            f"checkpoint {path} is for another architecture ({first}); "
            "point to a KerasCNN checkpoint or set model.* to match it"
        ) from None
    return model.eval()


def make_lit(cfg: DictConfig) -> LitCNN:
    """The LightningModule of cfg: a fresh KerasCNN with the recipe's optimiser and scheduler."""
    model = instantiate(cfg.model)
    if cfg.train.get("channels_last", False):
        # NHWC lets oneDNN pick faster conv kernels: measured ~1.3x per training step on this CPU.
        model = model.to(memory_format=torch.channels_last)
    sched = cfg.train.get("scheduler")
    return LitCNN(
        model,
        optimizer=instantiate(cfg.train.optimizer),
        scheduler=instantiate(sched.factory) if sched else None,
        scheduler_monitor=sched.monitor if sched else None,
        scheduler_interval=sched.interval if sched else "epoch",
    )


def make_trainer(cfg: DictConfig, out_dir: Path, work_dir: Path, **overrides) -> pl.Trainer:
    """The Trainer of a real run (logging, checkpoints); `make bench` passes max_steps etc."""
    kwargs = dict(
        max_epochs=cfg.train.epochs,
        accelerator=cfg.train.accelerator,
        devices=1,
        precision=resolve_precision(cfg.train.precision, cfg.train.accelerator),
        deterministic=cfg.train.deterministic,
        logger=TensorBoardLogger(save_dir=str(out_dir), name="tb", version="train"),
        callbacks=[
            # The latest epoch as work/last.ckpt, overwritten each epoch (Lightning writes it
            # through an fsspec transaction: a temp file renamed into place, never half a file).
            ModelCheckpoint(dirpath=work_dir, filename="last", save_top_k=1, enable_version_counter=False),
            LearningRateMonitor(logging_interval="epoch"),
            Timer(),  # training time, carried across resumes in last.ckpt
        ],
        enable_progress_bar=cfg.train.get("progress_bar", True),
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    kwargs["callbacks"] += overrides.pop("extra_callbacks", [])
    return pl.Trainer(**{**kwargs, **overrides})


def train_cnn(cfg: DictConfig, out_dir: Path, work_dir: Path) -> tuple[KerasCNN, dict]:
    """Train with the configured recipe; resume from work_dir/last.ckpt if a run was interrupted."""
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    dm = build_datamodule(cfg)
    lit = make_lit(cfg)
    model = lit.model
    trainer = make_trainer(cfg, out_dir, work_dir)
    precision = trainer.precision
    last = work_dir / "last.ckpt"
    done, untimed = 0, 0
    if last.is_file():
        ckpt = torch.load(last, map_location="cpu", weights_only=True)
        done = ckpt["epoch"] + 1
        # Lightning's Timer keeps its clock in the checkpoint, so the time of the epochs before
        # the interruption counts; a checkpoint written without a Timer leaves them untimed.
        untimed = 0 if any(k.startswith("Timer") for k in ckpt.get("callbacks", {})) else done
        log.info("resuming interrupted training from %s (%d of %d epochs done)", last, done, cfg.train.epochs)
    trainer.fit(lit, datamodule=dm, ckpt_path=str(last) if last.is_file() else None)
    timer = next(c for c in trainer.callbacks if isinstance(c, Timer))
    val_acc = float(trainer.callback_metrics.get("val_acc", float("nan")))  # test() resets these
    test = trainer.test(lit, datamodule=dm, verbose=False)[0]
    meta = {
        "test_acc": float(test["test_acc"]),
        "test_loss": float(test["test_loss"]),
        "val_acc": val_acc,
        "epochs": int(trainer.current_epoch),
        "train_seconds": round(timer.time_elapsed("train"), 1),  # over every resumed part
        "resumed_after_epochs": done,  # 0: trained in one go
        "untimed_epochs": untimed,  # epochs whose time train_seconds lacks (see above)
        "precision": precision,
        "device": str(trainer.strategy.root_device),
        "test_images": len(dm.tensors["test"][1]),
    }
    return model.cpu().eval(), meta


@torch.no_grad()
def test_logits(model: KerasCNN, images: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """The model's logits (N×10, on the CPU) for uint8 images, in eval mode."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    logits = torch.cat([model(to_float(x.to(device))).cpu() for x in images.split(batch_size)])
    model.train(was_training)
    return logits


def accuracy(model: KerasCNN, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000) -> float:
    """Test accuracy of model on uint8 images (on the model's device), in eval mode."""
    return (test_logits(model, images, batch_size).argmax(1) == labels).sum().item() / len(labels)


def confidence(logits: torch.Tensor, labels: torch.Tensor) -> dict:
    """How sure the CNN is, beyond accuracy: test cross-entropy, how much of it its errors carry,
    and the largest logit (a CNN whose logits run into the thousands outputs probabilities of 0 or 1)."""
    loss = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
    wrong = logits.argmax(1) != labels
    return {
        "cross_entropy": loss.mean().item(),
        "errors": int(wrong.sum()),
        "error_share_of_loss": (loss[wrong].sum() / loss.sum()).item() if loss.sum() > 0 else 0.0,
        "mean_loss_on_errors": loss[wrong].mean().item() if wrong.any() else 0.0,
        "max_abs_logit": logits.abs().max().item(),
    }


def from_checkpoint(cfg: DictConfig, path: Path) -> tuple[KerasCNN, dict]:
    """The user's checkpoint, checked and scored on the test set once (cached by content hash)."""
    model = load_model(path, cfg.model)
    key = cnn_key(cfg)
    meta_path = Path(cfg.paths.cache) / f"cnn-{key}" / "meta.json"
    with locked(meta_path.parent):
        if meta_path.is_file():
            return model, {**json.loads(meta_path.read_text()), "cached": True}
        images, labels = scored_test_set(cfg)
        meta = {"test_acc": accuracy(model, images, labels), "test_images": len(labels), "key": key,
                "checkpoint": str(path), "train_seconds": None}  # fmt: skip
        write_json(meta_path, meta)
        return model, {**meta, "cached": False}


def fit_or_load(cfg: DictConfig, out_dir: str | Path | None = None) -> tuple[KerasCNN, dict]:
    """The trained CNN for cfg: the user's checkpoint, or from the cache if present, else trained
    (once, under a lock)."""
    path = checkpoint_path(cfg)
    if path is not None:
        return from_checkpoint(cfg, path)
    if cfg.train.epochs < 1:
        raise UserError(f"train.epochs must be at least 1, got {cfg.train.epochs}")
    key = cnn_key(cfg)
    entry = Path(cfg.paths.cache) / f"cnn-{key}"
    weights, meta_path = entry / "model.pt", entry / "meta.json"
    with locked(entry):
        if meta_path.is_file():  # meta is written last, so its presence means the entry is whole
            meta = json.loads(meta_path.read_text())
            log.info("loaded cached CNN %s (test acc %.4f)", key, meta["test_acc"])
            return load_model(weights, cfg.model), {**meta, "cached": True}
        out = Path(out_dir) if out_dir else entry / "train_logs"
        log.info("training CNN %s (%d epochs); cache entry %s", key, cfg.train.epochs, entry)
        model, meta = train_cnn(cfg, out, entry / "work")
        meta = {**meta, "key": key, "checkpoint": str(weights)}
        atomic_write(weights, lambda tmp: torch.save(model.state_dict(), tmp))
        write_json(meta_path, meta)
        shutil.rmtree(entry / "work", ignore_errors=True)
        return model, {**meta, "cached": False}
