"""Image folders (data=folder): a small one made here, 3×32×32 colour images in four classes, through
every stage with the study's CNN built for it and with a class of the user's; its refusals; and the
numbers the tool prints against what PyTorch computes from the weights it saved."""

from __future__ import annotations

import json
import logging
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mnist_probe.data import split_tensors
from mnist_probe.errors import UserError
from mnist_probe.keras_cnn import KerasCNN
from mnist_probe.run import run as run_stage
from mnist_probe.schema import typed
from mnist_probe.scoring import accuracy
from mnist_probe.specs import DataSpec
from tests.conftest import make_cfg
from tests.test_any_cnn import cli

CLASSES = ("bar", "block", "cross", "ring")  # sorted: ImageFolder's order is the class index
COLOURS = [(230, 60, 60), (60, 200, 60), (60, 90, 230), (220, 200, 40)]


def make_image_folder(
    root: Path, size: int = 32, grey: bool = False, train: int = 40, test: int = 12
) -> Path:
    """ROOT/{train,test}/CLASS/NNN.png: each class a coloured shape (a bar, a block, a cross, a ring)
    at a random place on dark noise, so a CNN can learn it in a few epochs."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    for split, n in (("train", train), ("test", test)):
        for k, name in enumerate(CLASSES):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                cy, cx = rng.integers(size // 4, 3 * size // 4, 2)
                shape = [
                    np.abs(yy - cy) < 2,
                    (np.abs(yy - cy) < 5) & (np.abs(xx - cx) < 5),
                    (np.abs(yy - cy) < 2) | (np.abs(xx - cx) < 2),
                    np.abs(np.hypot(yy - cy, xx - cx) - 6) < 1.5,
                ][k]
                pixels = rng.integers(0, 40, (size, size, 3)).astype(np.uint8)
                pixels[shape] = COLOURS[k]
                image = Image.fromarray(pixels)
                (image.convert("L") if grey else image).save(root / split / name / f"{i:03d}.png")
    return root


# Every stage, small: 160 training images (20 held out), 48 test images.
FOLDER_RUN = (
    "data=folder",
    "data.val_size=20",
    "train.epochs=4",
    "train.batch_size=16",
    "train.gap_images=40",
    "interpreters.models=[dt,dt@pixels]",
    "interpreters.probes.train_samples=100",
    "interpreters.probes.test_samples=40",
    "shift.models=[dt]",
    "shift.dataset.samples=24",
    "shift.dataset.radius=2",
    "activations.n_codes=48",
    "trainer.progress_bar=false",
    "beyond.images=48",
    "beyond.position_images=48",
    "beyond.attribution_samples=4",
    "beyond.randomisation_draws=2",
    "beyond.maximise_steps=3",
    "+model.filters=8",
    "beyond.shuffled_images=40",
    "beyond.shuffled_epochs=2",
)


def read(run_dir: Path, stage: str) -> dict:
    return json.loads((run_dir / stage / "results.json").read_text())


def test_a_colour_image_folder_through_every_stage_with_the_study_cnn_built_for_it(tmp_path, caplog):
    """3×32×32 images in four classes: the study's CNN is built with 3 input channels, 8×8 maps after
    its two poolings and 4 outputs; the report names the folder's classes; the accuracy it prints is
    PyTorch's on the saved weights; the pixel interpreter reads 3,072 values an image."""
    root = make_image_folder(tmp_path / "shapes")
    cfg = make_cfg(tmp_path / "report", "+experiment=report", f"data.root={root}", *FOLDER_RUN)
    with caplog.at_level(logging.INFO, logger="mnist_probe"):
        result = run_stage(cfg)
    run = Path(cfg.paths.output_dir)
    shift = read(run, "shift")
    assert shift["classes"] == list(CLASSES) and shift["item"] == "image"
    assert [row["image"] for row in shift["every_digit"]] == list(CLASSES)
    per_class = (run / "shift" / "shift_per_class.md").read_text()
    assert all(f"| {name} |" in per_class for name in CLASSES)

    weights = torch.load(read(run, "train")["checkpoint"], weights_only=True)
    assert weights["conv2d_1.weight"].shape == (8, 3, 5, 5)  # built for colour
    assert weights["dense_1.weight"].shape == (256, 8 * 8 * 8)  # 32 -> 16 -> 8
    assert weights["dense_2.weight"].shape == (4, 256)  # four classes
    model = KerasCNN(filters=8, num_classes=4, in_channels=3, input_size=32)
    model.load_state_dict(weights)
    images, labels = split_tensors(typed(make_cfg(tmp_path, f"data.root={root}", *FOLDER_RUN)).data, "scored")
    assert images.shape == (48, 3, 32, 32) and labels.bincount().tolist() == [12] * 4
    assert result["cnn_test_acc"] == accuracy(model.eval(), images, labels)  # what PyTorch computes

    report = (run / "report.md").read_text()
    assert "48 image folder test images" in report and "3×32×32 = 3,072-value image" in report
    assert "The study's:" not in report  # the study's MNIST figures only beside MNIST
    assert "In the study" not in report and "(study 0." not in caplog.text
    sheets = sorted(p.name for p in (run / "activations" / "feature_maps").iterdir())
    assert "conv2d_1_image0_test0.png" in sheets  # named by item and class index
    links = [line for line in report.splitlines() if line.startswith("![conv2d_1]")]
    assert links and (run / links[0].split("(")[1].rstrip(")")).is_file()


