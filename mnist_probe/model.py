"""Any network built from its import path for the data (build_model), opened from a file (open_model,
load_model), and what its cache key holds (model_content). The study's CNN is mnist_probe.keras_cnn."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import inspect
import os
import pickle
import sys
from pathlib import Path

import torch
from hydra.utils import instantiate
from torch import nn

from mnist_probe.checks import no_pickled_code
from mnist_probe.errors import UserError, missing_checkpoint, pickled_code
from mnist_probe.inputs import declare_input
from mnist_probe.keras_weights import SUFFIXES, load_keras
from mnist_probe.model_spec import ModelSpec
from mnist_probe.names import CODE_LAYER, LAYER_NAMES, SAMPLE_SHAPE, layer_h, layer_name
from mnist_probe.onnx_model import load_onnx
from mnist_probe.outputs import (  # noqa: F401 (re-exported: what the model modules are asked for)
    NUM_CLASSES,
    OUTPUT_KINDS,
    check_io,
    device_of,
    output_kind,
    outputs_of,
    read_as_log_probabilities,
    top1_accuracy,
)
from mnist_probe.specs import is_onnx

__all__ = [
    "CODE_LAYER",
    "LAYER_NAMES",
    "build_model",
    "layer_h",
    "layer_name",
    "load_model",
    "model_content",
]


# A network's constructor arguments the data decides, filled in where the class takes them and the
# config leaves them unset: the study's CNN, its anti-aliased twin and LeNet-5 take all three.
DATA_ARGS = ("in_channels", "input_size", "num_classes")


def for_data(spec: ModelSpec, shape: tuple[int, int, int], num_classes: int) -> ModelSpec:
    """spec with the data's channels, image size and class count as the constructor's in_channels,
    input_size and num_classes, where it takes them and spec does not set them."""
    try:
        taken = inspect.signature(_importable(spec._target_)).parameters
    except (TypeError, ValueError):  # a builtin without a signature: nothing to fill
        return spec
    shape = spec.input.shape(shape)  # what the network itself reads: the data's, or as declared
    values = {
        "in_channels": shape[0],
        "input_size": shape[1] if shape[1] == shape[2] else list(shape[1:]),
        "num_classes": num_classes,
    }
    filled = {k: values[k] for k in DATA_ARGS if k in taken and k not in spec.args}
    return dataclasses.replace(spec, args={**spec.args, **filled}) if filled else spec


def _importable(target: str):
    """The class (or function) at an import path, the working directory first on the path as for
    `python -m`; or a one-line UserError."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    module, _, name = target.rpartition(".")
    try:
        found = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as err:
        raise UserError(
            f"model._target_={target} cannot be imported ({type(err).__name__}: {err}); put "
            "its module in the working directory or on PYTHONPATH"
        ) from None
    if not callable(found):
        raise UserError(f"model._target_={target} is a {type(found).__name__}, not a class or function")
    return found


def build_model(
    spec: ModelSpec, shape: tuple[int, int, int] = SAMPLE_SHAPE, num_classes: int = NUM_CLASSES
) -> nn.Module:
    """A fresh network of spec, built by Hydra's instantiate for the data (for_data: N×shape images,
    num_classes classes; MNIST's by default), checked to read such images and give N×num_classes
    logits; every problem a one-line UserError naming the key."""
    spec.input.check(shape)
    spec = for_data(spec, shape, num_classes)
    target = _importable(spec._target_)
    try:
        inspect.signature(target).bind(**spec.args)
    except TypeError as err:
        given = " ".join(f"+model.{k}={v}" for k, v in spec.args.items()) or "no arguments"
        raise UserError(
            f"model._target_={spec._target_} does not take {given} ({err}); "
            "pass its constructor's arguments as +model.NAME=VALUE"
        ) from None
    except ValueError:  # a builtin without a signature: let the call decide
        pass
    try:
        model = instantiate(spec.node())
    except Exception as err:
        cause = err.__cause__ or err
        first = (str(cause).strip().splitlines() or [""])[0][:160]
        raise UserError(
            f"building model._target_={spec._target_} failed ({type(cause).__name__}: {first})"
        ) from None
    if not isinstance(model, nn.Module):
        raise UserError(f"model._target_={spec._target_} returned a {type(model).__name__}, not an nn.Module")
    declare_input(model, spec.input)
    check_io(model, spec._target_, shape, num_classes, output=spec.output)
    return model


