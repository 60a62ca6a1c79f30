"""An ONNX file as a PyTorch module (checkpoint=model.onnx), converted by onnx2torch: its nodes become
modules, so forward hooks, every stage and the report work on a model exported from Keras,
TensorFlow, JAX or PyTorch itself.

onnx2torch 1.5 lacks converters for ops that current exporters write at their default opsets (a GELU
exported by torch 2.14 at opset 20 is `Gelu` version 20). Registered here, with onnx2torch's own
decorator: the ops a CNN classifier commonly uses. Any other op it cannot convert is refused in one
line that names it.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from mnist_probe.errors import UserError

# Ops whose versions after onnx2torch's newest converter only widen the types they accept (bfloat16,
# float8, int4): the newest converter serves them unchanged.
TYPE_ONLY = (
    "Conv",
    "MaxPool",
    "GlobalAveragePool",
    "Flatten",
    "Dropout",
    "HardSwish",
    "HardSigmoid",
    "Identity",
    "Transpose",
    "Squeeze",
    "Unsqueeze",
    "Constant",
    "Shape",
    "Cast",
    "Elu",
    "Selu",
    "Softplus",
)
_registered = False


class Gelu(nn.Module):
    """ONNX Gelu (opset 20): exact (erf) or tanh-approximated."""

    def __init__(self, approximate: str = "none") -> None:
        super().__init__()
        self.approximate = approximate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(x, approximate=self.approximate)


class Swish(nn.Module):
    """ONNX Swish (opset 24): x · sigmoid(alpha · x)."""

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__()
        self.alpha = alpha

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.alpha * x)


class GlobalMaxPool(nn.Module):
    """ONNX GlobalMaxPool: the max over every spatial axis, kept as size-1 axes."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.amax(x, dim=tuple(range(2, x.dim())), keepdim=True)


