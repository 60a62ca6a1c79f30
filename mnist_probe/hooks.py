"""Forward hooks on named layers: activations in memory for a few images, on disk for many."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from mnist_probe.data import to_float
from mnist_probe.errors import UserError
from mnist_probe.model import LAYER_NAMES, KerasCNN, layer_name

log = logging.getLogger(__name__)

# A layer 'PATH:input' records what the module at PATH receives rather than what it returns: the code
# vector of a model whose penultimate activation is a function in forward(), not a module.
INPUT = ":input"


def leaf_layers(model: nn.Module) -> list[str]:
    """Paths of the modules with no children, in named_modules() order: what 'all' records."""
    return [name for name, m in model.named_modules() if name and not list(m.children())]


def resolve_layers(model: nn.Module, layers: str | int | list | tuple = "all") -> list[str]:
    """Layer paths of model, in named_modules() order, from 'all' or one or a list of:
    a path from model.named_modules() (e.g. 'layer1.0.conv1' of a ResNet), 'PATH:input' for what
    that module receives, or, for a KerasCNN, an h index 1..12 or a Keras name (its paths)."""
    keras = isinstance(model, KerasCNN)
    if isinstance(layers, str) and layers == "all":
        return list(LAYER_NAMES) if keras else leaf_layers(model)
    if isinstance(layers, (str, int)):
        layers = [layers]
    paths = dict(model.named_modules())
    wanted = set()
    for layer in layers:
        tail = INPUT if isinstance(layer, str) and layer.endswith(INPUT) else ""
        path = layer.removesuffix(INPUT) if tail else layer
        if keras:
            wanted.add(layer_name(path) + tail)
        elif isinstance(path, str) and path and path in paths:
            wanted.add(path + tail)
        else:
            some = ", ".join(leaf_layers(model)[:6])
            raise UserError(f"unknown layer {layer!r} of {type(model).__name__}; "
                            f"use a path from named_modules() (+experiment=layers lists them), e.g. {some}")
    order = [n for name in paths for n in (name, name + INPUT)]
    return [name for name in order if name in wanted]


class ActivationRecorder:
    """Context manager that records the outputs of chosen layers while the model runs.

    `model` is any nn.Module and `layers` any of its paths in named_modules() (see
    resolve_layers; a KerasCNN also takes h indices and Keras names). In memory (default):
    `rec[name]` is the concatenation of every batch seen, detached, on the
    CPU. Streaming (`stream_dir` and `total` given): each layer's rows are appended to a
    `<name>.npy` of `total` rows (open it with np.load(mmap_mode='r')), so memory stays at one
    batch whatever the dataset size; the files appear under
    their final names only when recording finished cleanly. The model runs in eval mode (dropout
    passes its input through, as in Keras's predict) and every hook is removed on exit, even when
    the body raises.
    """

    def __init__(
        self,
        model: nn.Module,
        layers: str | int | list = "all",
        stream_dir: str | Path | None = None,
        total: int | None = None,
        float16: bool = False,
    ) -> None:
        if stream_dir is not None and not total:
            raise ValueError("streaming needs total, the number of rows each layer will get")
        self.model, self.names = model, resolve_layers(model, layers)
        self.stream_dir = Path(stream_dir) if stream_dir is not None else None
        self.total, self.dtype = total, np.float16 if float16 else np.float32
        self.memory: dict[str, list[torch.Tensor]] = {name: [] for name in self.names}
        self.files: dict[str, BinaryIO] = {}
        self.rows: dict[str, int] = dict.fromkeys(self.names, 0)
        self.handles: list = []
        self.was_training = model.training

    def _hook(self, name: str):
        def hook(module: nn.Module, inputs, output: torch.Tensor) -> None:
            if name.endswith(INPUT):
                output = inputs[0] if inputs else None
            if not isinstance(output, torch.Tensor):
                kind = type(output).__name__
                raise TypeError(f"layer {name} returns a {kind}, not a tensor: record a submodule of it")
            out = output.detach()
            if self.stream_dir is None:
                self.memory[name].append(out.cpu())
                return
            if name not in self.files:
                # Append rows to a plain .npy file (header first): unlike a writable memmap, the
                # written pages are not mapped into this process, so RSS stays at one batch.
                self.files[name] = open(self._tmp(name), "wb")  # noqa: SIM115 - closed in __exit__
                header = {"descr": np.lib.format.dtype_to_descr(np.dtype(self.dtype)),
                          "fortran_order": False, "shape": (self.total, *out.shape[1:])}  # fmt: skip
                np.lib.format.write_array_header_1_0(self.files[name], header)
            if self.rows[name] + len(out) > self.total:
                raise RuntimeError(f"{name}: more than the {self.total} rows announced")
            self.files[name].write(np.ascontiguousarray(out.cpu().numpy(), dtype=self.dtype).tobytes())
            self.rows[name] += len(out)

        return hook

    def _tmp(self, name: str) -> Path:
        return self.stream_dir / f".{name}.npy.partial"

    def __enter__(self) -> ActivationRecorder:
        self.model.eval()
        if self.stream_dir is not None:
            self.stream_dir.mkdir(parents=True, exist_ok=True)
        modules = dict(self.model.named_modules())
        for name in self.names:
            module = modules[name.removesuffix(INPUT)]
            self.handles.append(module.register_forward_hook(self._hook(name)))
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()
        self.model.train(self.was_training)
        if self.stream_dir is None:
            return
        complete = exc_type is None and all(self.rows[n] == self.total for n in self.names)
        for name, f in self.files.items():
            f.close()
            if complete:
                os.replace(self._tmp(name), self.path(name))
            else:
                self._tmp(name).unlink(missing_ok=True)
        self.files.clear()
        if exc_type is None and not complete:
            raise RuntimeError(f"streamed {self.rows} rows, expected {self.total} for each layer")

    def path(self, name: str) -> Path:
        """The finished .npy file of one layer (streaming mode)."""
        return self.stream_dir / f"{name}.npy"

    def __getitem__(self, layer: str | int) -> torch.Tensor:
        (name,) = resolve_layers(self.model, layer)
        return torch.cat(self.memory[name])


@torch.no_grad()
def record(
    model: nn.Module, images: torch.Tensor, layers: str | int | list = "all", batch_size: int = 500
) -> dict[str, torch.Tensor]:
    """Activations of `layers` (paths, or h / Keras names for a KerasCNN) for a batch of images
    (float N×C×H×W, or uint8 MNIST N×28×28), in memory: {path: tensor N×...}."""
    return record_with_output(model, images, layers, batch_size)[0]


@torch.no_grad()
def record_with_output(
    model: nn.Module, images: torch.Tensor, layers: str | int | list = "all", batch_size: int = 500
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """record(), and the model's own output (its logits) from the same pass."""
    with ActivationRecorder(model, layers) as rec:
        out = [model(to_float(images[start : start + batch_size])).detach().cpu()
               for start in range(0, len(images), batch_size)]  # fmt: skip
    return {name: rec[name] for name in rec.names}, torch.cat(out)


@torch.no_grad()
def stream(
    model: nn.Module,
    images: torch.Tensor,
    out_dir: str | Path,
    layers: str | int | list = "all",
    batch_size: int = 500,
    float16: bool = False,
) -> dict[str, Path]:
    """Stream activations of uint8 or float images to out_dir/<layer>.npy; returns the paths."""
    with ActivationRecorder(model, layers, out_dir, len(images), float16) as rec:
        for start in tqdm(range(0, len(images), batch_size), desc="recording", leave=False):
            batch = images[start : start + batch_size]
            model(to_float(batch))
    return {name: rec.path(name) for name in rec.names}


def class_similarity(codes: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, float]:
    """10×10 mean cosine similarity between classes' code vectors, and within/between ratio.

    The mean of all pairwise cosines between classes i and j is the dot product of their mean unit
    vectors, so no N×N matrix is built; on the diagonal the n self-pairs (cosine 1) are left out.
    """
    unit = codes / np.maximum(np.linalg.norm(codes, axis=1, keepdims=True), 1e-12)
    classes = np.unique(labels)
    sums = np.stack([unit[labels == c].sum(0) for c in classes])
    counts = np.array([(labels == c).sum() for c in classes], dtype=float)
    sim = (sums @ sums.T) / np.outer(counts, counts)
    within = (np.einsum("ij,ij->i", sums, sums) - counts) / (counts * (counts - 1))
    np.fill_diagonal(sim, within)
    off = ~np.eye(len(classes), dtype=bool)
    return sim, float(within.mean() / sim[off].mean())
