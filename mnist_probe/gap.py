"""Why validation accuracy exceeds training accuracy (the study's motivation asks, and never answers).

The training accuracy a progress bar shows is a running mean over the epoch, of a network in train
mode (dropout on, BatchNorm on batch statistics), on augmented images; validation accuracy is the
network at the epoch's end, in eval mode, on clean images it never trained on. At each epoch end
GapProbe measures, on a fixed subset of training images, the steps between the two:

    running  the running mean the progress bar shows (train_acc)
    train    the end-of-epoch network, train mode, augmented images
    eval     the same network, eval mode, the same augmented images
    clean    eval mode, the clean images
    val      validation accuracy

and splits the gap val - running into lag (train - running: the weights improved during the epoch),
dropout (eval - train: dropout and BatchNorm in train mode), augmentation (clean - eval) and
generalisation (val - clean); the four add up to the gap.
"""

from __future__ import annotations

import copy

import numpy as np
import pytorch_lightning as pl
import torch

from mnist_probe.data import to_float
from mnist_probe.intervals import bootstrap_mean
from mnist_probe.outputs import device_of
from mnist_probe.rows import GapRow, from_json, to_json


def split_gap(running: float, train: float, eval_: float, clean: float, val: float) -> dict[str, float]:
    """The gap val - running and its four parts (they sum to it exactly)."""
    return {
        "gap": val - running,
        "lag": train - running,
        "dropout": eval_ - train,
        "augmentation": clean - eval_,
        "generalisation": val - clean,
    }


@torch.no_grad()
def _correct(
    model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, batch: int = 500
) -> np.ndarray:
    logits = torch.cat([model(images[i : i + batch]) for i in range(0, len(labels), batch)])
    return (logits.argmax(1) == labels).cpu().numpy()


def gap_correct(
    model: torch.nn.Module,
    augment: torch.nn.Module,
    images_u8: torch.Tensor,
    labels: torch.Tensor,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Which images the model gets right, in train mode on augmented images, eval mode on the same
    augmented images, and eval mode on the clean images. The train-mode pass runs on a copy (its
    BatchNorm statistics are not updated) and the augmentation and dropout draw from a forked,
    seeded generator, so measuring changes neither the weights nor the training's random stream."""
    device = device_of(model)
    x, y = to_float(images_u8.to(device)), labels.to(device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        augmented = augment(x)
        twin = copy.deepcopy(model).train()
        train = _correct(twin, augmented, y)
    was_training = model.training
    model.eval()
    out = {"train": train, "eval": _correct(model, augmented, y), "clean": _correct(model, x, y)}
    model.train(was_training)
    return out


def gap_accuracies(
    model: torch.nn.Module,
    augment: torch.nn.Module,
    images_u8: torch.Tensor,
    labels: torch.Tensor,
    seed: int = 0,
) -> dict[str, float]:
    """The accuracies of gap_correct: train mode on augmented images, eval mode on them, on clean ones."""
    return {k: float(v.mean()) for k, v in gap_correct(model, augment, images_u8, labels, seed).items()}


def part_intervals(
    correct: dict[str, np.ndarray], running: float, val: float, seed: int = 0
) -> dict[str, list[float]]:
    """95% bootstrap intervals of the gap's four parts over the measured training images: dropout and
    augmentation are paired differences on the same images; lag and generalisation set the running
    mean and val_acc against them as fixed numbers (their own spread is not counted)."""
    train, eval_, clean = (correct[k].astype(float) for k in ("train", "eval", "clean"))
    lag = bootstrap_mean(train, seed=seed)
    general = bootstrap_mean(clean, seed=seed)
    return {
        "lag": [lag[0] - running, lag[1] - running],
        "dropout": list(bootstrap_mean(eval_ - train, seed=seed)),
        "augmentation": list(bootstrap_mean(clean - eval_, seed=seed)),
        "generalisation": [val - general[1], val - general[0]],
    }


class GapProbe(pl.Callback):
    """At each training epoch's end: the five accuracies above on a fixed subset of training images,
    and the gap's four parts, logged as gap/* (TensorBoard) and kept in `rows`, one per epoch."""

    def __init__(self, images_u8: torch.Tensor, labels: torch.Tensor, augment: torch.nn.Module) -> None:
        self.images, self.labels, self.augment = images_u8, labels, augment
        self.rows: list[GapRow] = []

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if "val_acc" not in trainer.callback_metrics or not pl_module.epoch_seen:
            return
        running, val = pl_module.running_train_acc, float(trainer.callback_metrics["val_acc"])
        epoch = trainer.current_epoch
        correct = gap_correct(pl_module.model, self.augment, self.images, self.labels, seed=epoch)
        acc = {k: float(v.mean()) for k, v in correct.items()}
        parts = split_gap(running, acc["train"], acc["eval"], acc["clean"], val)
        row = GapRow(
            epoch=epoch,
            running=running,
            **acc,
            val=val,
            **parts,
            ci=part_intervals(correct, running, val, seed=epoch),
        )
        self.rows.append(row)
        logged = {k: v for k, v in to_json(row).items() if k not in ("epoch", "ci")}
        pl_module.log_dict({f"gap/{k}": float(v) for k, v in logged.items()}, sync_dist=True)

    def state_dict(self) -> dict:  # the epochs before a resume stay in the table
        return {"rows": [to_json(r) for r in self.rows]}

    def load_state_dict(self, state_dict: dict) -> None:
        self.rows = [from_json(GapRow, r) for r in state_dict.get("rows", [])]
