"""DDP over two CPU processes (gloo), through the command line as a user runs it: rank 0 alone
checkpoints and publishes, a killed DDP training resumes, no rank leaves a half-written file.
Slow (about a minute and a half on a 2-core CPU): `make test-slow`."""

import json
import os
import signal
import subprocess
import sys

import pytest
import torch

from tests.conftest import REPO, mnist_root
from tests.test_reliability import next_checkpoint


def ddp_command(tmp_path, run: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "mnist_probe.run",
        "+experiment=train",
        "trainer.strategy=ddp",
        "trainer.devices=2",
        "trainer.accelerator=cpu",
        "data.train_subset=1024",
        "data.test_subset=500",
        "train.epochs=3",
        "train.batch_size=64",
        "trainer.progress_bar=false",
        f"data.root={mnist_root()}",
        f"paths.cache={tmp_path / 'cache'}",
        f"hydra.run.dir={tmp_path / run}",
    ]


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_checkpoints_from_rank_0_and_resumes(tmp_path):
    # A DDP training killed (both processes) once its first checkpoint is on disk.
    proc = subprocess.Popen(
        ddp_command(tmp_path, "run1"),
        cwd=REPO,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    next_checkpoint(proc, tmp_path / "cache")  # the first epoch's, within a deadline
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    staging = next((tmp_path / "cache").glob("cnn-*.partial"))
    entry = staging.with_name(staging.name.removesuffix(".partial"))
    assert not entry.exists()  # never published half way
    # One checkpoint, written by rank 0 alone (a second writer would leave last-v1.ckpt or a temp file).
    assert [p.name for p in (staging / "work").iterdir()] == ["last.ckpt"]
    ckpt = torch.load(staging / "work" / "last.ckpt", map_location="cpu", weights_only=True)
    assert "state_dict" in ckpt and ckpt["global_step"] >= 1  # written after a step, not before any

    again = subprocess.run(
        ddp_command(tmp_path, "run2"), cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert again.returncode == 0, again.stderr[-3000:]
    logs = again.stdout + again.stderr + "".join(p.read_text() for p in (tmp_path / "run2").glob("*.log"))
    assert "resuming interrupted training" in logs
    assert "Starting with 2 processes" in logs and "rank 1: training beside rank 0" in logs
    meta = json.loads((entry / "meta.json").read_text())
    assert meta["world_size"] == 2 and meta["strategy"] == "DDPStrategy" and meta["epochs"] == 3
    assert meta["resumed_after_epochs"] >= 1 and meta["test_images"] == 500 and meta["test_acc"] > 0.5
    assert sorted(p.name for p in entry.iterdir()) == ["meta.json", "model.pt"]
    assert not staging.exists()
    results = json.loads((tmp_path / "run2" / "results.json").read_text())  # rank 0 ran the stage
    assert results["key"] == entry.name.removeprefix("cnn-") and results["test_acc"] == meta["test_acc"]
    # The cached CNN is the same kind of artifact as a one-process one: a plain state dict.
    state = torch.load(entry / "model.pt", weights_only=True)
    assert state["dense_2.weight"].shape == (10, 256)
