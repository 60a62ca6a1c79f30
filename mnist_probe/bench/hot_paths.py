"""The hot paths after training: hooks, streaming to disk, the shift grid, the command line's start-up,
and the interpreters' fits."""

from __future__ import annotations

import json
import logging
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from hydra.utils import instantiate

from mnist_probe.bench.common import alternated, median_seconds
from mnist_probe.hooks import ActivationRecorder
from mnist_probe.interpretation import features_of
from mnist_probe.schema import typed
from mnist_probe.specs import INFERENCE_BATCH
from mnist_probe.stages.adapters import interpreter_spec, trained_cnn
from mnist_probe.translation import grid_predictions, shifted_stack

log = logging.getLogger("mnist_probe.bench")


@torch.no_grad()
def bench_hooks(model, images: torch.Tensor, batch: int, repeats: int, big: int = 1000) -> list[dict]:
    """Inference img/s plain, with ActivationRecorder hooks on all 12 layers (in memory), and plain
    in batches of `big` images: what the forward pass's batch size (INFERENCE_BATCH) buys."""

    def plain(size: int = batch):
        for s in range(0, len(images), size):
            model(images[s : s + size])

    def hooked():
        for s in range(0, len(images), batch):
            with ActivationRecorder(model, "all"):
                model(images[s : s + batch])

    model.eval()
    # Alternate them, so drift in the machine's speed (turbo, other load) hits both alike.
    t_plain, t_hooks, t_big = alternated(
        {"plain": plain, "hooked": hooked, "big": lambda: plain(big)}, repeats
    ).values()
    n = len(images)
    return [
        {"what": f"inference, no hooks, batch {batch}", "value": n / t_plain, "unit": "img/s"},
        {"what": f"inference, no hooks, batch {big}", "value": n / t_big, "unit": "img/s"},
        {"what": f"  batch {batch} / batch {big}", "value": t_big / t_plain, "unit": "x faster"},
        {"what": f"inference, hooks on all 12 layers, batch {batch}", "value": n / t_hooks, "unit": "img/s"},
        {"what": "hook overhead", "value": 100 * (t_hooks / t_plain - 1), "unit": "%"},
    ]


# Peak RSS from /proc's VmHWM (KiB): getrusage's ru_maxrss would carry over the parent's peak
# across fork+exec on Linux, and this process (the in-memory benchmarks) has a large one.
STREAM_SCRIPT = """
import re, sys, time, torch
from mnist_probe.data import load_mnist, to_float
from mnist_probe.keras_cnn import KerasCNN
from mnist_probe.hooks import stream
def hwm():
    return re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1)
images, _ = load_mnist(sys.argv[1], "test")
model = KerasCNN().eval()
before = hwm()
start = time.perf_counter()
stream(model, images, sys.argv[2], "all", batch_size=500, float16=True)
seconds, peak = time.perf_counter() - start, hwm()
with torch.no_grad():  # then a plain forward pass of the same batches, recording nothing: the floor
    start = time.perf_counter()
    for s in range(0, len(images), 500):
        model(to_float(images[s : s + 500]))
print(time.perf_counter() - start, seconds, before, peak)
"""


def bench_streaming(root: str) -> list[dict]:
    """Streaming all 12 layers of the 10k test set to disk (float16), in a subprocess: its peak RSS
    and its time beside a plain forward pass of the same batches."""
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            [sys.executable, "-c", STREAM_SCRIPT, root, tmp], check=True, capture_output=True, text=True
        ).stdout.split()
        disk = sum(f.stat().st_size for f in Path(tmp).glob("*.npy"))
    plain, seconds = (float(v) for v in out[-4:-2])
    before, peak = (int(v) / 1024 for v in out[-2:])
    return [
        {"what": "streaming all layers, 10k test images: peak RSS", "value": peak, "unit": "MiB"},
        {"what": "  of which before recording (torch, data)", "value": before, "unit": "MiB"},
        {"what": "  written to disk (float16)", "value": disk / 2**20, "unit": "MiB"},
        {"what": "  streaming", "value": seconds, "unit": "s"},
        {"what": "  a plain forward pass of the same batches", "value": plain, "unit": "s"},
        {"what": "  streaming / plain forward pass", "value": seconds / plain, "unit": "x"},
    ]


@torch.no_grad()
def bench_shift(model, images: torch.Tensor, radius: int, batch: int, repeats: int) -> list[dict]:
    """The shift grid (translate + forward + softmax, `batch` shifted images a step) against plain
    inference of as many images in the same forward passes (INFERENCE_BATCH images each)."""
    pairs = [(dx, dy) for dx in range(-radius, radius + 1) for dy in range(-radius, radius + 1)]
    stacked = shifted_stack(images, pairs)
    models = {"CNN": None}

    def plain():
        for s in range(0, len(stacked), INFERENCE_BATCH):
            model(stacked[s : s + INFERENCE_BATCH])

    model.eval()
    t_plain = median_seconds(plain, repeats)
    t_shift = median_seconds(
        lambda: grid_predictions(models, model, images, radius, batch, progress=False), repeats
    )
    n = len(stacked)
    return [
        {"what": f"shift grid ±{radius} px, {len(images)} images", "value": n / t_shift, "unit": "img/s"},
        {"what": "plain inference of the same images", "value": n / t_plain, "unit": "img/s"},
        {"what": "shift sweep / plain inference", "value": 100 * t_plain / t_shift, "unit": "%"},
    ]