class Reshape(nn.Module):
    """ONNX Reshape from opset 19 (what torch.onnx's exporter writes, with allowzero=1): a 0 in the
    shape copies the input's size there, unless allowzero, where it means size 0."""

    def __init__(self, allowzero: bool) -> None:
        super().__init__()
        self.allowzero = allowzero

    def forward(self, x: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
        sizes = [int(s) for s in shape]
        if not self.allowzero:
            sizes = [x.shape[i] if s == 0 else s for i, s in enumerate(sizes)]
        return torch.reshape(x, sizes)


class Reduce(nn.Module):
    """ONNX ReduceMean and ReduceMax from opset 18, their axes a constant input (before, an attribute)."""

    def __init__(self, op: str, axes: list[int] | None, keepdims: bool) -> None:
        super().__init__()
        self.op, self.axes, self.keepdims = op, axes, keepdims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        axes = tuple(self.axes) if self.axes else tuple(range(x.dim()))
        reduce = torch.mean if self.op == "ReduceMean" else torch.amax
        return reduce(x, dim=axes, keepdim=self.keepdims)


def register_converters() -> None:
    """Add the converters above to onnx2torch's registry (once per process)."""
    global _registered
    if _registered:
        return
    from onnx import defs  # onnx and onnx2torch take ~3 s to import: only for a .onnx checkpoint
    from onnx2torch.node_converters.registry import add_converter, get_converter
    from onnx2torch.utils.common import (
        OnnxMapping,
        OperationConverterResult,
        get_const_value,
        onnx_mapping_from_node,
    )

    def module(make):
        def convert(node, graph):
            return OperationConverterResult(
                torch_module=make(node), onnx_mapping=onnx_mapping_from_node(node)
            )

        return convert

    def since(op: str) -> list[int]:
        schemas = defs.get_all_schemas_with_history()
        return sorted({s.since_version for s in schemas if s.name == op and s.domain == ""})

    def missing(op: str, version: int) -> bool:
        try:
            get_converter(op, version)
            return False
        except NotImplementedError:
            return True

    for op in TYPE_ONLY:
        for version in since(op):
            if missing(op, version) and not missing(op, version - 1):
                add_converter(op, version)(get_converter(op, version - 1))

    def average_pool(node, graph):
        if any(d != 1 for d in node.attributes.get("dilations", [])):
            raise NotImplementedError("AveragePool with dilations")
        return get_converter("AveragePool", 11)(node, graph)

    for version in since("AveragePool"):
        if missing("AveragePool", version):
            add_converter("AveragePool", version)(average_pool)
    add_converter("Gelu", 20)(module(lambda node: Gelu(node.attributes.get("approximate", "none"))))
    for version in since("Swish"):
        add_converter("Swish", version)(module(lambda node: Swish(node.attributes.get("alpha", 1.0))))
    for version in since("Mish"):
        add_converter("Mish", version)(module(lambda node: nn.Mish()))
    for version in since("GlobalMaxPool"):
        add_converter("GlobalMaxPool", version)(module(lambda node: GlobalMaxPool()))

    for version in since("Reshape"):
        if version >= 19 and missing("Reshape", version):
            allowzero = module(lambda node: Reshape(bool(node.attributes.get("allowzero", 0))))
            add_converter("Reshape", version)(allowzero)

    def reduce(node, graph):
        axes = None
        if len(node.input_values) > 1 and node.input_values[1]:
            axes = get_const_value(node.input_values[1], graph).tolist()  # KeyError: computed axes
        if node.attributes.get("noop_with_empty_axes", 0) and not axes:
            raise NotImplementedError(f"{node.operation_type} with noop_with_empty_axes")
        return OperationConverterResult(
            torch_module=Reduce(node.operation_type, axes, bool(node.attributes.get("keepdims", 1))),
            onnx_mapping=OnnxMapping(inputs=(node.input_values[0],), outputs=node.output_values),
        )

    for op in ("ReduceMean", "ReduceMax"):
        for version in since(op):
            if version >= 18 and missing(op, version):
                add_converter(op, version)(reduce)

    _registered = True


def unconvertible(graph, opset: int) -> list[str]:
    """The ops of an ONNX graph onnx2torch has no converter for at that opset (with this module's)."""
    from onnx2torch.node_converters.registry import get_converter

    bad = []
    for node in graph.node:
        try:
            get_converter(node.op_type, opset, node.domain or "")
        except NotImplementedError:
            bad.append(f"{node.op_type} ({node.domain or 'ai.onnx'} opset {opset})")
    return list(dict.fromkeys(bad))


def _constant(model: nn.Module, node) -> torch.Tensor | None:
    """The tensor a graph node holds, if it is a constant (an initializer: a get_attr node)."""
    if getattr(node, "op", None) != "get_attr":
        return None
    value = functools.reduce(getattr, node.target.split("."), model)
    return value if isinstance(value, torch.Tensor) else None


def _bias_of(model: nn.Module, matmul, out_features: int):
    """(the Add node right after a MatMul, its constant bias) when the MatMul's only use adds a
    constant of out_features values; else (None, None)."""
    users = list(matmul.users)
    if len(users) != 1 or users[0].op != "call_module" or len(users[0].args) != 2:
        return None, None
    add = users[0]
    module = model.get_submodule(add.target)
    if type(module).__name__ != "OnnxBinaryMathOperation" or module.math_op_function is not torch.add:
        return None, None
    if getattr(module, "broadcast", None) == 1:  # old-style broadcast along an axis: left as it is
        return None, None
    other = add.args[1] if add.args[0] is matmul else add.args[0]
    bias = _constant(model, other)
    if bias is None or bias.numel() != out_features or bias.shape[-1] != out_features:
        return None, None
    return add, bias.reshape(out_features)


def linear_layers(model: nn.Module) -> nn.Module:
    """A MatMul by a constant 2-d weight, with the Add of a constant bias after it, made one nn.Linear
    (named after the MatMul's node): how tf2onnx and other exporters write a Dense layer. The same
    numbers, and the code-vector search, which looks for linear layers, finds the model's head."""
    graph = getattr(model, "graph", None)
    if graph is None:
        return model
    modules = dict(model.named_modules())
    matmuls = [
        node
        for node in graph.nodes
        if node.op == "call_module" and type(modules.get(node.target)).__name__ == "OnnxMatMul"
    ]
    for node in matmuls:
        weight = _constant(model, node.args[1]) if len(node.args) == 2 else None
        if weight is None or weight.dim() != 2 or not weight.is_floating_point():
            continue
        add, bias = _bias_of(model, node, weight.shape[1])
        linear = nn.Linear(weight.shape[0], weight.shape[1], bias=bias is not None, dtype=weight.dtype)
        with torch.no_grad():
            linear.weight.copy_(weight.T)
            if bias is not None:
                linear.bias.copy_(bias)
        last = add if add is not None else node
        with graph.inserting_before(node):
            fused = graph.call_module(node.target, (node.args[0],))
        last.replace_all_uses_with(fused)
        for dead in (add, node):
            if dead is not None:
                graph.erase_node(dead)
                if dead is add:
                    model.delete_submodule(dead.target)
        model.delete_submodule(node.target)
        model.add_submodule(node.target, linear)
    for node in list(graph.nodes):  # the weights and biases moved into the linear layers
        if node.op == "get_attr" and not node.users:
            graph.erase_node(node)
    graph.lint()
    model.recompile()
    return model


def load_onnx(path: str | Path) -> nn.Module:
    """The ONNX model at path as an nn.Module (a torch.fx GraphModule whose submodules are the graph's
    nodes), or a one-line UserError: not an ONNX file, or an op that cannot be converted (named)."""
    import onnx
    from google.protobuf.message import DecodeError
    from onnx2torch import convert

    register_converters()
    path = Path(path)
    try:
        proto = onnx.load(str(path))
        onnx.checker.check_model(proto)
    except (DecodeError, onnx.checker.ValidationError, ValueError, RuntimeError) as err:
        first = (str(err).strip().splitlines() or [""])[0][:120]
        raise UserError(
            f"checkpoint {path} is not a valid ONNX model ({type(err).__name__}: {first}); "
            "export it again, e.g. with torch.onnx.export or tf2onnx"
        ) from None
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 1)
    bad = unconvertible(proto.graph, opset)
    if bad:
        raise UserError(
            f"checkpoint {path} uses {', '.join(bad)}, which mnist_probe cannot convert to "
            "PyTorch; export the model without it, or as a state dict of its class"
        )
    try:
        return linear_layers(convert(proto))
    except Exception as err:  # a converter refusing an attribute it does not support
        first = (str(err).strip().splitlines() or [""])[0][:160]
        raise UserError(
            f"checkpoint {path} could not be converted to PyTorch ({type(err).__name__}: "
            f"{first}); export the model with plainer ops, or as a state dict"
        ) from None
