"""The Lightning module every CNN trains in (LitCNN), and the losses it trains with (LOSS_FUNCTIONS): the
study's Keras 2 loss among them."""

from __future__ import annotations

import functools
from collections.abc import Callable

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from mnist_probe.errors import UserError
from mnist_probe.specs import KERAS_EPSILON


def clipped_cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, epsilon: float = KERAS_EPSILON
) -> torch.Tensor:
    """The loss the study trained with: Keras 2's categorical_crossentropy on a softmax output clips
    the probabilities to [epsilon, 1 - epsilon] before the log. An example whose true class has
    p > 1 - epsilon then adds no gradient at all, where cross-entropy on logits never stops pushing
    its logits apart; so does one whose true class has p < epsilon, a sure mistake the training can
    no longer correct. (Keras 3 on TensorFlow reads the logits behind a softmax and does not clip:
    it trains like PyTorch.)"""
    p = logits.softmax(1).clamp(epsilon, 1 - epsilon)
    return -p.gather(1, labels[:, None]).log().mean()


# train.loss (mnist_probe.specs.LOSSES names them): label_smoothing is cross-entropy against targets
# of 0.9 + 0.01 (Szegedy et al., 2016), a lever for how fast the CNN reaches 99.3% and how sure it ends up.
LOSS_FUNCTIONS = {
    "cross_entropy": F.cross_entropy,
    "clipped": clipped_cross_entropy,
    "label_smoothing": functools.partial(F.cross_entropy, label_smoothing=0.1),
}


class LitCNN(pl.LightningModule):
    """A loss on logits (LOSS_FUNCTIONS), accuracy per split; optimiser and scheduler from Hydra partials."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., object] | None = None,
        scheduler_monitor: str | None = "val_acc",
        scheduler_interval: str = "epoch",
        loss: str = "cross_entropy",
    ) -> None:
        super().__init__()
        self.model = model
        self.loss = LOSS_FUNCTIONS[loss]
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.scheduler_monitor, self.scheduler_interval = scheduler_monitor, scheduler_interval
        self.epoch_hits, self.epoch_seen = 0, 0  # this epoch's training images right, and seen so far

    @property
    def running_train_acc(self) -> float:
        """The epoch's running training accuracy so far: what the progress bar's train_acc shows."""
        return float(self.epoch_hits) / max(self.epoch_seen, 1)

    def on_train_epoch_start(self) -> None:
        self.epoch_hits, self.epoch_seen = 0, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def _step(self, batch, split: str) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = self.loss(logits, y)
        hits = (logits.argmax(1) == y).sum()
        acc = hits.float() / len(y)
        on_step = split == "train"
        if on_step:
            # a tensor sum: no device sync per step
            self.epoch_hits, self.epoch_seen = self.epoch_hits + hits.detach(), self.epoch_seen + len(y)
        # Under DDP, logged values are averaged over the processes (sync_dist), so that every rank's
        # plateau scheduler sees the same val_acc; a no-op in one process.
        self.log(f"{split}_loss", loss, on_step=on_step, on_epoch=True, batch_size=len(y), sync_dist=True)
        self.log(
            f"{split}_acc",
            acc,
            on_step=False,
            on_epoch=True,
            prog_bar=True,
            batch_size=len(y),
            sync_dist=True,
        )
        return loss

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        self._step(batch, "test")

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        kwargs = {}
        if self.scheduler_interval == "step":
            # One-cycle style schedules need the run's length, known only once the trainer exists.
            kwargs["total_steps"] = int(self.trainer.estimated_stepping_batches)
        try:
            scheduler = {"scheduler": self.scheduler_factory(optimizer, **kwargs)}
        except ZeroDivisionError:  # OneCycleLR with a warm-up shorter than one step
            raise UserError(
                f"{kwargs.get('total_steps')} training steps are too few for this learning-rate "
                "schedule: train on more images or epochs, or with a smaller batch"
            ) from None
        scheduler["interval"] = self.scheduler_interval
        if self.scheduler_monitor:
            scheduler["monitor"] = self.scheduler_monitor
        return {"optimizer": optimizer, "lr_scheduler": scheduler}
