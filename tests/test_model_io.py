"""The models people bring, part two: outputs in a container (a Hugging Face ModelOutput, a tuple,
a dict), inputs the network reads after normalisation, replication to 3 channels or resizing
(model.input), checkpoints that would run code, and MNIST downloaded where it is missing. Every number
the tool gives is compared with what the model's own framework computes on the same images."""

from __future__ import annotations

import gzip
import http.server
import logging
import pickle
import re
import threading
from functools import partial
from pathlib import Path

import pytest
import torch
from torch import nn
from torchvision.models import resnet18
from torchvision.transforms import v2

from mnist_probe.data import split_tensors, to_float
from mnist_probe.errors import UserError
from mnist_probe.fetch import fetch_mnist, md5_of
from mnist_probe.hooks import record
from mnist_probe.idx_files import raw_folder
from mnist_probe.model import build_model, load_model, open_model
from mnist_probe.model_layers import code_layer
from mnist_probe.model_spec import ModelSpec
from mnist_probe.names import FILES
from mnist_probe.run import run
from mnist_probe.scoring import accuracy
from mnist_probe.specs import DataSpec
from tests import user_models
from tests.conftest import make_cfg, mnist_root
from tests.test_any_cnn import cli

# Enough of every stage to run it quickly on an untrained or barely trained model.
QUICK = (
    "data.train_subset=500",
    "data.val_size=200",
    "data.test_subset=500",
    "train.epochs=1",
    "train.batch_size=32",
    "train.gap_images=0",
    "shift.models=[dt]",
    "shift.dataset.samples=20",
    "trainer.progress_bar=false",
)
NORMALISE = ("model.input.mean=[0.1307]", "model.input.std=[0.3081]")  # pytorch/examples' Normalize


def own_scores(output) -> torch.Tensor:
    """The class scores as the model's own framework hands them out."""
    if isinstance(output, torch.Tensor):
        return output
    return output["logits"] if isinstance(output, dict) else output[0]  # a ModelOutput is a dict


def cloned_output(model: nn.Module, path: str, x: torch.Tensor) -> torch.Tensor:
    """A module's output in one forward pass, by a plain forward hook that clones it."""
    kept = []
    handle = model.get_submodule(path).register_forward_hook(lambda m, i, o: kept.append(o.detach().clone()))
    with torch.no_grad():
        model(x)
    handle.remove()
    return kept[0]


@pytest.fixture(scope="module")
def scored():
    """The first 300 test images and labels, as the tool and the plain models read them."""
    images, labels = split_tensors(DataSpec(root=mnist_root(), test_subset=300), "scored")
    return images, labels


CONTAINERS = ["tests.user_models.tiny_hf_resnet", "tests.user_models.TupleNet", "tests.user_models.DictNet"]


@pytest.mark.parametrize("target", CONTAINERS)
def test_a_container_output_is_scored_and_recorded_as_its_own_framework_does(tmp_path, scored, target):
    images, labels = scored
    torch.manual_seed(0)
    plain = getattr(user_models, target.rpartition(".")[2])().eval()
    torch.save(plain.state_dict(), tmp_path / "weights.pt")
    model = open_model(ModelSpec(target), tmp_path / "weights.pt")
    x = to_float(images)
    with torch.no_grad():
        own = own_scores(plain(x))
    # read once where it was opened: the scores alone (its convolutions run channels-last: the same
    # sums in another order)
    assert torch.allclose(model(x), own, atol=1e-5)
    assert torch.equal(model(x).argmax(1), own.argmax(1))
    assert accuracy(model, images, labels) == pytest.approx((own.argmax(1) == labels).float().mean().item())
    layer = code_layer(model)
    recorded = record(model, images, [layer])[layer]
    assert torch.allclose(recorded, cloned_output(plain, layer, x), atol=1e-5)


@pytest.mark.parametrize("target", CONTAINERS)
def test_a_container_output_goes_through_the_shift_stage(tmp_path, target):
    torch.manual_seed(0)
    plain = getattr(user_models, target.rpartition(".")[2])().eval()
    torch.save(plain.state_dict(), tmp_path / "weights.pt")
    result = run(
        make_cfg(
            tmp_path,
            "+experiment=shift",
            f"model._target_={target}",
            f"checkpoint={tmp_path / 'weights.pt'}",
            *QUICK,
        )
    )
    image, label = (t[result["index"]] for t in split_tensors(DataSpec(root=mnist_root()), "test"))
    with torch.no_grad():
        p = own_scores(plain(to_float(image[None]))).softmax(1)[0, label].item()
    unshifted = next(r for r in result["rows"] if r["model"] == "CNN" and (r["dx"], r["dy"]) == (0, 0))
    assert unshifted["p_true"] == pytest.approx(p, abs=1e-6)


