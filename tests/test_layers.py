"""Any CNN: building it by its import path, the refusals, its layers found (conv layers, the code
vector), its layer table, ONNX files, and the train/validation gap decomposition."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from mnist_probe.errors import UserError
from mnist_probe.gap import gap_accuracies, split_gap
from mnist_probe.hooks import record
from mnist_probe.keras_cnn import KerasCNN
from mnist_probe.lenet import LeNet5
from mnist_probe.model import build_model, check_io, load_model, model_content
from mnist_probe.model_layers import (
    code_layer,
    conv_layers,
    feature_layers,
    layer_table,
    shift_layers,
    spread,
)
from mnist_probe.model_spec import ModelSpec
from mnist_probe.onnx_model import load_onnx
from mnist_probe.outputs import top1_accuracy
from mnist_probe.rows import LayerRow
from tests.conftest import OWN_CNN


class FunctionalHead(nn.Module):
    """A penultimate activation that no module outputs: F.relu in forward()."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.fc1, self.fc2 = nn.Linear(4 * 26 * 26, 16), nn.Linear(16, 10)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(torch.flatten(self.conv(x), 1))))


def digits(n: int = 6) -> torch.Tensor:
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(0))


@torch.no_grad()
def last_linear_from_code(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(the last nn.Linear applied to the recorded code vector, the model's logits)."""
    model.eval()
    layer = code_layer(model)
    code = record(model, x, layer)[layer]
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    return last(code.flatten(1)), model(x)


def test_the_study_cnn_keeps_its_keras_choices():
    model = KerasCNN()
    assert code_layer(model) == "dense_1"
    assert feature_layers(model) == ["conv2d_1", "conv2d_2", "conv2d_3", "conv2d_4", "dropout_2"]  # h 1-8
    assert shift_layers(model) == ["conv2d_2", "conv2d_4", "dropout_2"]  # h = 2, 6, 8
    assert conv_layers(model) == ["conv2d_1", "conv2d_2", "conv2d_3", "conv2d_4"]


@given(st.integers(0, 200), st.one_of(st.none(), st.integers(2, 30)))
def test_a_spread_of_layers_keeps_the_first_and_last_in_order_and_no_more_than_asked(n, most):
    layers = [f"layer{i}" for i in range(n)]
    kept = spread(layers, most)
    assert len(kept) == (n if most is None else min(n, most))
    assert [layers.index(name) for name in kept] == sorted({layers.index(name) for name in kept})
    if n:
        assert kept[0] == layers[0] and kept[-1] == layers[-1]
    if most and n > most:  # evenly: no gap between neighbours more than one longer than another
        gaps = [layers.index(b) - layers.index(a) for a, b in zip(kept, kept[1:], strict=False)]
        assert max(gaps) - min(gaps) <= 1


def test_a_deep_models_convs_are_spread_and_a_models_own_choice_is_kept():
    convs = [nn.Conv2d(1, 1, 3, padding=1) for _ in range(30)]
    deep = nn.Sequential(*convs, nn.Flatten(), nn.Linear(784, 10))
    assert len(conv_layers(deep)) == 30
    assert feature_layers(deep, 12) == shift_layers(deep, 12) == spread(conv_layers(deep), 12)
    assert feature_layers(deep, 12)[0] == "0" and feature_layers(deep, 12)[-1] == "29"
    assert feature_layers(deep) == conv_layers(deep)
    study = KerasCNN()
    assert feature_layers(study, 2) == list(KerasCNN.feature_layers)  # its own choice: all five


def test_the_code_vector_is_what_the_last_linear_reads(own_module):
    """Found by one forward pass: fed to the last nn.Linear, the recorded code vector gives the
    model's logits, for LeNet-5, a user's CNN with BatchNorm and a two-layer head, and a model whose
    penultimate activation is a function in forward() ('fc2:input')."""
    own = build_model(ModelSpec("own_cnn.OwnCNN"))
    functional = FunctionalHead()
    assert code_layer(LeNet5()) == "relu6"
    assert code_layer(own) == "head.2"  # the GELU; Dropout passes that very tensor on in eval mode
    assert code_layer(functional) == "fc2:input"
    x = digits()
    for model in (LeNet5(), own, functional):
        again, logits = last_linear_from_code(model, x)
        assert torch.allclose(again, logits, atol=1e-5), type(model).__name__
    assert conv_layers(own) == feature_layers(own) == ["features.0", "features.4"]


def test_the_layer_table_has_every_module_its_shape_and_parameters():
    rows = layer_table(LeNet5())
    by_name = {r.layer: r for r in rows}
    assert [r.layer for r in rows if r.leaf] == [
        n for n, m in LeNet5().named_modules() if n and not list(m.children())
    ]
    assert by_name["c1"].output == "6×28×28" and by_name["c3"].output == "16×10×10"
    assert by_name["f6"] == LayerRow(layer="f6", type="Linear", output="84", params=120 * 84 + 84, leaf=True)
    total = sum(p.numel() for p in LeNet5().parameters())
    assert sum(r.params for r in rows if r.leaf) == total == 61_706


def test_a_class_is_built_from_its_import_path_with_its_arguments(own_module):
    model = build_model(ModelSpec("own_cnn.OwnCNN", {"width": 4}))
    assert model.features[0].out_channels == 4
    with pytest.raises(UserError, match=r"model._target_=own_cnn.Nope cannot be imported \(AttributeError"):
        build_model(ModelSpec("own_cnn.Nope"))
    with pytest.raises(UserError, match=r"cannot be imported \(ModuleNotFoundError.*PYTHONPATH"):
        build_model(ModelSpec("no_such_package.Net"))
    with pytest.raises(UserError, match=r"does not take \+model.depth=3"):
        build_model(ModelSpec("own_cnn.OwnCNN", {"depth": 3}))
    with pytest.raises(UserError, match="an import path"):
        ModelSpec("OwnCNN")


def test_a_model_that_does_not_read_digits_or_give_ten_logits_is_refused():
    rgb = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(10))
    with pytest.raises(UserError, match=r"^rgb cannot read the data's images, N×1×28×28 .*RuntimeError"):
        check_io(rgb, "rgb")
    five = nn.Sequential(nn.Flatten(), nn.Linear(784, 5))
    with pytest.raises(UserError, match=r"^five outputs 5 per image, not 10 values"):
        check_io(five, "five")
    check_io(LeNet5(), "lenet")  # the right shapes pass


def test_a_state_dict_of_another_class_names_the_keys_that_do_not_fit(tmp_path, own_module):
    path = tmp_path / "lenet.pt"
    torch.save(LeNet5().state_dict(), path)
    with pytest.raises(
        UserError,
        match=r"does not fit OwnCNN \(missing features.0.weight, features.0.bias, "
        r"features.1.weight and \d+ more; unexpected c1.weight",
    ):
        load_model(path, build_model(ModelSpec("own_cnn.OwnCNN")))
    narrow = tmp_path / "narrow.pt"
    torch.save(build_model(ModelSpec("own_cnn.OwnCNN", {"width": 4})).state_dict(), narrow)
    with pytest.raises(UserError, match=r"features.0.weight is 4×1×3×3 in the file, 8×1×3×3 in the model"):
        load_model(narrow, build_model(ModelSpec("own_cnn.OwnCNN")))
    assert path.is_file() and narrow.is_file()  # the user's files are left as they were


def test_the_model_key_covers_arguments_with_defaults_and_the_source(own_module):
    default = model_content(ModelSpec("own_cnn.OwnCNN"))
    assert default == model_content(ModelSpec("own_cnn.OwnCNN", {"width": 8}))  # the default, spelled out
    assert default != model_content(ModelSpec("own_cnn.OwnCNN", {"width": 4}))
    own_module.write_text(OWN_CNN.replace("nn.GELU()", "nn.ReLU()"))  # the class edited
    assert model_content(ModelSpec("own_cnn.OwnCNN"))["source"] != default["source"]


def export(model: nn.Module, path, **kwargs) -> None:
    torch.onnx.export(
        model.eval(),
        (digits(2),),
        str(path),
        input_names=["x"],
        output_names=["logits"],
        dynamic_shapes=({0: torch.export.Dim("n")},),
        verbose=False,
        **kwargs,
    )


@torch.no_grad()
def test_an_onnx_file_from_torchs_exporter_converts_with_gelu_and_batchnorm(tmp_path, own_module):
    """torch 2.14's exporter writes Gelu version 20 and Reshape with allowzero=1, which onnx2torch 1.5
    alone cannot convert; the converted graph computes what the model did, and its layers are found."""
    torch.manual_seed(0)
    model = build_model(ModelSpec("own_cnn.OwnCNN")).eval()
    export(model, tmp_path / "own.onnx")
    import onnx

    ops = {node.op_type for node in onnx.load(str(tmp_path / "own.onnx")).graph.node}
    assert "Gelu" in ops
    converted = load_model(tmp_path / "own.onnx")
    x = digits(5)
    assert torch.allclose(converted(x), model(x), atol=1e-4)
    assert len(conv_layers(converted)) == 2
    again, logits = last_linear_from_code(converted, x)
    assert torch.allclose(again, logits, atol=1e-4)
    # the TorchScript exporter (dynamo=False) writes Gemm and Gelu as functions of their own opset
    torch.onnx.export(
        model,
        (digits(2),),
        str(tmp_path / "ts.onnx"),
        dynamo=False,
        input_names=["x"],
        dynamic_axes={"x": {0: "n"}},
    )
    scripted = load_model(tmp_path / "ts.onnx")
    assert torch.allclose(scripted(x), model(x), atol=1e-4)
    assert code_layer(scripted).endswith("Gelu") and len(conv_layers(scripted)) == 2


def test_an_onnx_file_that_cannot_be_converted_is_refused_naming_the_op(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Det", ["x"], ["y"])],
        "det",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])],
    )
    path = tmp_path / "det.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)]), str(path))
    with pytest.raises(UserError, match=r"uses Det \(ai.onnx opset 20\), which mnist_probe cannot convert"):
        load_onnx(path)
    noise = tmp_path / "noise.onnx"
    noise.write_bytes(b"\x08" + bytes(range(200)))
    with pytest.raises(UserError, match="is not a valid ONNX model"):
        load_onnx(noise)


