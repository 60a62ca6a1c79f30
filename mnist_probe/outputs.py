"""What a classifier outputs, found from its outputs once: logits, probabilities or log-probabilities,
the last two read as log-probabilities from then on, so that every stage takes its outputs as logits
(softmax(log p) = p; cross-entropy on them is the NLL). Also: where a model is, and top-1 accuracy."""

from __future__ import annotations

import functools
from collections.abc import Mapping

import torch
from torch import nn

from mnist_probe.errors import UserError
from mnist_probe.names import SAMPLE_SHAPE

NUM_CLASSES = 10


def top1_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The share of rows whose largest output is the label: every accuracy the tool reports."""
    return (logits.argmax(1) == labels).sum().item() / len(labels)


def device_of(model: nn.Module) -> torch.device:
    """Where the model's parameters are (the CPU for a model without any)."""
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


# What a classifier's outputs are (outputs_of): found from its outputs, and read as log-probabilities,
# which every stage takes as logits (softmax(log p) = p, cross-entropy on them is the NLL).
OUTPUT_KINDS = ("logits", "probabilities", "log-probabilities")
SUMS_TO_ONE = 1e-3  # how far a row of probabilities may sum from 1 (float32 softmax: ~1e-7)


def output_kind(out: torch.Tensor, name: str, trained: bool = False) -> str:
    """'probabilities' (each row in [0, 1], summing to 1: a softmax last), 'log-probabilities' (rows
    whose exp sums to 1: a log-softmax last) or 'logits' (anything else that is finite); or a
    one-line UserError for outputs that are none of these: not finite, or, from a trained model, values
    in [0, 1] that do not sum to 1 (a sigmoid per class: no single class per image)."""
    out = out.detach().float()
    if not torch.isfinite(out).all():
        raise UserError(
            f"{name} outputs NaN or infinite values on the data's images; the tool needs "
            "finite logits or probabilities of its classes"
        )
    rows_sum = out.sum(1)
    if out.min() >= 0 and out.max() <= 1:
        if (rows_sum - 1).abs().max() < SUMS_TO_ONE:
            return "probabilities"
        if trained:
            raise UserError(
                f"{name} outputs values in [0, 1] whose rows sum to {float(rows_sum.min()):.3g}"
                f"..{float(rows_sum.max()):.3g}, not 1: a sigmoid per class, not one class per "
                "image; export it with logits or a softmax last"
            )
    if out.max() <= SUMS_TO_ONE and out.logsumexp(1).abs().max() < SUMS_TO_ONE:
        return "log-probabilities"
    return "logits"


def outputs_of(model: nn.Module) -> str:
    """What the model outputs, as check_io found it (OUTPUT_KINDS); a model check_io never saw: logits."""
    return getattr(model, "_mnist_probe_outputs", "logits")


def _log_of_probabilities(module: nn.Module, inputs, output: torch.Tensor) -> torch.Tensor:
    """A forward hook: probabilities out, their logs instead (a zero probability as the smallest
    positive float's log, -87.3, not -inf)."""
    return output.clamp_min(torch.finfo(output.dtype).tiny).log()


def read_as_log_probabilities(model: nn.Module, kind: str) -> nn.Module:
    """The model, its outputs turned into log-probabilities once, in place: a GraphModule (an ONNX
    file) whose last node is a softmax gets a log-softmax there (exact, no log of a rounded zero);
    any other model whose outputs are probabilities, a forward hook that takes their log. The module
    paths stay as they were."""
    model._mnist_probe_outputs = kind
    if kind != "probabilities":
        return model
    graph = getattr(model, "graph", None)
    if graph is not None:
        (last,) = [n for n in graph.nodes if n.op == "output"]
        source = last.args[0]
        module = model.get_submodule(source.target) if getattr(source, "op", "") == "call_module" else None
        if isinstance(module, nn.Softmax):
            parent, _, child = source.target.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, child, nn.LogSoftmax(module.dim))
            return model
    model.register_forward_hook(_log_of_probabilities)
    return model


# Which part of a model's output holds the class scores, when it is a container: a Hugging Face
# ModelOutput or any object with .logits, a dict with a "logits" key, or a tuple or list (its first
# element). model.output= names another (a key, attribute or index).
SCORES_KEY = "logits"


def part(out, key: str | int):
    """out[key], out.key, or out[int(key)] of a tuple or list; KeyError where out has no such part."""
    if isinstance(out, Mapping) and key in out:
        return out[key]
    if isinstance(key, str) and not isinstance(out, (tuple, list, Mapping)) and hasattr(out, key):
        return getattr(out, key)
    if isinstance(out, (tuple, list)) and str(key).lstrip("-").isdigit() and -len(out) <= int(key) < len(out):
        return out[int(key)]
    raise KeyError(key)


def parts(out) -> str:
    """What a container output holds, for a refusal: its keys (or indices) and their shapes."""
    items = (
        out.items()
        if isinstance(out, Mapping)
        else enumerate(out)
        if isinstance(out, (tuple, list))
        else ((k, v) for k, v in getattr(out, "__dict__", {}).items() if not k.startswith("_"))
    )
    shown = [
        f"{k}: {'×'.join(map(str, v.shape)) if isinstance(v, torch.Tensor) else type(v).__name__}"
        for k, v in items
    ]
    return ", ".join(shown[:6]) + (f" and {len(shown) - 6} more" if len(shown) > 6 else "")