def test_which_part_of_a_container_is_the_scores_is_asked_where_it_cannot_be_told(tmp_path):
    with pytest.raises(
        UserError, match=r"outputs 128 per image \(its part 0; model\.output= names another\)"
    ):
        build_model(ModelSpec("tests.user_models.ScoresLastNet"))
    model = build_model(ModelSpec("tests.user_models.ScoresLastNet", output=1))
    x = torch.rand(4, 1, 28, 28)
    assert model(x).shape == (4, 10)
    with pytest.raises(
        UserError, match=r"outputs a dict \(features: 8×128, logits: 8×10\), with no part 'scores'"
    ):
        build_model(ModelSpec("tests.user_models.DictNet", output="scores"))
    with pytest.raises(UserError, match=r"^model\.output=0 names a part of .* but it outputs one tensor"):
        build_model(ModelSpec(output=0))
    with pytest.raises(UserError, match=r"^model.output=1 "):  # refused from the command line too
        run(make_cfg(tmp_path, "+experiment=layers", "model.output=1"))


def test_pytorch_examples_net_with_its_normalisation_scores_as_its_own_test(tmp_path):
    """pytorch/examples' mnist/main.py: Net trained on Normalize((0.1307,), (0.3081,)) by its own
    loop (Adadelta, NLL on its log-probabilities); the tool, told the normalisation, gives the test
    accuracy and shift probabilities the network gives on normalised inputs."""
    images, labels = split_tensors(DataSpec(root=mnist_root(), train_subset=2000, val_size=1000), "train")
    normalise = v2.Normalize((0.1307,), (0.3081,))
    torch.manual_seed(1)
    net = user_models.ExamplesNet()
    optimizer = torch.optim.Adadelta(net.parameters(), lr=1.0)
    for start in range(0, len(images), 64):
        optimizer.zero_grad()
        x = normalise(to_float(images[start : start + 64]))
        nn.functional.nll_loss(net(x), labels[start : start + 64]).backward()
        optimizer.step()
    net.eval()
    torch.save(net.state_dict(), tmp_path / "mnist_cnn.pt")
    examples = ["model._target_=tests.user_models.ExamplesNet", f"checkpoint={tmp_path / 'mnist_cnn.pt'}"]
    result = run(make_cfg(tmp_path, "+experiment=shift", *examples, *NORMALISE, *QUICK, "shift.dy=[0,-3,-6]"))
    test_images, test_labels = split_tensors(DataSpec(root=mnist_root(), test_subset=500), "scored")
    with torch.no_grad():
        own = net(normalise(to_float(test_images))).argmax(1)
    own_acc = (own == test_labels).float().mean().item()
    assert abs(result["cnn_test_acc"] - own_acc) <= 0.0005  # 0.05 points
    image, label = (t[result["index"]] for t in split_tensors(DataSpec(root=mnist_root()), "test"))
    shifted = torch.zeros(1, 1, 28, 28)
    shifted[0, 0, :-3] = to_float(image[3:])  # 3 px up, zero-filled, in pixel space
    with torch.no_grad():
        p = net(normalise(shifted)).exp()[0, label].item()
    at_3 = next(r for r in result["rows"] if r["model"] == "CNN" and (r["dx"], r["dy"]) == (0, -3))
    assert at_3["p_true"] == pytest.approx(p, abs=1e-5)
    # every class's first test image at the run's shifts: a 0 (test #3) 6 px up, as the network sees it
    zero = result["every_digit"][0]
    assert (zero["digit"], zero["test index"]) == ("0", 3) and list(zero)[2:] == ["dy=0", "dy=-3", "dy=-6"]
    image = split_tensors(DataSpec(root=mnist_root()), "test")[0][3]
    shifted = torch.zeros(1, 1, 28, 28)
    shifted[0, 0, :-6] = to_float(image[6:])
    with torch.no_grad():
        p = net(normalise(shifted)).exp()[0, 0].item()
    assert float(zero["dy=-6"].split("%")[0]) / 100 == pytest.approx(p, rel=1e-3, abs=1e-6)
    undeclared = run(make_cfg(tmp_path, "+experiment=shift", *examples, *QUICK))
    assert undeclared["cnn_key"] != result["cnn_key"]  # the input is part of every cache key


