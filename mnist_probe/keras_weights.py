"""Bring your own Keras weights: the study's network trained in Keras, opened up here.

Reads, with h5py (no TensorFlow needed), a Keras 2 HDF5 file (`model.save("model.h5")` or
`save_weights`) or a Keras 3 `.keras` archive (a zip whose model.weights.h5 holds the weights), and
loads the weights of its 4 Conv2D and 2 Dense layers, in order, into a KerasCNN:

- conv kernels are HWIO in Keras (height, width, in, out); PyTorch wants OIHW;
- dense kernels are (in, out) in Keras; PyTorch's Linear keeps (out, in);
- dense_1's 3,136 input rows come in Keras's Flatten order, H×W×C (7×7×64, channels last);
  PyTorch flattens C×H×W, so the rows are permuted, or every prediction would be wrong.

`save_keras` goes the other way: a KerasCNN's weights as a Keras 2 weights file, which Keras's
`model.load_weights("model.h5")` reads into the study's Sequential (and `load_keras` reads back).
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import h5py
import numpy as np
import torch
from torch import nn

from mnist_probe.errors import UserError
from mnist_probe.names import LAYER_NAMES

SUFFIXES = (".h5", ".hdf5", ".keras")
WEIGHTED = ("Conv2D", "Dense")
# The study's Sequential as Keras 2 names its layers: the KerasCNN's module names.
KERAS2_LAYERS = tuple(LAYER_NAMES)


def _keras2(f: h5py.File) -> list[list[np.ndarray]]:
    """The weights of each layer that has any, in the model's order (Keras 2 HDF5 layout)."""
    root = f["model_weights"] if "model_weights" in f else f
    names = [n.decode() if isinstance(n, bytes) else n for n in root.attrs.get("layer_names", [])]
    layers = []
    for name in names:
        group = root[name]
        weights = [w.decode() if isinstance(w, bytes) else w for w in group.attrs.get("weight_names", [])]
        if weights:
            layers.append([np.asarray(group[w]) for w in weights])
    return layers


def _keras3(archive: zipfile.ZipFile) -> list[list[np.ndarray]]:
    """The weights of each Conv2D and Dense layer, in the order of the archive's config.json."""
    config = json.loads(archive.read("config.json"))
    order = [
        layer["config"]["name"]
        for layer in config.get("config", {}).get("layers", [])
        if layer.get("class_name") in WEIGHTED
    ]
    with h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r") as f:
        found: dict[str, h5py.Group] = {}  # layer name -> its "vars" group ("0": kernel, "1": bias)

        def collect(path: str, obj) -> None:
            if isinstance(obj, h5py.Group) and path.endswith("/vars") and len(obj):
                found.setdefault(path.rsplit("/", 2)[-2], obj)

        f.visititems(collect)
        missing = [name for name in order if name not in found]
        if missing:
            raise UserError(f"the .keras archive has no weights for layers {', '.join(missing)}")
        return [[np.asarray(found[name][str(i)]) for i in range(len(found[name]))] for name in order]


def read_layers(path: str | Path) -> list[list[np.ndarray]]:
    """[kernel, bias] of each weighted layer of a Keras file, in the model's order."""
    path = Path(path)
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                return _keras3(archive)
        with h5py.File(path, "r") as f:
            return _keras2(f)
    except UserError:
        raise
    except (OSError, KeyError, ValueError) as err:
        first = (str(err).splitlines() or [""])[0]
        raise UserError(
            f"{path} could not be read as a Keras file ({type(err).__name__}: {first}); "
            "expected a Keras 2 .h5 or a Keras 3 .keras"
        ) from None


