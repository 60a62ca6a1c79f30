"""Your own Keras weights: Keras 2 files (the library's write_keras2) and Keras 3 archives (built
here) in Keras's own layouts with h5py (no TensorFlow), their arrays laid out here independently of
the loader and of save_keras, loaded into the KerasCNN and checked against the model they came from."""

import io
import json
import zipfile

import h5py
import numpy as np
import pytest
import torch

from mnist_probe import UserError
from mnist_probe.data import load_mnist, to_float
from mnist_probe.keras_cnn import KerasCNN
from mnist_probe.keras_weights import KERAS2_LAYERS as KERAS2
from mnist_probe.keras_weights import load_keras, read_layers, save_keras, write_keras2
from mnist_probe.model import load_model
from mnist_probe.stages.adapters import trained_cnn
from tests.conftest import SMALL_FILTERS, make_cfg, mnist_root


def keras_layers(model: KerasCNN) -> dict[str, list[np.ndarray]]:
    """The model's weights as Keras holds them: HWIO kernels, (in, out) dense kernels, and dense_1's
    rows in Keras's H×W×C flatten order. Written independently of the loader."""
    out = {}
    for name, module in model.named_children():
        if isinstance(module, torch.nn.Conv2d):
            kernel = module.weight.detach().permute(2, 3, 1, 0)  # OIHW -> HWIO
        elif isinstance(module, torch.nn.Linear):
            kernel = module.weight.detach().T  # (out, in) -> (in, out)
            if name == "dense_1":  # rows c·49 + h·7 + w  ->  rows h·7C + w·C + c (C channels)
                c = model.conv2d_4.out_channels
                kernel = kernel.reshape(c, 7, 7, -1).permute(1, 2, 0, 3).reshape(49 * c, -1)
        else:
            continue
        out[name] = [kernel.numpy().copy(), module.bias.detach().numpy().copy()]
    return out


def write_keras3(path, layers: dict[str, list[np.ndarray]]) -> None:
    """model.save('model.keras') of Keras 3: a zip of config.json and model.weights.h5, whose
    layers/<name>/vars/{0,1} hold kernel and bias; Keras 3 names them conv2d, conv2d_1, ..."""
    keras3 = {
        "conv2d_1": "conv2d",
        "conv2d_2": "conv2d_1",
        "conv2d_3": "conv2d_2",
        "conv2d_4": "conv2d_3",
        "dense_1": "dense",
        "dense_2": "dense_1",
    }
    kinds = {
        "conv2d": "Conv2D",
        "max_pooling2d": "MaxPooling2D",
        "dropout": "Dropout",
        "flatten": "Flatten",
        "dense": "Dense",
    }
    config = {
        "class_name": "Sequential",
        "config": {
            "name": "sequential",
            "layers": [
                {"class_name": kinds[n.rsplit("_", 1)[0]], "config": {"name": keras3.get(n, n)}}
                for n in KERAS2
            ],
        },
    }
    weights = io.BytesIO()
    with h5py.File(weights, "w") as f:
        for name, (kernel, bias) in layers.items():
            group = f.create_group(f"layers/{keras3[name]}/vars")
            group.create_dataset("0", data=kernel)
            group.create_dataset("1", data=bias)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("config.json", json.dumps(config))
        z.writestr("metadata.json", json.dumps({"keras_version": "3.6.0"}))
        z.writestr("model.weights.h5", weights.getvalue())


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return to_float(load_mnist(mnist_root(), "test")[0][:64])


@pytest.mark.parametrize("suffix, write", [(".h5", write_keras2), (".keras", write_keras3)])
def test_keras_files_load_into_the_same_network(tmp_path, images, suffix, write):
    torch.manual_seed(1)
    original = KerasCNN().eval()
    write(tmp_path / f"model{suffix}", keras_layers(original))
    loaded = load_model(tmp_path / f"model{suffix}")
    for key, value in original.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    with torch.no_grad():
        assert torch.allclose(loaded(images), original(images), atol=1e-6)


def test_dense_1_rows_are_moved_from_keras_flatten_order(tmp_path):
    """One Keras input row of dense_1 set: (h=1, w=2, c=3) is row 1·448 + 2·64 + 3 = 579 in Keras's
    H×W×C order and must land in PyTorch's column 3·49 + 1·7 + 2 = 156. A loader that kept Keras's
    order (or transposed only) would put it in column 579: this test fails for it."""
    layers = keras_layers(KerasCNN())
    layers["dense_1"][0][:] = 0
    layers["dense_1"][0][579, :] = 1.0
    write_keras2(tmp_path / "model.h5", layers)
    weight = load_model(tmp_path / "model.h5").dense_1.weight
    assert torch.nonzero(weight.abs().sum(0)).flatten().tolist() == [156]


@pytest.mark.parametrize("change", ["dense", "missing conv"])
def test_another_architecture_is_one_clear_line(tmp_path, change):
    layers = keras_layers(KerasCNN(dense=128) if change == "dense" else KerasCNN())
    if change == "missing conv":
        del layers["conv2d_4"]
    write_keras2(tmp_path / "model.h5", layers)
    with pytest.raises(UserError, match="not the study's architecture") as err:
        load_model(tmp_path / "model.h5")
    assert "\n" not in str(err.value)
    (tmp_path / "junk.keras").write_bytes(b"not a zip, not hdf5")
    with pytest.raises(UserError, match="could not be read as a Keras file"):
        load_model(tmp_path / "junk.keras")


def test_checkpoint_equals_a_keras_file_opens_up_a_keras_trained_cnn(small_run, tmp_path):
    """checkpoint=model.h5 through the stages: the same test accuracy as the network it holds."""
    cfg, results = small_run
    original = load_model(results["checkpoint"], KerasCNN(filters=SMALL_FILTERS))
    write_keras2(tmp_path / "model.h5", keras_layers(original))
    cnn = trained_cnn(
        make_cfg(
            tmp_path,
            "+experiment=train",
            "data.test_subset=1000",
            f"+model.filters={SMALL_FILTERS}",
            f"checkpoint={tmp_path / 'model.h5'}",
        )
    )
    assert cnn.key.startswith("file-") and cnn.test_acc == pytest.approx(results["test_acc"], abs=1e-9)


def test_save_keras_writes_what_keras_holds_and_reads_back(tmp_path, images):
    model = KerasCNN().eval()
    path = save_keras(model, tmp_path / "out" / "model.h5")
    expected = keras_layers(model)  # the layout built independently above
    written = read_layers(path)
    assert len(written) == 6
    for (kernel, bias), name in zip(
        written, ["conv2d_1", "conv2d_2", "conv2d_3", "conv2d_4", "dense_1", "dense_2"], strict=True
    ):
        np.testing.assert_array_equal(kernel, expected[name][0])
        np.testing.assert_array_equal(bias, expected[name][1])
    back = load_keras(path, KerasCNN())
    with torch.no_grad():
        assert torch.equal(back(images), model(images))
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.h5"]  # no partial file left


def test_save_keras_refuses_another_architecture_in_one_line(tmp_path):
    other = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Flatten(), torch.nn.Linear(2704, 10))
    refusal = r"^save_keras writes the study's KerasCNN only; this model's weighted layers are 0, 2$"
    with pytest.raises(UserError, match=refusal):
        save_keras(other, tmp_path / "model.h5")
    assert list(tmp_path.iterdir()) == []