def test_a_torchvision_resnet18_reads_grey_digits_as_3_channels_through_train_and_shift(tmp_path):
    resnet = [
        "model._target_=torchvision.models.resnet18",
        "+model.num_classes=10",
        "model.input.channels=3",
        "model.input.size=32",
    ]
    trained = run(make_cfg(tmp_path, "+experiment=train", *resnet, *QUICK))
    cached = next((tmp_path / "cache").glob("cnn-*/model.pt"))
    plain = resnet18(num_classes=10)
    plain.load_state_dict(torch.load(cached, weights_only=True))
    images, labels = split_tensors(DataSpec(root=mnist_root(), test_subset=500), "scored")
    as_imagenet = v2.Compose([v2.Grayscale(3), v2.Resize(32)])  # what a user's own transform does
    with torch.no_grad():
        own = (plain.eval()(as_imagenet(to_float(images))).argmax(1) == labels).float().mean().item()
    assert trained["test_acc"] == pytest.approx(own, abs=1e-6)  # a count of 500: steps of 0.002
    shifted = run(make_cfg(tmp_path, "+experiment=shift", *resnet, *QUICK))
    assert shifted["cnn_key"] == trained["key"] and shifted["cnn_test_acc"] == trained["test_acc"]


def test_a_timm_model_with_timms_normalisation_scores_as_timm_computes(tmp_path, caplog):
    """A timm ResNet built by name, reading grey digits as 3 channels at 32 px, normalised by the mean
    and std timm declares for it: the run's accuracy and cross-entropy are timm's model on the same
    tensors, normalised by timm's own data config."""
    timm = pytest.importorskip("timm")
    from timm.data import resolve_data_config

    def listed(numbers) -> str:
        return "[" + ",".join(map(str, numbers)) + "]"

    config = resolve_data_config(model=timm.create_model("resnet10t", num_classes=10))
    model = [
        "model._target_=timm.create_model",
        "+model.model_name=resnet10t",
        "+model.num_classes=10",
        "model.input.channels=3",
        "model.input.size=32",
        f"model.input.mean={listed(config['mean'])}",
        f"model.input.std={listed(config['std'])}",
    ]
    trained = run(make_cfg(tmp_path, "+experiment=train", *model, *QUICK))
    plain = timm.create_model("resnet10t", num_classes=10)
    plain.load_state_dict(torch.load(next((tmp_path / "cache").glob("cnn-*/model.pt")), weights_only=True))
    images, labels = split_tensors(DataSpec(root=mnist_root(), test_subset=500), "scored")
    as_timm = v2.Compose([v2.Grayscale(3), v2.Resize(32), v2.Normalize(config["mean"], config["std"])])
    with torch.no_grad():
        logits = plain.eval()(as_timm(to_float(images)))
    own_acc = (logits.argmax(1) == labels).float().mean().item()
    assert trained["test_acc"] == pytest.approx(own_acc, abs=1e-6)  # steps of 0.002
    own_loss = torch.nn.functional.cross_entropy(logits, labels).item()
    assert trained["confidence"]["cross_entropy"] == pytest.approx(own_loss, rel=1e-4)
    unnormalised = run(make_cfg(tmp_path / "plain", "+experiment=train", *model[:5], *QUICK))
    assert unnormalised["key"] != trained["key"]  # the normalisation is part of what was trained
    # its weights brought as a checkpoint without the normalisation: the run says what to set
    torch.save(plain.state_dict(), tmp_path / "timm.pt")
    brought = [*model[:5], f"checkpoint={tmp_path / 'timm.pt'}", *QUICK]
    with caplog.at_level(logging.WARNING, logger="mnist_probe"):
        run(make_cfg(tmp_path / "brought", "+experiment=train", *brought))
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(said) == 1 and said[0].endswith(f"set {model[5]} {model[6]}"), said
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="mnist_probe"):
        again = run(make_cfg(tmp_path / "declared", "+experiment=train", *brought, *model[5:]))
    assert not [r for r in caplog.records if "pretrained_cfg" in r.getMessage()]
    assert again["test_acc"] == trained["test_acc"]


def test_only_grey_images_are_replicated_to_more_channels(tmp_path):
    folder = ["data=folder", f"data.root={colour_folder(tmp_path)}", "data.val_size=1"]
    with pytest.raises(UserError, match=r"^model\.input\.channels=1 is not allowed: null or 3: only grey"):
        run(make_cfg(tmp_path, "+experiment=layers", *folder, "model.input.channels=1"))
    with pytest.raises(
        UserError, match=r"^model\.input\.mean=\[0\.5, 0\.5\] is not allowed: one number, or "
    ):
        run(
            make_cfg(
                tmp_path,
                "+experiment=layers",
                *folder,
                "model.input.mean=[0.5,0.5]",
                "model.input.std=[0.2,0.2]",
            )
        )
    with pytest.raises(
        UserError, match=r"^model\.input\.std=None is not allowed: mean and std given together"
    ):
        run(make_cfg(tmp_path, "+experiment=layers", "model.input.mean=[0.5]"))