def scores_key(out, given: str | int | None, name: str) -> str | int | None:
    """Where a model's class scores are in its output `out`: None for a tensor, else `given`
    (model.output=) or, not given, 'logits' (a key or attribute) or 0 (a tuple or list's first
    element); a one-line UserError where it cannot be told or the part named is not there."""
    if isinstance(out, torch.Tensor):
        if given is not None:
            raise UserError(
                f"model.output={given} names a part of {name}'s output, but it outputs one "
                "tensor; drop model.output"
            )
        return None
    what = f"{name} outputs a {type(out).__name__} ({parts(out)})"
    if given is not None:
        try:
            part(out, given)
        except KeyError:
            raise UserError(
                f"{what}, with no part {given!r}; set model.output= to the key, attribute or "
                "index of its class scores"
            ) from None
        return given
    for key in (SCORES_KEY, 0):
        try:
            part(out, key)
            return key
        except KeyError:
            continue
    raise UserError(f"{what}: which are the class scores? set model.output= to their key, attribute or index")


def _scores(module: nn.Module, inputs, output, key: str | int):
    """A forward hook: a container output replaced by its class scores."""
    return part(output, key)


def read_scores(model: nn.Module, key: str | int | None) -> nn.Module:
    """The model, in place, outputting its class scores alone (a forward hook, once, registered before
    any other of the tool's, so probabilities are found in the scores); unchanged for key None."""
    if key is not None and not hasattr(model, "_mnist_probe_scores"):
        model.register_forward_hook(functools.partial(_scores, key=key))
        model._mnist_probe_scores = key
    return model


def scores_in(model: nn.Module) -> str | int | None:
    """Which part of the model's output read_scores takes as its class scores (None: the whole)."""
    return getattr(model, "_mnist_probe_scores", None)


def input_shape(model: nn.Module) -> tuple[int, int, int]:
    """(channels, height, width) of the images the model was checked to read (check_io); MNIST's
    1×28×28 for a model the tool has not checked."""
    return getattr(model, "_mnist_probe_input", SAMPLE_SHAPE)


def needed_input(model: nn.Module, shape: tuple[int, int, int]) -> str:
    """The setting that gives a model what it says it reads, where it differs from what it is given:
    its first convolution's channels, else a side from a timm model's pretrained_cfg, a Hugging Face
    config's image_size or a patch embedding's img_size (a ViT's); '' where nothing is found."""
    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None)
    patches = next((m for m in model.modules() if hasattr(m, "img_size") and hasattr(m, "patch_size")), None)
    sides = [
        getattr(patches, "img_size", None),
        cfg.get("input_size", (None, None))[-1] if isinstance(cfg, dict) else None,
        getattr(getattr(model, "config", None), "image_size", None),
    ]
    side = next((s[-1] if isinstance(s, (tuple, list)) else s for s in sides if s), None)
    declared = getattr(model, "_mnist_probe_model_input", None)
    reads = declared.shape(shape) if declared is not None else shape  # what it is given now
    if conv is not None and conv.in_channels != reads[0]:  # the likelier cause: the size is asked next
        return f"model.input.channels={conv.in_channels}"
    return f"model.input.size={side}" if isinstance(side, int) and side != reads[-1] else ""


def check_io(
    model: nn.Module,
    name: str,
    shape: tuple[int, int, int] = SAMPLE_SHAPE,
    num_classes: int = NUM_CLASSES,
    trained: bool = False,
    output: str | int | None = None,
) -> None:
    """The model reads N×shape images (MNIST's N×1×28×28 by default; through the input it was declared
    with, mnist_probe.inputs) and gives N×num_classes outputs, logits or probabilities, or a one-line
    UserError saying which. A container output (a ModelOutput, a dict, a tuple) is read for its class
    scores from here on (scores_key: `output` names the part); outputs found to be probabilities are
    read as their logs (read_as_log_probabilities). The shape is kept with the model (input_shape)
    for the stages that feed it images of their own."""
    was_training = model.training
    model.eval()
    shown_in = "×".join(map(str, shape))
    try:
        with torch.no_grad():
            x = torch.rand(8, *shape, generator=torch.Generator().manual_seed(0))
            out = model(x.to(device_of(model)))
    except Exception as err:
        first = (str(err).strip().splitlines() or [""])[0][:160]
        needs = needed_input(model, shape)
        advice = (
            f"set {needs}, what it says it reads"
            if needs
            else "declare what it reads with model.input.channels= and model.input.size="
        )
        raise UserError(
            f"{name} cannot read the data's images, N×{shown_in} floats in [0, 1] "
            f"({type(err).__name__}: {first}); {advice}"
        ) from None
    finally:
        model.train(was_training)
    if scores_in(model) is None:
        key = scores_key(out, output, name)
        read_scores(model, key)
        out = out if key is None else part(out, key)
    got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
    if got != (len(x), num_classes):
        shown = "×".join(map(str, got[1:])) if isinstance(got, tuple) else got
        which = (
            f" (its part {scores_in(model)!r}; model.output= names another)"
            if scores_in(model) is not None
            else ""
        )
        raise UserError(
            f"{name} outputs {shown} per image{which}, not {num_classes} values; the tool needs a "
            f"classifier of the data's {num_classes} classes (logits or "
            "probabilities)"
        )
    model._mnist_probe_input = tuple(shape)
    # found once: a converted model outputs log-probabilities from then on
    if not hasattr(model, "_mnist_probe_outputs"):
        read_as_log_probabilities(model, output_kind(out.cpu(), name, trained))
