"""The model's input, declared once (specs.ModelInput): the data's images, floats in [0, 1], made into
what the network reads (grey replicated to its channels, resized to its size, normalised by its mean
and std) by a forward pre-hook on the model. Every module path stays as it was, and everything the
tool does to images (the zero-filled shift, occlusion, deletion and insertion, feature maps and
attribution pictures) stays in pixel space, with gradients taken through these steps."""

from __future__ import annotations

import functools

import torch
from torch import nn
from torchvision.transforms.v2.functional import normalize, resize

from mnist_probe.model_spec import ModelInput
from mnist_probe.outputs import outputs_of, scores_in


def to_model_input(x: torch.Tensor, spec: ModelInput) -> torch.Tensor:
    """Images N×C×H×W in pixel space as the network reads them: channels, then size (bilinear,
    antialiased, as torchvision's Resize), then (x - mean) / std."""
    if spec.channels is not None and x.shape[1] != spec.channels:
        x = x.expand(-1, spec.channels, -1, -1)
    if spec.size is not None:
        size = [spec.size, spec.size] if isinstance(spec.size, int) else list(spec.size)
        if list(x.shape[-2:]) != size:
            x = resize(x, size, antialias=True)
    if spec.mean is not None:
        channels = x.shape[1]
        mean = spec.mean * channels if len(spec.mean) == 1 else spec.mean
        std = spec.std * channels if len(spec.std) == 1 else spec.std
        x = normalize(x, mean, std)
    return x


def _pre_hook(module: nn.Module, inputs: tuple, spec: ModelInput) -> tuple:
    return (to_model_input(inputs[0], spec), *inputs[1:])


def declare_input(model: nn.Module, spec: ModelInput) -> nn.Module:
    """The model, in place, reading the data's images through spec (once: a model already declared
    keeps its first declaration); unchanged where spec declares nothing."""
    if spec.declared and not hasattr(model, "_mnist_probe_model_input"):
        model.register_forward_pre_hook(functools.partial(_pre_hook, spec=spec))
        model._mnist_probe_model_input = spec
    return model


def declared_input(model: nn.Module) -> ModelInput:
    """What declare_input gave the model (nothing declared: the data's images as they are)."""
    return getattr(model, "_mnist_probe_model_input", ModelInput())


def how_read(model: nn.Module) -> str:
    """How the tool reads a model, as log lines say it: what its outputs are (outputs_of), the part of
    a container that holds them, and the input it was declared to read."""
    words = outputs_of(model)
    if scores_in(model) is not None:
        words += f" (its output's {scores_in(model)!r})"
    spec = declared_input(model)
    steps = [f"grey replicated to {spec.channels} channels"] if spec.channels else []
    steps += (
        [
            f"resized to {spec.size}×{spec.size}"
            if isinstance(spec.size, int)
            else f"resized to {spec.size[0]}×{spec.size[1]}"
        ]
        if spec.size
        else []
    )
    steps += [f"normalised by mean {spec.mean} and std {spec.std}"] if spec.mean is not None else []
    return words + (f"; images {', '.join(steps)} as its first step" if steps else "")


def unsaid_normalisation(model: nn.Module) -> str:
    """The settings that would normalise the model's input as its timm pretrained_cfg says its weights
    read it, where this run feeds it un-normalised pixels ('' where it says nothing, or the run
    declares a mean and std)."""
    cfg = getattr(model, "pretrained_cfg", None)
    if not isinstance(cfg, dict) or not cfg.get("mean") or not cfg.get("std"):
        return ""
    if declared_input(model).mean is not None:
        return ""

    def listed(numbers) -> str:
        return "[" + ",".join(f"{n:g}" for n in numbers) + "]"

    return f"model.input.mean={listed(cfg['mean'])} model.input.std={listed(cfg['std'])}"
