"""Forward hooks on named layers (mnist_probe.layer_names): activations in memory for a few images,
on disk for many; and how alike the recorded code vectors are within and between classes
(class_similarity)."""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from mnist_probe.data import to_float
from mnist_probe.keras_cnn import KerasCNN
from mnist_probe.layer_names import TRACE_BATCH, module_calls, resolve_layers, split_layer
from mnist_probe.names import file_name
from mnist_probe.specs import INFERENCE_BATCH

log = logging.getLogger(__name__)


class ActivationRecorder:
    """Context manager that records the outputs of chosen layers while the model runs.

    `model` is any nn.Module and `layers` any of its paths in named_modules() (see
    resolve_layers; a KerasCNN also takes h indices and Keras names). In memory (default):
    `rec[name]` is the concatenation of every batch seen, detached, copied, on the CPU (keep_graph:
    graph and device kept); given `total`, the rows each layer will get, each batch is copied straight
    into one tensor of `total` rows allocated at the layer's first batch (no per-batch copies kept,
    no concatenation: memory is the activations returned), or into `out[name]`, the tensors of an
    earlier recording of as many rows (no new memory for the kernel to hand out page by page).
    Streaming (`stream_dir` and `total`): rows are appended to a `<name>.npy` of `total` rows (open
    it with np.load(mmap_mode='r')), so memory stays at one batch whatever the dataset size; the
    files appear under their final names only when recording finished cleanly. A module that runs
    several times a pass (a ResNet block's ReLU) is recorded per call, as 'PATH:1', 'PATH:2', ...
    The model runs in eval mode (dropout passes its input through, as in Keras's predict) and every
    hook is removed on exit, even when the body raises.
    """

    def __init__(
        self,
        model: nn.Module,
        layers: str | int | list = "all",
        stream_dir: str | Path | None = None,
        total: int | None = None,
        float16: bool = False,
        keep_graph: bool = False,
        out: dict[str, torch.Tensor] | None = None,
    ) -> None:
        if stream_dir is not None and not total:
            raise ValueError("streaming needs total, the number of rows each layer will get")
        if total is not None and keep_graph:
            raise ValueError("keep_graph keeps each batch's graph: it cannot copy them into one tensor")
        self.model, self.names = model, resolve_layers(model, layers)
        self.stream_dir = Path(stream_dir) if stream_dir is not None else None
        self.total, self.dtype = total, np.float16 if float16 else np.float32
        self.keep_graph = keep_graph  # in memory, as computed: for gradients with respect to the input
        self.copy_free = isinstance(model, KerasCNN)
        self.memory: dict[str, list[torch.Tensor]] = {name: [] for name in self.names}
        # in memory with total: every layer's rows, preallocated at its first batch or given
        self.buffers: dict[str, torch.Tensor] = dict(out or {})
        if out is not None and (stream_dir is not None or not total or set(out) != set(self.names)):
            raise ValueError(
                f"out takes the tensors of an earlier in-memory recording of the same layers "
                f"({', '.join(self.names)}) and as many images, not of "
                f"{', '.join(out) or 'none'}"
            )
        self.files: dict[str, BinaryIO] = {}
        self.rows: dict[str, int] = dict.fromkeys(self.names, 0)
        self.handles: list = []
        self.seen: dict[str, int] = defaultdict(int)  # calls of each hooked module in this pass
        self.was_training = model.training

    def _hook(self, path: str, wanted: list[tuple[str, int | None, bool]]):
        """One hook for every layer recorded at the module `path`: (name, call, input?) each; a call
        of None records every call (the module runs once a pass)."""

        def hook(module: nn.Module, inputs, output) -> None:
            self.seen[path] += 1
            for name, call, is_input in wanted:
                if call is None or call == self.seen[path]:
                    self._store(name, (inputs[0] if inputs else None) if is_input else output)

        return hook

    def _reset(self, module: nn.Module, inputs) -> None:
        """A new forward pass of the model: every module's calls counted from 1 again."""
        self.seen.clear()

    def _store(self, name: str, output) -> None:
        if not isinstance(output, torch.Tensor):
            kind = type(output).__name__
            raise TypeError(f"layer {name} returns a {kind}, not a tensor: record a submodule of it")
        if self.keep_graph:  # a clone is in the graph too, and safe from later in-place ops
            self.memory[name].append(output if self.copy_free else output.clone())
            return
        out = output.detach()
        if self.stream_dir is None and self.total:  # copied (safe from in-place ops) into its rows
            if self.rows[name] == 0:  # the layer's first batch: its rows allocated, or out's checked
                shape, given = (self.total, *out.shape[1:]), self.buffers.get(name)
                if given is None:
                    self.buffers[name] = torch.empty(shape, dtype=out.dtype)
                elif (given.shape, given.dtype) != (shape, out.dtype):
                    raise ValueError(
                        f"out[{name!r}] is {given.dtype} {tuple(given.shape)}; this recording "
                        f"needs {out.dtype} {shape}: pass what record returned for as many "
                        "images"
                    )
            self._check_rows(name, len(out))
            self.buffers[name][self.rows[name] : self.rows[name] + len(out)].copy_(out)
            self.rows[name] += len(out)
            return
        if self.stream_dir is None:
            # A copy, unless the study's CNN (no in-place op anywhere): a ResNet block adds its shortcut
            # into bn2's output in place and ReLUs it in place, which would change what was recorded.
            self.memory[name].append(out.cpu() if self.copy_free else out.to("cpu", copy=True))
            return
        if name not in self.files:
            # Append rows to a plain .npy file (header first): unlike a writable memmap, the
            # written pages are not mapped into this process, so RSS stays at one batch.
            self.files[name] = open(self._tmp(name), "wb")  # noqa: SIM115 - closed in __exit__
            header = {
                "descr": np.lib.format.dtype_to_descr(np.dtype(self.dtype)),
                "fortran_order": False,
                "shape": (self.total, *out.shape[1:]),
            }
            np.lib.format.write_array_header_1_0(self.files[name], header)
        self._check_rows(name, len(out))
        self.files[name].write(np.ascontiguousarray(out.cpu().numpy(), dtype=self.dtype).tobytes())
        self.rows[name] += len(out)

    def _check_rows(self, name: str, n: int) -> None:
        if self.rows[name] + n > self.total:
            raise RuntimeError(f"{name}: more than the {self.total} rows announced")

    def _tmp(self, name: str) -> Path:
        return self.stream_dir / f".{file_name(name)}.npy.partial"

    def __enter__(self) -> ActivationRecorder:
        self.model.eval()
        if self.stream_dir is not None:
            self.stream_dir.mkdir(parents=True, exist_ok=True)
        modules = dict(self.model.named_modules())
        calls = {} if isinstance(self.model, KerasCNN) else module_calls(self.model)
        by_path: dict[str, list[tuple[str, int | None, bool]]] = defaultdict(list)
        for name in self.names:
            path, call, is_input = split_layer(self.model, name, modules)
            by_path[path].append((name, call if calls.get(path, 1) > 1 else None, is_input))
        for path, wanted in by_path.items():
            self.handles.append(modules[path].register_forward_hook(self._hook(path, wanted)))
        self.handles.append(self.model.register_forward_pre_hook(self._reset))
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
        return self.stream_dir / f"{file_name(name)}.npy"

    def __getitem__(self, layer: str | int) -> torch.Tensor:
        (name,) = resolve_layers(self.model, layer)
        if name in self.buffers:
            return self.buffers[name][: self.rows[name]]
        return torch.cat(self.memory[name])


