"""Layers by name in any model: a module's path, one layer per call of a module that runs several
times in a pass ('PATH:1', 'PATH:2'), 'PATH:input' for what a module receives; traced once per model,
checked against it (resolve_layers), with the study's h indices and Keras names for its CNN."""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from mnist_probe.errors import UserError
from mnist_probe.keras_cnn import KerasCNN
from mnist_probe.model import LAYER_NAMES, device_of, layer_name
from mnist_probe.outputs import input_shape

# A layer 'PATH:input' records what the module at PATH receives rather than what it returns: the code
# vector of a model whose penultimate activation is a function in forward(), not a module.
INPUT = ":input"
# A module that runs several times in one forward pass (a ResNet block's one ReLU, called twice) has
# one layer per call, 'PATH:1', 'PATH:2', ... (numbered as TorchLens numbers passes); a module that
# runs once is plain 'PATH'.
CALL = ":"

TRACE_BATCH = 3  # how many blank digits a trace runs when given no sample


@dataclass(frozen=True)
class Call:
    """One call of a module in a traced forward pass: its layer name ('PATH', or 'PATH:N' for a
    module that runs several times), path, module, and what it received and returned (not copies)."""

    name: str
    path: str
    module: nn.Module
    inputs: tuple
    output: Any


@torch.no_grad()
def trace(model: nn.Module, sample: torch.Tensor | None = None) -> list[Call]:
    """Every call of every module (the model itself left out) in one eval-mode forward pass of
    `sample` (float images; default: blank MNIST digits), in the order the calls ended (a container
    after what it holds); or a one-line UserError when the model cannot run on it."""
    if sample is None:
        sample = torch.zeros(TRACE_BATCH, *input_shape(model))
    counts: dict[str, int] = {}
    ran: list[tuple[str, int, nn.Module, tuple, Any]] = []

    def hook(path: str):
        def on_call(module, inputs, output) -> None:
            counts[path] = counts.get(path, 0) + 1
            ran.append((path, counts[path], module, inputs, output))

        return on_call

    handles = [m.register_forward_hook(hook(path)) for path, m in model.named_modules() if path]
    was_training = model.training
    model.eval()
    try:
        model(sample.to(device_of(model)))
    except Exception as err:
        first = (str(err).strip().splitlines() or [""])[0][:160]
        raise UserError(
            f"{type(model).__name__} cannot run on {'×'.join(map(str, sample.shape[1:]))} images "
            f"({type(err).__name__}: {first}); record its layers with images it reads"
        ) from None
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return [
        Call(path if counts[path] == 1 else f"{path}{CALL}{n}", path, module, inputs, output)
        for path, n, module, inputs, output in ran
    ]


# What a trace tells of a model, read once per model: each module's number of calls, and its layers
# in the order they ran, each with whether 'all' records it (a leaf with a float row per image).
_calls: weakref.WeakKeyDictionary[nn.Module, dict[str, int]] = weakref.WeakKeyDictionary()
_layers: weakref.WeakKeyDictionary[nn.Module, list[tuple[str, bool]]] = weakref.WeakKeyDictionary()


def module_calls(model: nn.Module, sample: torch.Tensor | None = None) -> dict[str, int]:
    """How many times each module (by path, the model itself left out) runs in one eval-mode forward
    pass, in the order the modules ran, those that never run last (with 0); traced once per model,
    on `sample` (default: blank MNIST digits)."""
    if model in _calls:
        return _calls[model]
    n = TRACE_BATCH if sample is None else len(sample)
    calls = trace(model, sample)
    counts: dict[str, int] = {}
    for call in calls:
        counts[call.path] = counts.get(call.path, 0) + 1
    counts |= {path: 0 for path, _ in model.named_modules() if path and path not in counts}

    def recorded(call: Call) -> bool:  # by 'all': a leaf whose output has a float row per image
        out = call.output
        return (
            not list(call.module.children())
            and isinstance(out, torch.Tensor)
            and out.is_floating_point()
            and out.dim() >= 2
            and len(out) == n
        )

    _layers[model] = [(call.name, recorded(call)) for call in calls]
    _calls[model] = counts
    return counts


