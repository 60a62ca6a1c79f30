"""A real package: the wheel carries the configs, the console script runs anywhere, and the README's
library example runs as written."""

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from mnist_probe.rows import LayerRow
from tests.conftest import CONF, REPO, SMALL_FILTERS, mnist_root


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(out),
            str(REPO),
        ],
        check=True,
        capture_output=True,
    )
    shutil.rmtree(REPO / "build", ignore_errors=True)  # setuptools' scratch dir in the checkout
    (whl,) = out.glob("mnist_probe-*.whl")
    return whl


def test_wheel_carries_every_config(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    yamls = {f"mnist_probe/conf/{p.relative_to(CONF)}" for p in CONF.rglob("*.yaml")}
    assert len(yamls) >= 14 and yamls <= names, sorted(yamls - names)
    assert {"mnist_probe/conf/__init__.py", "mnist_probe/stages/shift.py", "mnist_probe/run.py"} <= names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "mnist-probe = mnist_probe.run:cli" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_installed_wheel_composes_its_configs_outside_the_checkout(wheel, tmp_path):
    """The wheel unpacked as site-packages would hold it, and nothing of the checkout on the path."""
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    env = {**os.environ, "PYTHONPATH": str(site), "MNIST_ROOT": mnist_root()}
    code = "import mnist_probe.config as c, mnist_probe.run as r; print(c.CONF); print(r.__file__)"
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    conf, module = proc.stdout.split()
    assert Path(conf) == site / "mnist_probe" / "conf" and Path(module).is_relative_to(site)
    proc = subprocess.run(
        [sys.executable, "-m", "mnist_probe.run", "+experiment=shift", "--cfg", "job"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "stage: shift" in proc.stdout and "rf1000:" in proc.stdout


def test_console_script_runs_from_a_directory_outside_the_checkout(small_run, tmp_path):
    """The console script, in a directory of its own, opens a checkpoint and writes its run dir and
    cache there (the CNN trained by the suite's shared fixture: what a user's weights file is)."""
    script = Path(sys.executable).with_name("mnist-probe")
    assert script.is_file(), "pip install -e . makes the console script"
    args = [
        "+experiment=train",
        f"data.root={mnist_root()}",
        "data.test_subset=200",
        "data.val_size=500",
        f"checkpoint={small_run[1]['checkpoint']}",
        f"+model.filters={SMALL_FILTERS}",
        "trainer.progress_bar=false",
    ]
    proc = subprocess.run([str(script), *args], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (results,) = (tmp_path / "outputs" / "runs").glob("*_train/results.json")  # Hydra's run dir, here
    assert '"test_images": 200' in results.read_text()
    assert list((tmp_path / "outputs" / "cache").glob("cnn-file-*/meta.json"))


def readme_example(heading: str = "## Use it as a library") -> str:
    text = (REPO / "README.md").read_text()
    section = text.split(heading, 1)[1]
    return re.search(r"```python\n(.*?)```", section, flags=re.S).group(1)


def test_readme_beyond_calls_run_as_written():
    """The one-call-each block of README's "Beyond the study", on the study's CNN and 40 test digits."""
    import mnist_probe
    from mnist_probe.data import load_mnist

    torch.manual_seed(0)
    images, labels = load_mnist(mnist_root(), "test")
    scope = {name: getattr(mnist_probe, name) for name in mnist_probe.__all__}
    scope |= {"model": mnist_probe.KerasCNN().eval(), "images": images[:40], "labels": labels[:40]}
    lines = readme_example("### Beyond the study").strip().splitlines()
    results = [eval(line.split("#")[0].split(" = ")[-1], scope) for line in lines]  # noqa: S307 - ours
    consistency, (patches, _, field), probes, (names, cka, ci), randomised = results
    assert len(consistency) == 6 and consistency[0] > 0.999
    assert patches.shape == (64, 9, 1, field.size, field.size)
    assert [p.layer for p in probes] == ["conv2d_2", "dense_1"]
    assert names == mnist_probe.LAYER_NAMES and cka.shape == (1, 12)
    assert ci is None  # one minibatch of 40 images: nothing to resample
    # saliency and the edge control, a row per step of the study's CNN's six layers, each of two draws
    assert len(randomised) == 2 * 6 and all(len(r.draw_means) == 2 and r.images == 40 for r in randomised)
    edge = [r for r in randomised if r.method == "edge control"]
    assert all(r.spearman > 0.999 and r.left_out == 0 for r in edge)


def test_readme_own_cnn_example_runs_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MNIST_ROOT", mnist_root())
    scope: dict = {}
    exec(compile(readme_example("## Open up your own CNN"), "README.md", "exec"), scope)  # noqa: S102
    assert scope["code"] == "head.1"
    assert scope["table"][0].layer == "body" and not scope["table"][0].leaf  # containers too
    assert scope["table"][1] == LayerRow("body.0", type="Conv2d", output="8×28×28", params=80, leaf=True)
    probes = {p.layer: p.test_acc for p in scope["probes"]}
    assert list(probes)[0] == "body.0" and list(probes)[-1] == "head.2"
    assert probes["head.2"] > 0.3  # two short epochs: it learned something


def test_readme_library_example_runs_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MNIST_ROOT", mnist_root())
    scope: dict = {}
    exec(compile(readme_example(), "README.md", "exec"), scope)  # noqa: S102 - our own README
    assert 0.5 < scope["cnn"].test_acc <= 1  # it learned something in one short epoch
    assert scope["acts"]["conv2d_1"].shape == (8, 64, 28, 28) and scope["acts"]["dense_1"].shape == (8, 256)
    up3 = scope["up3"]
    assert up3.shape == (100, 1, 28, 28) and torch.all(up3[:, :, -3:] == 0)  # moved up: zeros below
    # the dy = -3 row of the shifted stack is the batch translate moved 3 px up; its accuracy, that row's
    preds, labels = scope["preds"], scope["labels"][:100].numpy()
    assert (preds[3] == scope["cnn_svm"].predict(up3)).all()
    assert scope["up3_accuracy"] == (preds[3] == labels).mean()
    assert scope["shift_consistency"] >= (preds == preds[0]).all(0).mean()  # those never moved always agree
    assert list((tmp_path / "outputs" / "cache").glob("cnn-*/model.pt"))


def test_every_public_name_resolves_to_what_its_module_defines():
    import importlib

    import mnist_probe

    assert len(mnist_probe._API) >= 40 and sorted(mnist_probe.__all__) == mnist_probe.__dir__()
    for name, module in mnist_probe._API.items():
        value = getattr(mnist_probe, name)
        assert value is getattr(importlib.import_module(f"mnist_probe.{module}"), name), name
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        mnist_probe.nope  # noqa: B018
