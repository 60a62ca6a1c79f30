"""Forward hooks on named layers: activations in memory for a few images, on disk for many."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from omegaconf import DictConfig
from torch import nn
from tqdm import tqdm

from mnist_probe.cache import locked, write_npz
from mnist_probe.data import to_float
from mnist_probe.model import CODE_LAYER, LAYER_NAMES, layer_name

log = logging.getLogger(__name__)


def resolve_layers(layers: str | int | list | tuple) -> list[str]:
    """'all', an h index, a Keras name, or a list of them -> Keras names in network order."""
    if isinstance(layers, str) and layers == "all":
        return list(LAYER_NAMES)
    if isinstance(layers, (str, int)):
        layers = [layers]
    names = {layer_name(layer) for layer in layers}
    return [name for name in LAYER_NAMES if name in names]


class ActivationRecorder:
    """Context manager that records the outputs of chosen layers while the model runs.

    In memory (default): `rec[name]` is the concatenation of every batch seen, detached, on the
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
        self.model, self.names = model, resolve_layers(layers)
        self.stream_dir = Path(stream_dir) if stream_dir is not None else None
        self.total, self.dtype = total, np.float16 if float16 else np.float32
        self.memory: dict[str, list[torch.Tensor]] = {name: [] for name in self.names}
        self.files: dict[str, BinaryIO] = {}
        self.rows: dict[str, int] = dict.fromkeys(self.names, 0)
        self.handles: list = []
        self.was_training = model.training

    def _hook(self, name: str):
        def hook(module: nn.Module, inputs, output: torch.Tensor) -> None:
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
        for name in self.names:
            self.handles.append(getattr(self.model, name).register_forward_hook(self._hook(name)))
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
        return torch.cat(self.memory[layer_name(layer)])


@torch.no_grad()
def record(
    model: nn.Module, images: torch.Tensor, layers: str | int | list = "all", batch_size: int = 500
) -> dict[str, torch.Tensor]:
    """Activations of `layers` for float images N×1×28×28, in memory: {name: tensor N×...}."""
    with ActivationRecorder(model, layers) as rec:
        for start in range(0, len(images), batch_size):
            model(images[start : start + batch_size])
    return {name: rec[name] for name in rec.names}


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
            model(to_float(batch) if batch.dtype == torch.uint8 else batch)
    return {name: rec.path(name) for name in rec.names}


def code_vectors(
    cfg: DictConfig, model: nn.Module, model_key: str, split: str
) -> tuple[np.ndarray, np.ndarray]:
    """(256-d code vectors, labels) of a split ('train' = the 54k training images, 'test'), cached.

    Stored beside the CNN in its cache entry, so every stage and sweep job reuses them.
    """
    from mnist_probe.train import split_tensors

    path = Path(cfg.paths.cache) / f"cnn-{model_key}" / f"codes-{split}.npz"
    with locked(path):
        if path.is_file():
            with np.load(path) as z:
                return z["codes"], z["labels"]
        images, labels = split_tensors(cfg, split)
        log.info("computing %s code vectors for %d images", split, len(images))
        codes = record_codes(model, images)
        labels = labels.numpy()
        write_npz(path, codes=codes, labels=labels)
        return codes, labels


@torch.no_grad()
def record_codes(model: nn.Module, images: torch.Tensor, batch_size: int = 1000) -> np.ndarray:
    """The h=10 code vectors of uint8 or float images as a float32 array N×256."""
    with ActivationRecorder(model, CODE_LAYER) as rec:
        for start in tqdm(range(0, len(images), batch_size), desc="code vectors", leave=False):
            batch = images[start : start + batch_size]
            model(to_float(batch) if batch.dtype == torch.uint8 else batch)
    return rec[CODE_LAYER].numpy()


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
