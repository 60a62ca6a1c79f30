"""What a classifier outputs, found from its outputs once: logits, probabilities or log-probabilities,
the last two read as log-probabilities from then on, so that every stage takes its outputs as logits
(softmax(log p) = p; cross-entropy on them is the NLL). Also: where a model is, and top-1 accuracy."""

from __future__ import annotations

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
        raise UserError(f"{name} outputs NaN or infinite values on the data's images; the tool needs "
                        "finite logits or probabilities of its classes")  # fmt: skip
    rows_sum = out.sum(1)
    if out.min() >= 0 and out.max() <= 1:
        if (rows_sum - 1).abs().max() < SUMS_TO_ONE:
            return "probabilities"
        if trained:
            raise UserError(f"{name} outputs values in [0, 1] whose rows sum to {float(rows_sum.min()):.3g}"
                            f"..{float(rows_sum.max()):.3g}, not 1: a sigmoid per class, not one class per "
                            "image; export it with logits or a softmax last")  # fmt: skip
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


def input_shape(model: nn.Module) -> tuple[int, int, int]:
    """(channels, height, width) of the images the model was checked to read (check_io); MNIST's
    1×28×28 for a model the tool has not checked."""
    return getattr(model, "_mnist_probe_input", SAMPLE_SHAPE)


def check_io(model: nn.Module, name: str, shape: tuple[int, int, int] = SAMPLE_SHAPE,
             num_classes: int = NUM_CLASSES, trained: bool = False) -> None:  # fmt: skip
    """The model reads N×shape images (MNIST's N×1×28×28 by default) and gives N×num_classes outputs,
    logits or probabilities, or a one-line UserError saying which; outputs found to be probabilities
    are read as their logs from here on (read_as_log_probabilities). The shape is kept with the model
    (input_shape) for the stages that feed it images of their own."""
    was_training = model.training
    model.eval()
    shown_in = "×".join(map(str, shape))
    try:
        with torch.no_grad():
            x = torch.rand(8, *shape, generator=torch.Generator().manual_seed(0))
            out = model(x.to(device_of(model)))
    except Exception as err:
        first = (str(err).strip().splitlines() or [""])[0][:160]
        raise UserError(f"{name} cannot read the data's images, N×{shown_in} floats in [0, 1] "
                        f"({type(err).__name__}: {first}); give it a {shape[0]}-channel "
                        f"{shape[1]}×{shape[2]} input") from None  # fmt: skip
    finally:
        model.train(was_training)
    got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
    if got != (len(x), num_classes):
        shown = "×".join(map(str, got[1:])) if isinstance(got, tuple) else got
        raise UserError(f"{name} outputs {shown} per image, not {num_classes} values; the tool needs a "
                        f"classifier of the data's {num_classes} classes (logits or "
                        "probabilities)")  # fmt: skip
    model._mnist_probe_input = tuple(shape)
    # found once: a converted model outputs log-probabilities from then on
    if not hasattr(model, "_mnist_probe_outputs"):
        read_as_log_probabilities(model, output_kind(out.cpu(), name, trained))
