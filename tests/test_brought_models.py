"""The models and data people bring: torchvision's ResNet-18 (its BasicBlock calls one ReLU twice and
adds its shortcut in place), a CNN that reuses one activation module, a Keras model converted by
tf2onnx (Dense as MatMul + Add, a softmax last), models that output probabilities, and a second data
set of MNIST's format in the same cache."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from mnist_probe.calibration import scores
from mnist_probe.config import compose_config
from mnist_probe.data import split_tensors
from mnist_probe.errors import UserError
from mnist_probe.hooks import output_of, record, stream
from mnist_probe.idx_files import raw_folder
from mnist_probe.layer_names import leaf_layers, resolve_layers
from mnist_probe.model import check_io, load_model, output_kind, outputs_of
from mnist_probe.model_layers import code_layer, layer_table, spread
from mnist_probe.names import FILES
from mnist_probe.onnx_model import load_onnx
from mnist_probe.probes import linear_probes
from mnist_probe.run import run
from mnist_probe.specs import DataSpec
from tests.conftest import make_cfg, mnist_root
from tests.test_any_cnn import cli, read

FIXTURES = Path(__file__).parent / "fixtures"
KERAS_ONNX = FIXTURES / "keras_cnn.onnx"  # tests/fixtures/make_keras_onnx.py made it, and keras_cnn.json
RESNET = '''
from torch import nn
from torchvision.models import resnet18


def resnet18_mnist(num_classes: int = 10) -> nn.Module:
    """torchvision's ResNet-18 with a 1-channel stem."""
    model = resnet18(num_classes=num_classes)
    model.conv1 = nn.Conv2d(1, 64, 7, 2, 3, bias=False)
    return model