def to_torch(layers: list[list[np.ndarray]], model: nn.Module) -> dict[str, torch.Tensor]:
    """A KerasCNN state dict from Keras's layers (4 convs, then 2 dense), checked shape by shape."""
    convs = [name for name, m in model.named_children() if isinstance(m, nn.Conv2d)]
    denses = [name for name, m in model.named_children() if isinstance(m, nn.Linear)]
    expected = model.state_dict()
    shapes = [tuple(w.shape) for layer in layers for w in layer]
    if len(layers) != len(convs) + len(denses) or any(len(layer) != 2 for layer in layers):
        raise UserError(
            f"not the study's architecture: {len(layers)} weighted layers with shapes {shapes}, "
            f"expected {len(convs)} Conv2D and {len(denses)} Dense layers with a bias each"
        )
    state = {}
    for name, (kernel, bias) in zip(convs + denses, layers, strict=True):
        kernel = torch.from_numpy(np.array(kernel, dtype=np.float32))
        if name in convs:
            kernel = kernel.permute(3, 2, 0, 1)  # HWIO -> OIHW
        else:
            if name == denses[0] and kernel.dim() == 2:  # the layer after Flatten
                channels = expected[f"{convs[-1]}.weight"].shape[0]
                kernel = _flatten_rows(kernel, expected[f"{name}.weight"].shape[1], channels)
            kernel = kernel.T  # (in, out) -> (out, in)
        for key, value in ((f"{name}.weight", kernel), (f"{name}.bias", torch.from_numpy(np.array(bias)))):
            if tuple(value.shape) != tuple(expected[key].shape):
                raise UserError(
                    f"not the study's architecture: {key} is {tuple(value.shape)} after "
                    f"conversion, expected {tuple(expected[key].shape)} (in the file: {shapes})"
                )
            state[key] = value.float().contiguous()
    return state


def _flatten_rows(kernel: torch.Tensor, inputs: int, channels: int) -> torch.Tensor:
    """dense_1's rows from Keras's H×W×C flatten order to PyTorch's C×H×W."""
    side = int(round((inputs / channels) ** 0.5))
    if kernel.shape[0] != inputs or side * side * channels != inputs:
        return kernel  # the shape check in to_torch names the mismatch
    return kernel.reshape(side, side, channels, -1).permute(2, 0, 1, 3).reshape(inputs, -1)


def load_keras(path: str | Path, model: nn.Module) -> nn.Module:
    """Load a Keras file's weights into model (a KerasCNN); returns it in eval mode."""
    model.load_state_dict(to_torch(read_layers(path), model))
    return model.eval()


def save_keras(model: nn.Module, path: str | Path) -> Path:
    """A KerasCNN's weights as a Keras 2 HDF5 weights file (model_weights/<layer>/<layer>/kernel:0,
    bias:0): kernels HWIO, dense kernels (in, out), dense_1's rows in Keras's H×W×C flatten order.
    Written whole or not at all (a temporary file, renamed)."""
    children = dict(model.named_children())
    convs = [n for n, m in children.items() if isinstance(m, nn.Conv2d)]
    denses = [n for n, m in children.items() if isinstance(m, nn.Linear)]
    if convs + denses != [n for n in KERAS2_LAYERS if n.startswith(("conv2d", "dense"))]:
        raise UserError(
            f"save_keras writes the study's KerasCNN only; this model's weighted layers are "
            f"{', '.join(convs + denses) or 'none'}"
        )
    layers = {}
    for name in convs + denses:
        module = children[name]
        kernel = module.weight.detach().float().cpu()
        if name in convs:
            kernel = kernel.permute(2, 3, 1, 0)  # OIHW -> HWIO
        else:
            kernel = kernel.T  # (out, in) -> (in, out)
            if name == denses[0]:  # PyTorch's C×H×W rows -> Keras's H×W×C
                channels = children[convs[-1]].out_channels
                rows, side = kernel.shape[0], int(round((kernel.shape[0] / channels) ** 0.5))
                kernel = kernel.reshape(channels, side, side, -1).permute(1, 2, 0, 3).reshape(rows, -1)
        layers[name] = [kernel.numpy(), module.bias.detach().float().cpu().numpy()]
    return write_keras2(path, layers)


def write_keras2(path: str | Path, layers: dict[str, list[np.ndarray]]) -> Path:
    """A Keras 2 HDF5 weights file, as `model.save("model.h5")` lays it out: model_weights/<layer>/
    <layer>/{kernel,bias}:0 for each of the study's layers named in `layers` (arrays already in
    Keras's layout). Written whole or not at all (a temporary file, renamed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    with h5py.File(tmp, "w") as f:
        f.attrs["keras_version"] = b"2.2.4"
        f.attrs["backend"] = b"tensorflow"
        root = f.create_group("model_weights")
        root.attrs["layer_names"] = [n.encode() for n in KERAS2_LAYERS]
        for name in KERAS2_LAYERS:
            group = root.create_group(name)
            names = [f"{name}/kernel:0", f"{name}/bias:0"] if name in layers else []
            group.attrs["weight_names"] = [n.encode() for n in names]
            for weight_name, value in zip(names, layers.get(name, []), strict=True):
                group.create_dataset(weight_name, data=value)
    tmp.replace(path)
    return path
