"""A model scored on images: its logits in eval mode, in inference batches, its top-1 accuracy, and
how sure it is beyond accuracy (Confidence)."""

from __future__ import annotations

import math

import torch

from mnist_probe.data import to_float
from mnist_probe.outputs import device_of, top1_accuracy
from mnist_probe.rows import Confidence
from mnist_probe.specs import INFERENCE_BATCH, KERAS_EPSILON


@torch.no_grad()
def logits_of(model: torch.nn.Module, images: torch.Tensor, batch_size=INFERENCE_BATCH) -> torch.Tensor:
    """The model's logits (N×10, on the CPU; log-probabilities for a model that outputs
    probabilities: model.read_as_log_probabilities) for uint8 images, in eval mode."""
    device = device_of(model)
    was_training = model.training
    model.eval()
    logits = torch.cat([model(to_float(x.to(device))).cpu() for x in images.split(batch_size)])
    model.train(was_training)
    return logits


def accuracy(
    model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = INFERENCE_BATCH
) -> float:
    """Test accuracy of model on uint8 images (on the model's device), in eval mode."""
    return top1_accuracy(logits_of(model, images, batch_size), labels)


def confidence(logits: torch.Tensor, labels: torch.Tensor) -> Confidence:
    """How sure the CNN is, beyond accuracy: test cross-entropy, how much of it its errors carry,
    the largest logit (a CNN whose logits run into the thousands outputs probabilities of 0 or 1), and
    the errors sure enough to lie below the clipped loss's floor (P(true) < KERAS_EPSILON)."""
    loss = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
    wrong = logits.argmax(1) != labels
    return Confidence(
        cross_entropy=loss.mean().item(),
        errors=int(wrong.sum()),
        error_share_of_loss=(loss[wrong].sum() / loss.sum()).item() if loss.sum() > 0 else 0.0,
        mean_loss_on_errors=loss[wrong].mean().item() if wrong.any() else 0.0,
        max_abs_logit=logits.abs().max().item(),
        errors_below_epsilon=int((loss > -math.log(KERAS_EPSILON)).sum()),
    )