OWN_FOLDER_CNN = textwrap.dedent('''
    from torch import nn


    class FolderCNN(nn.Module):
        """A user's CNN that takes the data's channels and class count, and any image size."""

        def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 8):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(),
                                          nn.MaxPool2d(2), nn.Conv2d(width, width, 3, padding=1), nn.ReLU())
            self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 16), nn.ReLU(),
                                      nn.Linear(16, num_classes))

        def forward(self, x):
            return self.head(self.features(x))
''')


def test_a_class_of_ones_own_gets_the_folders_channels_and_classes(tmp_path, monkeypatch):
    """A grey folder of 24×24 images: the user's class is built with in_channels=1 and num_classes=4
    (it takes them and the config leaves them unset); a class fixed to 10 outputs is refused in one
    line before anything trains."""
    root = make_image_folder(tmp_path / "grey", size=24, grey=True)
    (tmp_path / "folder_cnn.py").write_text(OWN_FOLDER_CNN)
    own = ["model._target_=folder_cnn.FolderCNN", f"data.root={root}"]
    light = [a for a in FOLDER_RUN if not a.startswith(("+model", "beyond", "interpreters.probes"))]
    light.append("shift.dataset.enabled=false")  # the grid runs in the test above
    result = cli(tmp_path, tmp_path / "run", "+experiment=shift", *own, *light)
    weights = torch.load(tmp_path / "cache" / f"cnn-{result['cnn_key']}" / "model.pt", weights_only=True)
    assert weights["features.0.weight"].shape == (8, 1, 3, 3)
    assert weights["head.4.weight"].shape == (4, 16)
    sys.path.insert(0, str(tmp_path))
    try:
        from folder_cnn import FolderCNN
    finally:
        sys.path.remove(str(tmp_path))
    model = FolderCNN(in_channels=1, num_classes=4)
    model.load_state_dict(weights)
    spec = DataSpec(format="folder", classes=None, root=str(root), val_size=20)
    images, labels = split_tensors(spec, "scored")
    assert images.shape == (48, 1, 24, 24)
    assert result["cnn_test_acc"] == accuracy(model.eval(), images, labels)

    # in this process (a refusal by the command line leaves no run dir: test_reliability)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="outputs 10 per image, not 4 values"):
        run_stage(make_cfg(tmp_path / "fixed", "+experiment=shift", *own, "+model.num_classes=10", *light))
    assert not list((tmp_path / "fixed" / "cache").glob("cnn-*"))  # refused before any training


def test_a_folder_is_resized_to_data_size_and_read_grey_or_colour_as_asked(tmp_path):
    root = make_image_folder(tmp_path / "shapes", train=3, test=2)
    spec = DataSpec(format="folder", classes=None, root=str(root), size=16, channels=1, val_size=2)
    assert spec.classes == list(CLASSES) and spec.shape == (1, 16, 16)
    assert spec.counts == {"train": 12, "test": 8}
    images, labels = split_tensors(spec, "test")
    assert images.shape == (8, 1, 16, 16) and images.dtype == torch.uint8
    assert labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert DataSpec(format="folder", classes=None, root=str(root), val_size=2).val_size == 2
    assert DataSpec(format="folder", classes=None, root=str(root), val_size=None).val_size == 1  # a tenth
    (root / "train" / "ring" / "001.png").write_bytes(b"not a png")  # not the first: found as it is read
    with pytest.raises(UserError, match=r"cannot decode .*ring/001.png .*replace it with a PNG or JPEG"):
        split_tensors(spec, "train")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (
            lambda r: __import__("shutil").rmtree(r / "test"),
            r"has no test/ folder \(.*test is missing\); data=",
        ),
        (
            lambda r: (r / "test" / "ring").rename(r / "test" / "rings"),
            r"different class folders \(ring, rings",
        ),
        (
            lambda r: [p.unlink() for p in (r / "train" / "bar").iterdir()],
            r"train/bar holds no .png/.jpg/.jpeg",
        ),
        (lambda r: (r / "train" / "bar" / "000.png").write_bytes(b"not a png"), r"cannot read .*000.png"),
    ],
)
def test_a_broken_folder_is_refused_in_one_line_before_any_work(tmp_path, damage, message):
    root = make_image_folder(tmp_path / "shapes", train=3, test=2)
    damage(root)
    with pytest.raises(UserError, match=message):
        typed(make_cfg(tmp_path, "data=folder", f"data.root={root}", "data.val_size=2"))


def test_the_folders_classes_if_given_must_be_its_sub_folders(tmp_path):
    root = make_image_folder(tmp_path / "shapes", train=3, test=2)
    folder = ("data=folder", f"data.root={root}", "data.val_size=2")
    with pytest.raises(UserError, match=r"data.classes=.* is not allowed: null or the folder's classes in"):
        typed(make_cfg(tmp_path, *folder, "data.classes=[a,b,c,d]"))
    with pytest.raises(UserError, match=r"data.channels=2 is not allowed"):
        typed(make_cfg(tmp_path, *folder, "data.channels=2"))