class _Recorded(Exception):
    """Raised once the layer output_of wants has run: the rest of the forward pass is not needed."""


def output_of(model: nn.Module, layer: str, x: torch.Tensor) -> torch.Tensor:
    """One layer's output when the model (in eval mode) runs on float images x, its autograd graph
    kept: for gradients of a unit with respect to the input. The pass stops at the layer (what runs
    after it cannot change its output)."""
    with ActivationRecorder(model, layer, keep_graph=True) as rec:
        path, call, _ = split_layer(model, rec.names[0])

        def stop(module: nn.Module, inputs, output) -> None:
            if rec.seen[path] >= (call or 1):
                raise _Recorded

        handle = model.get_submodule(path).register_forward_hook(stop)  # after the recorder's own
        try:
            model(x)
        except _Recorded:
            pass
        finally:
            handle.remove()
    return rec[layer]


@torch.no_grad()
def record(
    model: nn.Module,
    images: torch.Tensor,
    layers: str | int | list = "all",
    batch_size: int = INFERENCE_BATCH,
    out: dict[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Activations of `layers` (paths, or h / Keras names for a KerasCNN) for a batch of images
    (float N×C×H×W, or uint8 MNIST N×28×28), in memory: {path: tensor N×...}. Given `out`, what an
    earlier call returned for as many images, its tensors are written over and returned: a loop over
    a data set's chunks then reuses one set of tensors rather than have new memory faulted in for each."""
    return record_with_output(model, images, layers, batch_size, out)[0]


@torch.no_grad()
def record_with_output(
    model: nn.Module,
    images: torch.Tensor,
    layers: str | int | list = "all",
    batch_size: int = INFERENCE_BATCH,
    out: dict[str, torch.Tensor] | None = None,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """record(), and the model's own output (its logits) from the same pass."""
    module_calls(model, to_float(images[:TRACE_BATCH]))  # the calls, traced on images the model reads
    with ActivationRecorder(model, layers, total=len(images), out=out) as rec:
        logits = [
            model(to_float(images[start : start + batch_size])).detach().cpu()
            for start in range(0, len(images), batch_size)
        ]
    return {name: rec[name] for name in rec.names}, torch.cat(logits)


@torch.no_grad()
def stream(
    model: nn.Module,
    images: torch.Tensor,
    out_dir: str | Path,
    layers: str | int | list = "all",
    batch_size: int = INFERENCE_BATCH,
    float16: bool = False,
) -> dict[str, Path]:
    """Stream activations of uint8 or float images to out_dir/<layer>.npy; returns the paths."""
    module_calls(model, to_float(images[:TRACE_BATCH]))
    with ActivationRecorder(model, layers, out_dir, len(images), float16) as rec:
        for start in tqdm(range(0, len(images), batch_size), desc="recording", leave=False):
            batch = images[start : start + batch_size]
            model(to_float(batch))
    return {name: rec.path(name) for name in rec.names}


def class_similarity(codes: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, float]:
    """Classes × classes mean cosine similarity between classes' code vectors, and within/between ratio.

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
