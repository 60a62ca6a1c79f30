"""Any CNN's layers, found rather than assumed: which layers to draw, which one holds the code vector,
and the layer table (module path, type, output shape, parameters).

A model may say what it wants (attributes `feature_layers`, `shift_layers` and `code_layer`, as the
study's KerasCNN does with its Keras names); otherwise they are read off its modules and one forward
pass of a 1×28×28 image.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import numpy as np
import torch
from torch import nn

from mnist_probe.errors import UserError
from mnist_probe.layer_names import INPUT, call_names, module_calls, resolve_layers, trace
from mnist_probe.model import device_of
from mnist_probe.outputs import input_shape
from mnist_probe.rows import LayerRow


def conv_layers(model: nn.Module) -> list[str]:
    """Paths of the model's 2-d convolutions (nn.Conv2d and its subclasses), in module order."""
    return [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]


T = TypeVar("T")


def spread(items: Sequence[T], most: int | None) -> list[T]:
    """At most `most` of `items` (a deep model's layers), evenly spaced from the first to the last and in
    their order; all of them where `most` is None or they are no more."""
    if most is None or len(items) <= most:
        return list(items)
    picks = np.linspace(0, len(items) - 1, most).round().astype(int)
    return [items[i] for i in dict.fromkeys(picks.tolist())]


def _declared(model: nn.Module, attribute: str) -> list[str] | None:
    value = getattr(model, attribute, None)
    return resolve_layers(model, [value] if isinstance(value, str) else list(value)) if value else None


def feature_layers(model: nn.Module, most: int | None = None) -> list[str]:
    """The layers whose feature maps the activations stage draws: the model's own choice
    (`feature_layers`), else its conv layers (at most `most`, spread over its depth)."""
    layers = _declared(model, "feature_layers") or spread(conv_layers(model), most)
    if not layers:
        raise UserError(
            f"{type(model).__name__} has no nn.Conv2d to draw; set activations.layers to "
            "module paths (+experiment=layers lists them)"
        )
    return layers


def shift_layers(model: nn.Module, most: int | None = None) -> list[str]:
    """The layers whose deformation under a shift the shift stage measures: the model's own choice
    (`shift_layers`), else its conv layers (at most `most`, spread over its depth)."""
    return _declared(model, "shift_layers") or spread(conv_layers(model), most)


def _trace(model: nn.Module) -> tuple[list[tuple[str, nn.Module, torch.Tensor]], dict[str, torch.Tensor]]:
    """One eval-mode pass of blank digits (layer_names.trace): (layer name, module, output) of every call of
    a leaf module in the order they ran, and the input each linear layer received."""
    leaves = [call for call in trace(model) if not list(call.module.children())]
    linear_inputs = {call.name: call.inputs[0] for call in leaves if isinstance(call.module, nn.Linear)}
    return [(call.name, call.module, call.output) for call in leaves], linear_inputs


def code_layer(model: nn.Module) -> str:
    """The layer whose output is the model's code vector: its own choice (`code_layer`), else the
    input of the last linear layer to run (the penultimate representation), named by the first layer
    that outputs that very tensor, or as 'NAME:input' when a function in forward() made it."""
    declared = _declared(model, "code_layer")
    if declared:
        return declared[0]
    ran, linear_inputs = _trace(model)
    last = next((name for name, m, _ in reversed(ran) if isinstance(m, nn.Linear)), None)
    if last is None:
        raise UserError(
            f"{type(model).__name__} has no linear layer whose input could be the code vector; "
            "set code_layer= to a layer name (+experiment=layers lists them)"
        )
    wanted = linear_inputs[last]
    for name, _, output in ran:
        if output is wanted or (
            isinstance(output, torch.Tensor)
            and output.shape == wanted.shape
            and output.data_ptr() == wanted.data_ptr()
        ):
            return name
    return f"{last}{INPUT}"


def code_layer_or_none(model: nn.Module) -> str | None:
    """code_layer(model), or None where the model has no linear layer to find it by."""
    try:
        return code_layer(model)
    except UserError:
        return None


def layer_table(model: nn.Module) -> list[LayerRow]:
    """Every call of every module of the model with its layer name (a module that runs twice has two
    rows, 'PATH:1' and 'PATH:2'), type, output shape for one 1×28×28 digit and parameters
    (torchinfo's summary, rows in the order the modules ran; a reused module's parameters counted at
    its first call)."""
    from torchinfo import summary  # 1.9 s to import; only this table needs it

    stats = summary(
        model,
        input_size=(1, *input_shape(model)),
        verbose=0,
        device=device_of(model),
        mode="eval",
        depth=100,
        col_names=("output_size", "num_params"),
    )
    paths = {id(m): name for name, m in model.named_modules()}
    calls, seen = module_calls(model), {}
    rows = []
    for info in stats.summary_list:
        if info.depth == 0:
            continue
        path = paths.get(id(info.module), info.var_name)
        seen[path] = seen.get(path, 0) + 1
        names = call_names(path, calls.get(path, 1) or 1)
        shape = info.output_size[1:] if isinstance(info.output_size, (list, tuple)) else []
        rows.append(
            LayerRow(
                names[min(seen[path], len(names)) - 1],
                info.class_name,
                "×".join(map(str, shape)),
                int(info.num_params),
                info.is_leaf_layer,
            )
        )
    return rows