def first_line_seconds(cmd: list[str], pattern: str | None, env: dict) -> tuple[float, int | None]:
    """Seconds from starting cmd to its exit, or to its first output line matching pattern (then it
    is stopped); and its exit status (None when stopped)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    for line in proc.stdout:
        if pattern and re.search(pattern, line):
            seconds = time.perf_counter() - start
            proc.kill()
            proc.wait()
            return seconds, None
    proc.wait()
    return time.perf_counter() - start, proc.returncode


def bench_startup(repeats: int, overrides: list[str]) -> list[dict]:
    """How long each kind of command takes to answer, a fresh Python process each time: --help, a
    refusal the config makes, a refusal that needs torch (a checkpoint that is no model), and the
    first log line of a run (its stage started)."""
    with tempfile.TemporaryDirectory() as tmp:
        empty = Path(tmp) / "empty.pt"
        empty.write_bytes(b"")
        run = [sys.executable, "-m", "mnist_probe.run"]
        env = {**os.environ, "MNIST_PROBE_CACHE": str(Path(tmp) / "cache")}
        cases = {
            "mnist-probe --help": ([*run, "--help"], None, 0),
            "bad command line -> one-line error (train.epochs=1.5)": (
                [*run, "+experiment=train", "train.epochs=1.5"],
                None,
                2,
            ),
            "a checkpoint that is no model -> one-line error": (
                [*run, "+experiment=train", f"checkpoint={empty}", f"hydra.run.dir={tmp}/run"],
                None,
                2,
            ),
            "a run's first log line (+experiment=train)": (
                [*run, "+experiment=train", *overrides, f"hydra.run.dir={tmp}/run2"],
                r"\]\[mnist_probe",
                None,
            ),
        }
        rows = []
        for what, (cmd, pattern, status) in cases.items():
            times = []
            for _ in range(max(repeats, 1)):
                seconds, code = first_line_seconds(cmd, pattern, env)
                if code != status:  # not the answer meant: the figure would mean nothing
                    raise RuntimeError(f"{what}: expected exit status {status}, got {code}")
                times.append(seconds)
            rows.append({"what": f"start-up: {what}", "value": statistics.median(times), "unit": "s"})
    return rows


def bench_interpreters(cfg, names: list[str]) -> list[dict]:
    """Fit seconds of each interpreter on the CNN's code vectors (fresh fits, not the cache), and its
    test accuracy (the speed levers must leave it within 0.1 point)."""
    c = typed(cfg)
    cnn = trained_cnn(cfg)
    (x, y), (x_test, y_test) = (
        features_of("codes", split, c.data, c.paths.cache, cnn) for split in ("train", "test")
    )
    rows, total = [], 0.0
    for name in names:
        estimator = instantiate(interpreter_spec(cfg, name).estimator)
        start = time.perf_counter()
        estimator.fit(x, y)
        seconds = time.perf_counter() - start
        total += seconds
        acc = 100 * estimator.score(x_test, y_test)
        rows += [
            {"what": f"fit {name} on {len(y)} code vectors", "value": seconds, "unit": "s"},
            {"what": f"  {name}: test accuracy", "value": acc, "unit": "%"},
        ]
    rows.append({"what": f"fit all {len(names)} study interpreters", "value": total, "unit": "s"})
    return rows


def bench_make_run(repo: Path, overrides: list[str] = ()) -> list[dict]:
    """`make run`'s job from a fresh clone of repo's HEAD, the install apart (this interpreter runs the
    clone's code: `python -m` puts its folder first on the import path), with an empty cache and
    machine cache (the precision probe runs, as on a new machine): the wall time, and of it the
    CNN's training and each interpreter's fit as the cache entries recorded them."""
    changed = subprocess.run(
        ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    if changed:
        log.warning("make bench-run times HEAD: the uncommitted changes in %s are not in the clone", repo)
    with tempfile.TemporaryDirectory() as tmp:
        clone = Path(tmp) / "clone"
        subprocess.run(["git", "clone", "--quiet", str(repo), str(clone)], check=True)
        env = {
            **os.environ,
            "MNIST_PROBE_CACHE": str(clone / "cache"),
            "MNIST_PROBE_MACHINE_CACHE": str(Path(tmp) / "machine"),
        }
        cmd = [
            sys.executable,
            "-m",
            "mnist_probe.run",
            "+experiment=shift",
            "hydra.run.dir=run",
            "trainer.progress_bar=false",
            *overrides,
        ]
        start = time.perf_counter()
        done = subprocess.run(cmd, cwd=clone, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if done.returncode:
            raise RuntimeError(f"make run's job failed in the clone: {done.stderr.strip()[-500:]}")
        result = json.loads((clone / "run" / "results.json").read_text())
        metas = {p.parent.name: json.loads(p.read_text()) for p in (clone / "cache").glob("*/meta.json")}
    train = next(m["train_seconds"] for name, m in metas.items() if name.startswith("cnn-"))
    fits = {
        f"{name.split('-')[1]} on {m['train_samples']} {m.get('features', 'images')}": m["fit_seconds"]
        for name, m in metas.items()
        if name.startswith("interp-")
    }
    fitting = sum(fits.values())
    rows = [
        {
            "what": "make run's job from a fresh clone (install apart), wall time",
            "value": seconds,
            "unit": "s",
        },
        {"what": "  of which training the CNN", "value": train, "unit": "s"},
        {"what": "  of which fitting the interpreters", "value": fitting, "unit": "s"},
        {
            "what": "  the rest (start-up, code vectors, tables, the shift grid)",
            "value": seconds - train - fitting,
            "unit": "s",
        },
        {"what": "  the CNN's test accuracy", "value": 100 * result["cnn_test_acc"], "unit": "%"},
    ]
    return rows + [{"what": f"    fit {name}", "value": s, "unit": "s"} for name, s in sorted(fits.items())]
