"""Where the network looks, and whether that moves with the digit: attributions with Captum
(saliency, integrated gradients, Grad-CAM on a conv layer) and their consistency under translation.

A network whose attribution is equivariant gives a shifted digit the shifted attribution of the
original: corr(attribution(shift(x)), shift(attribution(x))) = 1. How far below 1 it falls, per
shift and method, is "position sensitive" as a number.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mnist_probe.data import to_float
from mnist_probe.errors import UserError
from mnist_probe.model_layers import conv_layers
from mnist_probe.names import METHODS
from mnist_probe.translation import translate


def attribute(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor | list[int],
    method: str,
    layer: str | None = None,
    batch_size: int = 100,
) -> torch.Tensor:
    """N×H×W attributions of the target class for each image (uint8 or float): |gradient| (saliency)
    and integrated gradients from a black image (32 steps) by Captum; Grad-CAM on `layer` (default:
    the last conv layer) upsampled to H×W, as Captum's LayerGradCam computes it (grad_cam). The model
    runs in eval mode."""
    from captum.attr import IntegratedGradients, Saliency  # 1 s import

    if method not in METHODS:
        raise UserError(f"attribution method {method!r} is not one of {', '.join(METHODS)}")
    model.eval()
    x, targets = to_float(images), torch.as_tensor(targets)
    if method == "grad_cam":
        module = dict(model.named_modules())[layer or _last_conv(model)]
        return torch.cat(
            [
                grad_cam(model, module, x[s : s + batch_size], targets[s : s + batch_size])
                for s in range(0, len(x), batch_size)
            ]
        )
    explainer = Saliency(model) if method == "saliency" else IntegratedGradients(model)
    out = []
    for start in range(0, len(x), batch_size):
        batch, target = x[start : start + batch_size].requires_grad_(), targets[start : start + batch_size]
        if method == "saliency":
            attr = explainer.attribute(batch, target=target, abs=True)
        else:
            attr = explainer.attribute(batch, baselines=torch.zeros_like(batch), target=target, n_steps=32)
        out.append(attr.detach().sum(1))  # channels summed: one map per image
    return torch.cat(out)


def grad_cam(model: nn.Module, module: nn.Module, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Grad-CAM (Selvaraju et al. 2017) of one batch, N×H×W: the module's output A weighted by the
    mean gradient of each target's score over each channel, summed over the channels, ReLU'd and
    upsampled bilinearly to the input's size. One forward pass and one backward pass that stops at A
    (autograd.grad of A alone): no gradient of the input or the weights is formed."""
    kept: list[torch.Tensor] = []
    handle = module.register_forward_hook(lambda _m, _i, output: kept.append(output))
    try:
        with torch.enable_grad():
            scores = model(x)
            chosen = scores.gather(1, targets[:, None].to(scores.device)).sum()
            (grad,) = torch.autograd.grad(chosen, kept[-1])
    finally:
        handle.remove()
    cam = torch.relu((grad.mean((2, 3), keepdim=True) * kept[-1]).sum(1, keepdim=True))
    return F.interpolate(cam.detach(), size=tuple(x.shape[-2:]), mode="bilinear", align_corners=False)[:, 0]


def _last_conv(model: nn.Module) -> str:
    convs = conv_layers(model)
    if not convs:
        raise UserError(f"Grad-CAM needs a conv layer; {type(model).__name__} has no nn.Conv2d")
    return convs[-1]


def correlation(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """Pearson correlation of each pair of maps (N×H×W each), pixel by pixel; 1 where both are
    constant and equal, 0 where only one is."""
    a, b = a.flatten(1).double(), b.flatten(1).double()
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    den = a.norm(dim=1) * b.norm(dim=1)
    same = (a.norm(dim=1) == 0) & (b.norm(dim=1) == 0)
    r = torch.where(den > 0, (a * b).sum(1) / den.clamp_min(1e-300), torch.zeros_like(den))
    return torch.where(same, torch.ones_like(r), r).numpy()


def shift_consistency(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor | list[int],
    shifts: list[tuple[int, int]],
    method: str,
    layer: str | None = None,
    per_image: bool = False,
) -> list[float] | np.ndarray:
    """For each (dx, dy): the mean correlation between the attribution of the shifted images and the
    shifted attribution of the originals (1: the attribution moves with the digit); with per_image,
    each image's correlation (shifts × N)."""
    x = to_float(images)
    base = attribute(model, x, targets, method, layer)
    out = []
    for dx, dy in shifts:
        moved = attribute(model, translate(x, dx, dy), targets, method, layer)
        expected = translate(base.unsqueeze(1), dx, dy).squeeze(1)
        out.append(correlation(moved, expected))
    return np.stack(out) if per_image else [float(r.mean()) for r in out]