def colour_folder(tmp_path: Path) -> Path:
    """A tiny image folder of colour images: two classes of random RGB PNGs in train/ and test/."""
    from torchvision.io import write_png

    root = tmp_path / "colour"
    for split in ("train", "test"):
        for name in ("a", "b"):
            (root / split / name).mkdir(parents=True)
            for i in range(3):
                write_png(
                    torch.randint(0, 255, (3, 16, 16), dtype=torch.uint8),
                    str(root / split / name / f"{i}.png"),
                )
    return root


def test_a_model_that_needs_another_input_size_is_refused_naming_the_setting():
    vit = {
        "_target_": "timm.create_model",
        "model_name": "vit_tiny_patch16_224",
        "in_chans": 1,
        "num_classes": 10,
        "depth": 1,
    }
    with pytest.raises(UserError, match=r"set model\.input\.size=224, what it says it reads$"):
        build_model(ModelSpec.of(vit))
    timm_resnet = {"_target_": "timm.create_model", "model_name": "resnet18", "num_classes": 10}
    with pytest.raises(UserError, match=r"set model\.input\.channels=3, what it says it reads$"):
        build_model(ModelSpec.of(timm_resnet))
    model = build_model(ModelSpec.of({**vit, "input": {"size": 224}}))
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)


class Sneaky:
    """An object whose unpickling would run code."""

    def __reduce__(self):
        return (print, ("this ran",))


@pytest.mark.parametrize("how", ["pickle.dump", "torch legacy", "torch zip"])
def test_a_checkpoint_that_would_run_code_is_refused_in_one_line_before_any_work(tmp_path, how):
    path = tmp_path / "model.pt"
    state = {"conv.weight": torch.zeros(1), "sneaky": Sneaky()}
    if how == "pickle.dump":
        path.write_bytes(pickle.dumps(state, protocol=4))
    else:
        torch.save(state, path, _use_new_zipfile_serialization=how == "torch zip")
    said = cli(tmp_path, tmp_path / "run", "+experiment=train", f"checkpoint={path}", expect=2)
    lines = said.strip().splitlines()
    assert len(lines) == 1, said
    assert lines[0].startswith(f"error: checkpoint {path} holds pickled Python objects (")
    assert re.search(r"objects \((__builtin__|builtins)\.print", lines[0])  # named, not run
    assert "this ran" not in said and "Warning" not in said
    assert not (tmp_path / "cache").exists() and not (tmp_path / "run").exists()
    with pytest.raises(UserError, match="holds pickled Python objects"):  # the library refuses it too
        load_model(path)


def serve(folder: Path):
    """A local HTTP server of folder's files, in a thread: (its address, a function that stops it)."""
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return f"http://127.0.0.1:{server.server_address[1]}/", server.shutdown


def test_mnist_is_fetched_where_it_is_missing_and_refused_in_one_line_where_it_cannot_be(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for name in FILES:  # the four files, gzipped as the mirrors serve them
        (mirror / f"{name}.gz").write_bytes(gzip.compress((raw_folder(mnist_root()) / name).read_bytes(), 1))
    url, stop = serve(mirror)
    try:
        where = fetch_mnist(tmp_path / "data", mirrors=["http://127.0.0.1:9/", url])  # the first refuses
        assert where == raw_folder(tmp_path / "data")
        assert {p.name: md5_of(p) for p in where.iterdir()} == FILES
        assert len(split_tensors(DataSpec(root=str(tmp_path / "data"), test_subset=10), "scored")[0]) == 10
        bad = (mirror / "t10k-labels-idx1-ubyte.gz").read_bytes()
        (mirror / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(bad[:-1] + b"\x00"))
        with pytest.raises(UserError, match=r"^MNIST is not in .* md5 [0-9a-f]{32}, not MNIST's") as err:
            fetch_mnist(tmp_path / "other" / "data", mirrors=[url])
    finally:
        stop()
    assert "\n" not in str(err.value) and "put its four files" in str(err.value)
    assert not (tmp_path / "other").exists()  # nothing left behind
    with pytest.raises(UserError, match=r"^MNIST is not in .*; without internet, put its four files"):
        fetch_mnist(tmp_path / "offline", mirrors=["http://127.0.0.1:9/"])