def call_names(path: str, calls: int) -> list[str]:
    """The layer names of a module that runs `calls` times: 'PATH', or 'PATH:1' .. 'PATH:N'."""
    return [path] if calls == 1 else [f"{path}{CALL}{n}" for n in range(1, calls + 1)]


def split_layer(model: nn.Module, layer: str, paths: dict | None = None) -> tuple[str, int | None, bool]:
    """A layer name as (module path, which call or None, its input?). A path may itself hold ':'
    (an ONNX node's name): a whole module path is taken as it is. `paths`: dict(named_modules()),
    given by a caller that splits many names (building it is most of the work)."""
    paths = dict(model.named_modules()) if paths is None else paths
    name, is_input = layer, False
    if layer not in paths and layer.endswith(INPUT):
        name, is_input = layer.removesuffix(INPUT), True
    if name in paths:
        return name, None, is_input
    path, _, number = name.rpartition(CALL)
    if path in paths and number.isdigit():
        return path, int(number), is_input
    return name, None, is_input


def leaf_layers(model: nn.Module) -> list[str]:
    """Every call of every module with no children that runs and outputs floats, a row an image, in
    the order they ran: what 'all' records (an ONNX graph's Shape and Gather nodes left out)."""
    module_calls(model)
    return [name for name, recorded in _layers[model] if recorded]


def layer_sequence(model: nn.Module) -> list[str]:
    """Every call of every module (containers too) as a layer name, in the order the calls ended."""
    module_calls(model)
    return [name for name, _ in _layers[model]]


def resolve_layers(model: nn.Module, layers: str | int | list | tuple = "all") -> list[str]:
    """Layer names of model, in the order they run, from 'all' or one or a list of:
    a path from model.named_modules() (e.g. 'layer1.0.conv1' of a ResNet), 'PATH:N' for the N-th call
    of a module that runs several times, 'PATH:input' (or 'PATH:N:input') for what that module
    receives, or, for a KerasCNN, an h index 1..12 or a Keras name (its paths). A module that runs
    several times is refused without its call, in one line naming the calls."""
    keras = isinstance(model, KerasCNN)
    if isinstance(layers, str) and layers == "all":
        return list(LAYER_NAMES) if keras else leaf_layers(model)
    if isinstance(layers, (str, int)):
        layers = [layers]
    wanted, paths = set(), None if keras else dict(model.named_modules())
    for layer in layers:
        if keras:
            tail = INPUT if isinstance(layer, str) and layer.endswith(INPUT) else ""
            wanted.add(layer_name(layer.removesuffix(INPUT) if tail else layer) + tail)
            continue
        wanted.add(_checked(model, layer, paths))
    order = [n for name in (LAYER_NAMES if keras else layer_sequence(model)) for n in (name, name + INPUT)]
    return [name for name in order if name in wanted]


def _checked(model: nn.Module, layer, paths: dict | None = None) -> str:
    """One layer of a model other than the study's, as its canonical name, or a one-line UserError."""
    kind = type(model).__name__
    path, call, is_input = layer, None, False
    if isinstance(layer, str):
        path, call, is_input = split_layer(model, layer, paths)
    tail = INPUT if is_input else ""
    calls = module_calls(model).get(path) if path else None
    if calls is None:
        some = ", ".join(leaf_layers(model)[:6])
        raise UserError(
            f"unknown layer {layer!r} of {kind}; use a path from named_modules() "
            f"(+experiment=layers lists them), e.g. {some}"
        )
    if calls == 0:
        raise UserError(
            f"layer {layer!r} of {kind} never runs in a forward pass: nothing to record; "
            "pick a layer +experiment=layers lists"
        )
    if calls == 1:
        if call not in (None, 1):
            raise UserError(
                f"layer {path!r} of {kind} runs once in a forward pass, so {layer!r} names "
                f"no call; use {path + tail!r}"
            )
        return path + tail
    if call is None or not 1 <= call <= calls:
        choices = ", ".join(name + tail for name in call_names(path, calls))
        raise UserError(
            f"layer {path + tail!r} of {kind} runs {calls} times in one forward pass: name "
            f"one call, {choices}"
        )
    return f"{path}{CALL}{call}{tail}"