def model_content(
    spec: ModelSpec, shape: tuple[int, int, int] = SAMPLE_SHAPE, num_classes: int = NUM_CLASSES
) -> dict:
    """What decides a network before training, for a cache key: its import path, every constructor
    argument (defaults included, so +model.filters=64 and model=keras_cnn key the same; the data's
    filled in: for_data) and the sha256 of its module's source, so that editing the class trains it
    again."""
    spec = for_data(spec, shape, num_classes)
    target = _importable(spec._target_)
    try:
        bound = inspect.signature(target).bind(**spec.args)
        bound.apply_defaults()
        args = {
            k: v if isinstance(v, (int, float, str, bool, type(None))) else repr(v)
            for k, v in bound.arguments.items()
        }
    except (TypeError, ValueError):
        args = dict(spec.args)
    source = inspect.getsourcefile(target)
    digest = hashlib.sha256(Path(source).read_bytes()).hexdigest() if source else None
    return {"_target_": spec._target_, "args": args, "source": digest} | spec.content()


def open_model(
    spec: ModelSpec,
    checkpoint: str | Path | None = None,
    shape: tuple[int, int, int] = SAMPLE_SHAPE,
    num_classes: int = NUM_CLASSES,
) -> nn.Module:
    """The model a run opens for images of shape and num_classes classes: an ONNX file (its graph is
    the architecture), spec's class with the checkpoint's weights, or, with no checkpoint, a fresh
    spec's class (built, not trained)."""
    if checkpoint is None:
        return build_model(spec, shape, num_classes)
    if is_onnx(checkpoint):  # the graph is the architecture; what it reads and outputs is spec's
        return load_model(checkpoint, None, shape, num_classes, spec)
    return load_model(checkpoint, build_model(spec, shape, num_classes), shape, num_classes)


def load_model(
    path: str | Path,
    model: nn.Module | None = None,
    shape: tuple[int, int, int] = SAMPLE_SHAPE,
    num_classes: int = NUM_CLASSES,
    onnx: ModelSpec | None = None,
) -> nn.Module:
    """Load a state dict (.pt), a Lightning checkpoint (.ckpt) or Keras's own file (.h5, .keras)
    into model (default: a fresh KerasCNN), weights only: no pickled code runs; or an ONNX file
    (.onnx), whose graph is the architecture (model is not used; `onnx`'s input and output settings
    say what it reads and which output holds the class scores). Returns the model in eval mode, its
    conv kernels channels-last (NHWC: the same math, and oneDNN's faster convolution kernels on a
    CPU; a model without 4-d weights is unchanged)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise missing_checkpoint(path)
    if is_onnx(path):
        onnx = onnx or ModelSpec()
        onnx.input.check(shape)
        model = declare_input(load_onnx(path), onnx.input)
        check_io(model, f"the ONNX model {path}", shape, num_classes, trained=True, output=onnx.output)
    else:
        model = model if model is not None else build_model(ModelSpec(), shape, num_classes)
        if path.suffix.lower() in SUFFIXES:  # Keras's own files: HWIO kernels, H×W×C flatten order
            model = load_keras(path, model)
        else:
            _load_state(path, model)
    return model.eval().to(memory_format=torch.channels_last)


def _load_state(path: Path, model: nn.Module) -> None:
    """A state dict (.pt) or a Lightning checkpoint (.ckpt) into model, or a one-line UserError."""
    no_pickled_code(path)  # refused before torch reads it (and warns of it)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "weights_only" in str(err):  # a class or function beyond tensors: it would run code
            raise pickled_code(path) from None
        raise UserError(
            f"checkpoint {path} could not be read (UnpicklingError): it is truncated or not a "
            "state dict or Lightning checkpoint; point checkpoint= at a complete one"
        ) from None
    except Exception as err:
        raise UserError(
            f"checkpoint {path} could not be read ({type(err).__name__}): it is truncated or not a "
            "state dict or Lightning checkpoint; point checkpoint= at a complete one"
        ) from None
    if isinstance(state, dict) and "state_dict" in state:  # a Lightning checkpoint
        state = {k.removeprefix("model."): v for k, v in state["state_dict"].items()}
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(
            f"checkpoint {path} holds a {type(state).__name__}, not a state dict of tensors; "
            "save one with torch.save(model.state_dict(), path)"
        )
    mismatch = state_mismatch(state, model.state_dict())
    if mismatch:
        raise UserError(
            f"checkpoint {path} does not fit {type(model).__name__} ({mismatch}); set "
            "model._target_ and +model.* to the network it was saved from"
        )
    model.load_state_dict(state)


def state_mismatch(state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], show: int = 3) -> str:
    """What keeps a state dict from loading into a model, its first keys named; '' when it fits."""

    def first(keys) -> str:
        keys = list(keys)
        return ", ".join(keys[:show]) + (f" and {len(keys) - show} more" if len(keys) > show else "")

    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k} is {'×'.join(map(str, state[k].shape))} in the file, "
        f"{'×'.join(map(str, expected[k].shape))} in the model"
        for k in expected
        if k in state and state[k].shape != expected[k].shape
    ]
    parts = (
        ([f"missing {first(missing)}"] if missing else [])
        + ([f"unexpected {first(unexpected)}"] if unexpected else [])
        + shapes[:1]
    )
    return "; ".join(parts)