def test_the_gap_parts_add_up_to_the_gap():
    parts = split_gap(running=0.788, train=0.93, eval_=0.95, clean=0.985, val=0.978)
    assert parts["gap"] == pytest.approx(0.978 - 0.788)
    four = ("lag", "dropout", "augmentation", "generalisation")
    assert sum(parts[p] for p in four) == pytest.approx(parts["gap"])
    assert parts["lag"] == pytest.approx(0.142) and parts["generalisation"] == pytest.approx(-0.007)


def test_measuring_the_gap_changes_no_weight_statistic_or_random_stream(own_module):
    """The train-mode pass runs on a copy, the augmentation on a forked generator: a measured
    training draws what an unmeasured one would."""
    from mnist_probe.data import KerasAugment

    torch.manual_seed(0)
    model = build_model(ModelSpec("own_cnn.OwnCNN")).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    images = (digits(64) * 255).to(torch.uint8)[:, 0]
    labels = torch.arange(64) % 10
    torch.manual_seed(1)
    expected_next = torch.rand(3)
    torch.manual_seed(1)
    acc = gap_accuracies(model, KerasAugment(), images, labels)
    assert torch.equal(torch.rand(3), expected_next)
    # the weights, and BatchNorm's running statistics too
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert model.training and set(acc) == {"train", "eval", "clean"}
    with torch.no_grad():  # eval mode on the clean images: what the network scores on its own
        clean = top1_accuracy(copy.deepcopy(model).eval()(images[:, None].float() / 255), labels)
    assert acc["clean"] == clean
    assert acc == gap_accuracies(model, KerasAugment(), images, labels)  # the same augmented images each time


def test_a_model_refused_by_a_run_leaves_no_cache_entry(tmp_path):
    from mnist_probe.run import run
    from tests.conftest import make_cfg

    cfg = make_cfg(tmp_path, "+experiment=train", "model._target_=torch.nn.Flatten", "data.train_subset=500")
    with pytest.raises(UserError, match=r"^torch.nn.Flatten outputs 784 per image, not 10 values"):
        run(cfg)
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").iterdir())