'''


def resnet18_mnist() -> nn.Module:
    from torchvision.models import resnet18

    torch.manual_seed(0)
    model = resnet18(num_classes=10)
    model.conv1 = nn.Conv2d(1, 64, 7, 2, 3, bias=False)
    return model.eval()


class SharedAct(nn.Module):
    """One ReLU module applied after each of three layers: a model whose activation module is reused."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 8, 3, stride=2, padding=1)
        self.fc1, self.fc2 = nn.Linear(8 * 14 * 14, 16), nn.Linear(16, 10)
        self.act = nn.ReLU()

    def forward(self, x):
        x = self.act(self.conv2(self.act(self.conv1(x))))
        return self.fc2(self.act(self.fc1(x.flatten(1))))


def images(n: int = 6) -> torch.Tensor:
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(1))


@torch.no_grad()
def test_a_module_called_twice_is_recorded_once_per_call_and_named_so():
    model, x = resnet18_mnist(), images()
    with pytest.raises(
        UserError,
        match=r"'layer1.0.relu' of ResNet runs 2 times in one forward pass: "
        r"name one call, layer1.0.relu:1, layer1.0.relu:2$",
    ):
        record(model, x, ["layer1.0.relu"])
    wanted = ["layer1.0.relu:1", "layer1.0.relu:2", "layer1.0.conv2", "layer1.0.bn2", "layer1.0"]
    acts = record(model, x, wanted)
    block = model.layer1[0]
    assert all(len(a) == len(x) for a in acts.values())
    assert torch.equal(acts["layer1.0.relu:2"], acts["layer1.0"])  # the block's output is its second ReLU
    bn1 = record(model, x, "layer1.0.bn1")["layer1.0.bn1"]
    assert torch.equal(acts["layer1.0.relu:1"], torch.relu(bn1))
    # bn2's output, recorded before the block adds the shortcut into it in place and ReLUs it in place
    assert torch.allclose(acts["layer1.0.bn2"], block.bn2(acts["layer1.0.conv2"]), atol=1e-6)
    assert acts["layer1.0.bn2"].min() < 0
    # torchvision's own feature extractor names the calls relu and relu_1: the same tensors
    from torchvision.models.feature_extraction import create_feature_extractor

    nodes = {
        "layer1.0.relu": "layer1.0.relu:1",
        "layer1.0.relu_1": "layer1.0.relu:2",
        "layer1.0.bn2": "layer1.0.bn2",
    }
    theirs = create_feature_extractor(model, {node: node for node in nodes})(x)
    assert all(torch.equal(theirs[node], acts[ours]) for node, ours in nodes.items())
    with pytest.raises(UserError, match=r"runs once in a forward pass, so 'layer1.0.conv1:2' names no call"):
        resolve_layers(model, "layer1.0.conv1:2")
    assert resolve_layers(model, ["layer1.0.conv1:1", "layer1.0.relu:2:input"]) == [
        "layer1.0.conv1",
        "layer1.0.relu:2:input",
    ]


def test_every_layer_of_a_resnet_has_a_row_per_image_and_the_table_lists_each_call(tmp_path):
    model, x = resnet18_mnist(), images(5)
    names = leaf_layers(model)
    assert "layer1.0.relu:1" in names and "layer1.0.relu:2" in names and "layer1.0.relu" not in names
    assert len(names) == len(set(names))
    acts = record(model, x)  # 'all'
    assert list(acts) == names and all(len(a) == len(x) for a in acts.values())
    files = stream(model, (x[:, 0] * 255).to(torch.uint8), tmp_path, ["layer2.1.relu:1", "layer2.1.relu:2"])
    assert sorted(p.name for p in files.values()) == ["layer2.1.relu_1.npy", "layer2.1.relu_2.npy"]
    rows = [r.layer for r in layer_table(model)]
    assert rows.index("layer1.0.relu:1") < rows.index("layer1.0.conv2") < rows.index("layer1.0.relu:2")
    assert code_layer(model) == "fc:input"
    with torch.no_grad():  # the code vector, fed to the head, gives the model's logits
        code = record(model, x, "fc:input")["fc:input"]
        assert torch.allclose(model.fc(code), model(x), atol=1e-5)


def test_a_reused_activation_module_gives_linear_probes_a_row_per_image():
    torch.manual_seed(0)
    model = SharedAct().eval()
    assert leaf_layers(model) == ["conv1", "act:1", "conv2", "act:2", "fc1", "act:3", "fc2"]
    assert code_layer(model) == "act:3"
    x_train, y_train = images(60), np.arange(60) % 10
    rows = linear_probes(model, x_train, y_train, images(20), np.arange(20) % 10)
    assert [r.layer for r in rows] == leaf_layers(model)
    assert [r.dims for r in rows] == [4 * 784, 4 * 784, 8 * 196, 8 * 196, 16, 16, 10]
    assert all(r.ci[0] <= r.test_acc <= r.ci[1] for r in rows)  # each accuracy inside its own interval
    grad_input = output_of(model, "act:2", images(2).requires_grad_(True))
    assert grad_input.requires_grad and grad_input.shape == (2, 8, 14, 14)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31 - 1), st.floats(0.1, 30.0))
def test_what_a_model_outputs_is_found_from_its_outputs(seed, scale):
    logits = scale * torch.randn(64, 10, generator=torch.Generator().manual_seed(seed))
    assert output_kind(logits.softmax(1), "m") == "probabilities"
    assert output_kind(logits.log_softmax(1), "m") == "log-probabilities"
    assert output_kind(logits + 5.0, "m") == "logits"  # not normalised: logits
    with pytest.raises(UserError, match=r"^m outputs values in \[0, 1\] whose rows .*a sigmoid per class"):
        output_kind(logits.sigmoid(), "m", trained=True)


def test_non_finite_outputs_are_refused():
    with pytest.raises(UserError, match=r"^m outputs NaN or infinite values"):
        output_kind(torch.full((4, 10), float("nan")), "m")


@torch.no_grad()
def test_a_softmax_last_is_read_as_log_probabilities_with_the_numbers_of_its_logits():
    """The same network with and without a softmax last: the tool reads the same accuracy, NLL and
    ECE from both; the module paths stay as they were."""
    torch.manual_seed(0)
    logits_model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10)).eval()
    with_softmax = nn.Sequential(*logits_model, nn.Softmax(1)).eval()
    check_io(logits_model, "logits")
    check_io(with_softmax, "softmax")
    assert outputs_of(logits_model) == "logits" and outputs_of(with_softmax) == "probabilities"
    images_u8, labels = split_tensors(DataSpec(root=mnist_root(), test_subset=500), "scored")
    x = images_u8[:, None].float() / 255
    a, b = scores(logits_model(x), labels), scores(with_softmax(x), labels)
    assert a.accuracy == b.accuracy
    assert a.nll == pytest.approx(b.nll, abs=1e-5) and a.ece == pytest.approx(b.ece, abs=1e-5)
    assert [n for n, _ in with_softmax.named_modules()] == ["", "0", "1", "2"]
    check_io(with_softmax, "again")  # a second check does not take the log twice
    assert torch.allclose(with_softmax(x).exp().sum(1), torch.ones(len(x)), atol=1e-4)


@torch.no_grad()
def test_a_keras_model_through_tf2onnx_has_linear_layers_a_code_layer_and_log_probabilities():
    from onnx2torch import convert

    model = load_model(KERAS_ONNX)
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    assert [n.rsplit("/", 2)[-2] for n in linears] == ["dense_code_1", "probabilities_1"]  # MatMul + Add
    assert code_layer(model).endswith("dense_code_1/Relu")
    assert outputs_of(model) == "probabilities"
    raw = convert(str(KERAS_ONNX)).eval()  # onnx2torch alone: MatMul, Add and the softmax
    x = images(16)
    assert torch.allclose(model(x).exp(), raw(x), atol=1e-6)
    assert torch.allclose(load_onnx(KERAS_ONNX)(x), raw(x), atol=1e-6)
    assert all(len(record(model, x, n)[n]) == len(x) for n in leaf_layers(model))  # no Shape node in 'all'


# Every stage, smaller still than TINY: a ResNet-18 has 60 layers to probe and 20 conv layers.
SLIM = (
    "data.train_subset=500",
    "data.val_size=200",
    "train.epochs=1",
    "train.batch_size=32",
    "train.gap_images=0",
    "interpreters.models=[dt]",
    "interpreters.probes.train_samples=100",
    "interpreters.probes.test_samples=100",
    "shift.models=[dt]",
    "shift.dataset.samples=20",
    "activations.n_codes=100",
    "trainer.progress_bar=false",
    "beyond.images=100",
    "beyond.position_images=100",
    "beyond.attribution_samples=5",
    "beyond.randomisation_draws=2",
    "beyond.maximise_steps=0",
)


KERAS_ONNX_CHECKPOINT = f"checkpoint={KERAS_ONNX}"


def test_the_keras_onnx_file_scores_as_keras_did(tmp_path):
    """As a Keras user runs it: the layer table, the accuracy and ECE of the train stage as Keras
    computed them on the same 10,000 test images (keras_cnn.json), and feature maps named for files."""
    truth = json.loads((FIXTURES / "keras_cnn.json").read_text())
    onnx = KERAS_ONNX_CHECKPOINT
    dense = "StatefulPartitionedCall/keras_functional_cnn_1/dense_code_1/MatMul"
    table = run(make_cfg(tmp_path, "+experiment=layers", onnx, f"code_layer={dense}"))
    assert table["code_layer"] == dense
    with pytest.raises(UserError, match=r"^code_layer: unknown layer 'dense_1' of GraphModule"):
        run(make_cfg(tmp_path, "+experiment=train", onnx, "code_layer=dense_1"))  # the study's name
    train = run(make_cfg(tmp_path / "train", "+experiment=train", onnx, *SLIM))  # all 10,000 scored
    assert train["test_images"] == truth["test_images"] == 10_000
    assert abs(train["test_acc"] - truth["test_acc"]) <= 0.0005
    assert abs(train["calibration"]["before"]["ece"] - truth["ece"]) <= 0.002
    assert train["outputs"] == "probabilities"
    cfg = make_cfg(tmp_path / "activations", "+experiment=activations", onnx, *SLIM, "data.test_subset=100")
    assert run(cfg)["code_layer"].endswith("dense_code_1/Relu")
    maps = list((Path(cfg.paths.output_dir) / "feature_maps").glob("*.png"))
    assert maps and all("/" not in p.name and ":" not in p.name for p in maps)


@pytest.mark.slow  # every stage on it, 10,000 test images scored: half a minute
def test_the_keras_onnx_file_through_every_stage(tmp_path):
    """The report on the Keras file: how it reads its outputs, and its probes spread over its depth."""
    cfg = make_cfg(tmp_path, "+experiment=report", KERAS_ONNX_CHECKPOINT, *SLIM, "data.test_subset=1000")
    result = run(cfg)
    out = Path(cfg.paths.output_dir)
    assert result["code_layer"].endswith("dense_code_1/Relu")
    report = (out / "report.md").read_text()
    assert "probabilities (a softmax last), read as their logs" in report
    probes = read(out, "interpreters")["probes"]
    leaves = leaf_layers(load_model(KERAS_ONNX))  # more than a report probes: spread over the depth
    kept = spread(leaves, compose_config("+experiment=report").max_layers)
    assert len(leaves) > len(kept) and [p["layer"] for p in probes] == kept
    assert [p["h"] for p in probes] == [leaves.index(name) + 1 for name in kept]  # h: its depth


RESNET_CLASS = "model._target_=resnet_mnist.resnet18_mnist"


def test_a_resnet18_by_its_class_has_a_layer_per_call_and_an_ambiguous_code_layer_is_refused(
    tmp_path, monkeypatch
):
    (tmp_path / "resnet_mnist.py").write_text(RESNET)
    monkeypatch.chdir(tmp_path)  # where a user's module is found
    resnet = [RESNET_CLASS]
    with pytest.raises(
        UserError,
        match=r"^code_layer: layer 'layer4.1.relu' of ResNet runs 2 times in one "
        r"forward pass: name one call, layer4.1.relu:1, layer4.1.relu:2$",
    ):
        run(make_cfg(tmp_path, "+experiment=train", *resnet, "code_layer=layer4.1.relu", *SLIM))
    assert not any((tmp_path / "cache").glob("cnn-*"))  # refused before any training
    layers = run(make_cfg(tmp_path, "+experiment=layers", *resnet))
    assert layers["code_layer"] == "fc:input" and layers["parameters"] == 11_175_370
    assert {"layer1.0.relu:1", "layer1.0.relu:2"} <= {row["layer"] for row in layers["layers"]}


@pytest.mark.slow  # every stage on an 11-million-parameter network, each of its 60 layers probed: a minute
def test_resnet18_through_every_stage_from_the_command_line(tmp_path, monkeypatch):
    (tmp_path / "resnet_mnist.py").write_text(RESNET)
    monkeypatch.chdir(tmp_path)  # where a user's module is found
    resnet = [RESNET_CLASS]
    weights = resnet18_mnist()  # the same network as resnet_mnist.py's, seeded weights
    torch.save(weights.state_dict(), tmp_path / "resnet.pt")
    checkpoint = f"checkpoint={tmp_path / 'resnet.pt'}"
    result = cli(
        tmp_path,
        tmp_path / "report",
        "+experiment=report",
        *resnet,
        checkpoint,
        *SLIM,
        "data.test_subset=200",
        "beyond.layers=[conv1,layer1.0.relu:2,fc:input]",
        "shift.layers=[layer1.0.relu:2]",
        "activations.layers=[conv1,layer2.0.relu:2]",
        "max_layers=null",  # every layer probed: each call of a module run twice its own
        "beyond.randomisation_draws=1",  # every layer randomised too: one draw, two methods
        "beyond.methods=[saliency,grad_cam]",
    )
    out = tmp_path / "report"
    assert result["code_layer"] == "fc:input"
    images_u8, labels = split_tensors(DataSpec(root=mnist_root(), test_subset=200), "scored")
    with torch.no_grad():  # PyTorch's own accuracy of those weights on the images the run scored
        own = (weights(images_u8[:, None].float() / 255).argmax(1) == labels).float().mean().item()
    assert read(out, "train")["test_acc"] == pytest.approx(own)
    probed = [p["layer"] for p in read(out, "interpreters")["probes"]]
    assert "layer1.0.relu:1" in probed and "layer1.0.relu:2" in probed and "layer1.0.relu" not in probed
    assert len(probed) == 60
    beyond = read(out, "beyond")
    assert [p["layer"] for p in beyond["positions"]] == ["conv1", "layer1.0.relu:2", "fc:input"]
    assert beyond["filter_layers"] == ["conv1"]
    assert len(list((out / "activations" / "feature_maps").glob("layer2.0.relu_2_digit*"))) == 10
    assert "layer1.0.relu:2" in (out / "report.md").read_text()


def test_a_second_data_set_in_the_same_cache_trains_its_own_cnn(tmp_path):
    """MNIST with its pixels inverted, in MNIST's format: the same settings and cache train a CNN of
    its own and report its accuracy; its files copied to another folder hit the cache."""
    inverted = tmp_path / "inverted"
    raw_folder(inverted).mkdir(parents=True)
    for name in FILES:
        data = np.fromfile(raw_folder(mnist_root()) / name, np.uint8)
        header = 16 if "images" in name else 8
        body = 255 - data[header:] if "images" in name else data[header:]
        (raw_folder(inverted) / name).write_bytes(data[:header].tobytes() + body.tobytes())
    assert DataSpec(root=str(inverted)).content() != DataSpec(root=mnist_root()).content()
    small = [*SLIM, "data.test_subset=500", "+model.filters=8"]
    first = run(make_cfg(tmp_path, "+experiment=train", *small))
    second = run(make_cfg(tmp_path, "+experiment=train", f"data.root={inverted}", *small))
    assert first["key"] != second["key"] and not second["cached"]
    assert second["data_files"] == DataSpec(root=str(inverted)).files() != first["data_files"]
    images, labels = split_tensors(DataSpec(root=str(inverted), test_subset=500), "scored")
    model = load_model(second["checkpoint"], build_small())
    own = (model(images[:, None].float() / 255).argmax(1) == labels).float().mean().item()
    assert second["test_acc"] == pytest.approx(own)  # its own accuracy, on its own images
    elsewhere = tmp_path / "copied"
    shutil.copytree(inverted, elsewhere)
    third = run(make_cfg(tmp_path, "+experiment=train", f"data.root={elsewhere}", *small))
    assert third["key"] == second["key"] and third["cached"] and third["test_acc"] == second["test_acc"]


def build_small() -> nn.Module:
    from mnist_probe.keras_cnn import KerasCNN

    return KerasCNN(filters=8)


def test_a_file_digest_is_memoised_by_path_size_and_time(tmp_path):
    from mnist_probe import cache

    path, memo = tmp_path / "f", tmp_path / "digests.json"
    path.write_bytes(b"one")
    first = cache.file_digest(path, memo)
    assert json.loads(memo.read_text())[str(path.resolve())][2] == first
    path.write_bytes(b"two")  # changed in place: its size and time differ, read again
    assert cache.file_digest(path, memo) != first
