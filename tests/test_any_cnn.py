"""The whole study on CNNs other than the study's: LeNet-5 (model=lenet5) through every stage, and a
CNN defined outside the package (tests/test_layers.py's OwnCNN, in a temp dir) from the command
line, by its class, by class + state dict, and as an ONNX file."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from mnist_probe.data import split_tensors
from mnist_probe.names import EDGE_CONTROL
from mnist_probe.pages.render import render
from mnist_probe.run import run
from mnist_probe.schema import typed
from mnist_probe.scoring import accuracy
from tests.conftest import REPO, make_cfg, mnist_root
from tests.test_layers import export

# Every stage, as small as it still means something: 1,000 training images, 2 epochs; one quick
# interpreter; 40 images on the shift grid.
TINY = (
    "data.train_subset=1000",
    "data.test_subset=500",
    "data.val_size=500",
    "train.epochs=2",
    "train.batch_size=64",
    "train.gap_images=200",
    "interpreters.models=[dt]",
    "interpreters.probes.train_samples=150",
    "interpreters.probes.test_samples=100",
    "shift.models=[dt]",
    "shift.dataset.samples=20",
    "activations.n_codes=100",
    "trainer.progress_bar=false",
    "beyond.images=100",
    "beyond.position_images=100",
    "beyond.attribution_samples=5",
    "beyond.randomisation_draws=2",
    "beyond.maximise_steps=10",
    "beyond.shuffled_images=100",
    "beyond.shuffled_epochs=40",  # 80 steps: LeNet-5 memorises about half of 100 shuffled labels
)
# The runs that open an existing file: the probes and the shift grid add nothing there.
LIGHT = ("interpreters.probes.enabled=false", "shift.dataset.enabled=false", "beyond.maximise_steps=0")


def read(run_dir: Path, stage: str = "") -> dict:
    return json.loads((run_dir / stage / "results.json").read_text())


def test_lenet5_through_every_stage(tmp_path, caplog):
    page = tmp_path / "docs" / "LENET.md"
    cfg = make_cfg(tmp_path / "lenet", "+experiment=report", "model=lenet5", *TINY, f"report.page={page}")
    with caplog.at_level(logging.INFO, logger="mnist_probe"):
        result = run(cfg)
    out = Path(cfg.paths.output_dir)
    assert result["code_layer"] == "relu6" and read(out, "shift")["code_layer"] == "relu6"
    acts = read(out, "activations")
    assert acts["layers"] == ["c1", "c3"] and acts["code_layer"] == "relu6" and acts["code_dims"] == 84
    assert len(list((out / "activations" / "feature_maps").glob("c3_digit*_test*.png"))) == 10
    interpreted = read(out, "interpreters")
    # the study's figures are its CNN's: none beside LeNet-5's own accuracy or its code vectors' interpreters
    assert interpreted["cnn"]["study_acc"] is None and [r["study_acc"] for r in interpreted["rows"]] == [None]
    probes = [row["layer"] for row in interpreted["probes"]]
    assert probes[0] == "c1" and probes[-1] == "output" and "f6" in probes
    gap = read(out, "train")["gap"]
    assert [row["epoch"] for row in gap] == [0, 1]
    for row in gap:  # the four parts add up to the gap, and the gap is val_acc - train_acc
        parts = row["lag"] + row["dropout"] + row["augmentation"] + row["generalisation"]
        assert abs(parts - row["gap"]) < 1e-9
        assert abs(row["val"] - row["running"] - row["gap"]) < 1e-9
        assert row["dropout"] == 0.0  # LeNet-5 has no dropout: train and eval mode agree
    report = (out / "report.md").read_text()
    assert "relu6" in report and "## The study's conclusions, checked" in report
    # no study figure beside LeNet-5, on its page or in its log; the log says why
    assert (
        "In the study" not in report
        and "The study's:" not in report
        and "its own CNN on MNIST only" in report
        and "For the shift stage's digit (test #" in report  # not "the study's digit": LeNet-5 saw it
    )
    logged = caplog.text
    assert "no study figure: its CNN on MNIST only" in logged and "(study 0." not in logged
    # report.md renders again from page.json alone (no config, no clock): the same page
    assert render(out / "page.json") == out / "report.md" and (out / "report.md").read_text() == report
    head = report.splitlines()[2]  # what each stage took, in the order they ran
    assert re.search(r" min \(train \d+ s, activations \d+ s, interpreters [\d.]+ (s|min), shift ", head)
    assert "beyond " in head
    assert set(json.loads((out / "page.json").read_text())["results"]["stage_seconds"]) == {
        "train",
        "activations",
        "interpreters",
        "shift",
        "beyond",
    }
    assert len(result["conclusions"]) == 4
    for link in [line[line.index("](") + 2 : -1] for line in report.splitlines() if line.startswith("![")]:
        assert (out / link).is_file(), link  # every figure the report shows is there
    beyond = read(out, "beyond")
    assert [a["method"] for a in beyond["attributions"]] == ["saliency", "integrated_gradients", "grad_cam"]
    assert all(a["consistency"][0] > 0.999 for a in beyond["attributions"])  # dy = 0: the same attribution
    assert [p["layer"] for p in beyond["positions"]] == ["c1", "c3", "relu6"]
    assert beyond["cka_layers"] == ["c1", "c3", "relu6"] and np.allclose(beyond["shift_cka"][0], 1.0)
    assert "## Beyond the study" in report and (out / "beyond" / "filters_c3.png").is_file()
    # the data-randomisation test: LeNet-5 again on 100 training images with shuffled labels
    shuffled = beyond["data_randomisation"]
    assert {r["method"] for r in shuffled} == {"saliency", "integrated_gradients", "grad_cam", EDGE_CONTROL}
    assert all(r["mode"] == "data" for r in shuffled) and beyond["memorised_images"] == 100
    # it memorised them: well above the tenth that chance (or a network that learnt nothing) gets
    assert beyond["memorised_accuracy"] > 0.3 and "data-randomisation test" in report
    edge = next(r for r in shuffled if r["method"] == EDGE_CONTROL)
    assert edge["spearman"] > 1 - 1e-6  # the control stays where it was
    assert all((out / "beyond" / name).is_file() for name in ("sanity_sequence.png", "sanity_data.csv"))
    table = run(make_cfg(tmp_path, "+experiment=layers", "model=lenet5"))
    assert table["parameters"] == 61_706 and table["code_layer"] == "relu6"
    # the published page too, from the results file beside it, with the run gone: its figures are the
    # copies made beside it
    published = page.read_text()
    shutil.rmtree(out)
    assert render(page.with_suffix(".json")) == page and page.read_text() == published
    assert published.count("](figures-LENET/") >= 10


def cli(cwd: Path, run_dir: Path, *args: str, expect: int = 0) -> dict | str:
    """`python -m mnist_probe.run ARGS` in cwd, as a user runs it: its results.json; or, where the
    run must fail with status `expect`, what it printed on stderr."""
    env = {**os.environ, "MNIST_ROOT": mnist_root(), "PYTHONPATH": str(REPO)}
    command = [
        sys.executable,
        "-m",
        "mnist_probe.run",
        *args,
        f"paths.cache={cwd / 'cache'}",
        f"hydra.run.dir={run_dir}",
    ]
    proc = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == expect, proc.stderr[-3000:]
    return read(run_dir) if expect == 0 else proc.stdout + proc.stderr


def test_a_cnn_of_ones_own_by_class_state_dict_and_onnx(own_module, tmp_path):
    """Trained from its class (its activations), then opened again from its state dict and from an
    ONNX export of it: each time PyTorch's own test accuracy and the code vector at its penultimate
    layer. (LeNet-5's report above, and the ResNet-18 one in the slow suite, open up a class whole.)"""
    # own_module: own_cnn.py in the working directory (test_folders runs such a class by the command line)
    own = ["model._target_=own_cnn.OwnCNN", "+model.width=4"]
    cfg = make_cfg(tmp_path / "by_class", "+experiment=activations", *own, *TINY, cache=tmp_path / "cache")
    first = run(cfg)
    assert first["code_layer"] == "head.2"  # the GELU before the last Linear
    assert first["layers"] == ["features.0", "features.4"]

    # PyTorch's own evaluation of the trained weights, on the test images the run scored
    from own_cnn import OwnCNN

    model = OwnCNN(width=4)
    model.load_state_dict(
        torch.load(tmp_path / "cache" / f"cnn-{first['cnn_key']}" / "model.pt", weights_only=True)
    )
    model.eval()
    images, labels = split_tensors(typed(make_cfg(tmp_path, *TINY)).data, "scored")
    own_acc = accuracy(model, images, labels)
    assert first["cnn_test_acc"] == own_acc

    torch.save(model.state_dict(), tmp_path / "weights.pt")
    checkpoint = f"checkpoint={tmp_path / 'weights.pt'}"
    second = run(make_cfg(tmp_path, "+experiment=activations", *own, checkpoint, *TINY, *LIGHT))
    assert second["cnn_test_acc"] == own_acc and second["code_layer"] == "head.2"

    export(model, tmp_path / "own.onnx")
    onnx = f"checkpoint={tmp_path / 'own.onnx'}"
    third = run(make_cfg(tmp_path, "+experiment=activations", onnx, *TINY, *LIGHT))
    assert abs(third["cnn_test_acc"] - own_acc) <= 1 / len(labels)  # ONNX's float order may flip one
    assert "gelu" in third["code_layer"].lower()  # the penultimate layer, by its ONNX node's name
    assert third["code_dims"] == 32  # the head's 32 values
