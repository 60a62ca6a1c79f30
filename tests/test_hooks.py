import numpy as np
import pytest
import torch

from mnist_probe.data import load_mnist, to_float
from mnist_probe.hooks import ActivationRecorder, class_similarity, record, stream
from mnist_probe.keras_cnn import KerasCNN
from mnist_probe.layer_names import resolve_layers
from mnist_probe.model import LAYER_NAMES
from tests.conftest import mnist_root


@pytest.fixture(scope="module")
def model() -> KerasCNN:
    torch.manual_seed(0)
    return KerasCNN()


@pytest.fixture(scope="module")
def test_images() -> torch.Tensor:
    return load_mnist(mnist_root(), "test")[0]


def no_hooks(model) -> bool:
    return all(not m._forward_hooks for m in model.modules())


def test_layer_selection(model):
    assert resolve_layers(model, "all") == LAYER_NAMES
    assert resolve_layers(model, [10, "conv2d_1", 5]) == ["conv2d_1", "conv2d_3", "dense_1"]
    assert resolve_layers(model, 8) == ["dropout_2"]


@torch.no_grad()
def test_recorded_output_equals_layers_run_by_hand(model, test_images):
    x = to_float(test_images[:16])
    acts = record(model, x, "all")
    model.eval()
    for h, name in enumerate(LAYER_NAMES, start=1):
        assert torch.allclose(acts[name], model.upto(h)(x), atol=1e-5), name


def test_records_in_eval_mode_and_restores_training(model, test_images):
    x = to_float(test_images[:8])
    model.train()
    a = record(model, x, ["dropout_3"])["dropout_3"]
    b = record(model, x, ["dropout_3"])["dropout_3"]
    assert torch.equal(a, b)  # dropout passes its input through, as in Keras predict
    assert model.training


def test_hooks_removed_on_exit_and_on_error(model, test_images):
    with ActivationRecorder(model, "all"):
        assert not no_hooks(model)
    assert no_hooks(model)
    with pytest.raises(ZeroDivisionError), ActivationRecorder(model, "all"):
        raise ZeroDivisionError
    assert no_hooks(model)


def test_record_into_an_earlier_recordings_tensors(model, test_images):
    """out=: the same tensors come back, holding what a fresh recording of the new images holds."""
    layers = ["conv2d_1", "dropout_2", "dense_1"]
    first = record(model, test_images[:100], layers, batch_size=64)
    where = {name: t.data_ptr() for name, t in first.items()}
    fresh = record(model, test_images[100:200], layers, batch_size=64)
    again = record(model, test_images[100:200], layers, batch_size=64, out=first)
    assert again is not first and {name: t.data_ptr() for name, t in again.items()} == where
    for name in layers:
        assert torch.equal(again[name], fresh[name]) and torch.equal(first[name], fresh[name]), name
    with pytest.raises(ValueError, match="same layers"):
        record(model, test_images[:100], ["conv2d_1"], out=first)
    with pytest.raises(ValueError, match=r"needs torch.float32 \(50, 64, 28, 28\)"):
        record(model, test_images[:50], layers, out=first)
    assert no_hooks(model)


def test_streaming_matches_memory(model, test_images, tmp_path):
    images = test_images[:1000]  # batches of 400, 400 and 200
    layers = ["conv2d_3", "dropout_2", "dense_1", "dense_2"]
    paths = stream(model, images, tmp_path, layers, batch_size=400)
    memory = record(model, to_float(images[:300]), layers)
    for name in layers:
        arr = np.load(paths[name], mmap_mode="r")
        assert arr.shape == (1000, *memory[name].shape[1:])
        np.testing.assert_allclose(arr[:300], memory[name].numpy(), atol=1e-5)
        assert np.abs(arr[-1]).sum() > 0  # the last rows were written too
    assert not list(tmp_path.glob(".*partial"))


def test_streaming_float16_and_no_partial_file_on_error(model, test_images, tmp_path):
    paths = stream(model, test_images[:100], tmp_path / "ok", [10], float16=True)
    assert np.load(paths["dense_1"]).dtype == np.float16
    with (
        pytest.raises(RuntimeError, match="rows, expected 100 for each layer"),
        ActivationRecorder(model, [10], tmp_path / "bad", total=100),
    ):
        model(to_float(test_images[:50]))  # stops half way: 50 of 100 rows
    assert not list((tmp_path / "bad").iterdir())


def test_class_similarity_matches_brute_force():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 20)
    codes = np.abs(rng.normal(size=(200, 16))) + np.eye(16)[labels] * 3
    sim, ratio = class_similarity(codes, labels)
    unit = codes / np.linalg.norm(codes, axis=1, keepdims=True)
    cos = unit @ unit.T
    for i, j in [(0, 0), (0, 1), (3, 7), (9, 9)]:
        block = cos[np.ix_(labels == i, labels == j)]
        expected = block[~np.eye(20, dtype=bool)].mean() if i == j else block.mean()
        assert sim[i, j] == pytest.approx(expected)
    assert ratio > 1.5  # each class has its own direction


@torch.no_grad()
def test_hooks_on_any_model_by_its_module_paths():
    """A torchvision ResNet built without weights: layers by their named_modules() paths,
    checked against torchvision's own feature extractor."""
    from torchvision.models import resnet18
    from torchvision.models.feature_extraction import create_feature_extractor

    from mnist_probe import UserError

    torch.manual_seed(0)
    net = resnet18(weights=None, num_classes=10).eval()
    x = torch.rand(2, 3, 64, 64)
    paths = ["layer1.0.conv1", "layer3", "avgpool"]
    acts = record(net, x, paths)
    assert list(acts) == paths  # in the network's order
    expected = create_feature_extractor(net, return_nodes=paths)(x)
    for path in paths:
        assert torch.allclose(acts[path], expected[path], atol=1e-5), path
    assert acts["layer1.0.conv1"].shape == (2, 64, 16, 16)
    everything = resolve_layers(net, "all")
    assert "layer1.0.conv1" in everything and "layer1" not in everything and everything[-1] == "fc"
    with pytest.raises(UserError, match="named_modules"):
        resolve_layers(net, ["layer9.conv"])
    with pytest.raises(UserError, match="named_modules"):
        resolve_layers(net, [10])  # h indices belong to the KerasCNN
    assert no_hooks(net)
