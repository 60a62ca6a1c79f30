"""`make bench`: throughput and memory of the hot paths, as JSON and a markdown table in outputs/bench/.

Not a test: it measures and reports; nothing here asserts a time. Medians of several repeats.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from torch.utils.flop_counter import FlopCounterMode

from mnist_probe.cache import atomic_write, write_json
from mnist_probe.config import compose_config
from mnist_probe.data import load_mnist, to_float
from mnist_probe.hooks import ActivationRecorder
from mnist_probe.interpretation import features_of
from mnist_probe.machine import cpu_model
from mnist_probe.precision import fastest, measure, train_step
from mnist_probe.schema import typed
from mnist_probe.stages.adapters import interpreter_spec, trained_cnn
from mnist_probe.tables import markdown_table, write_table
from mnist_probe.training import accuracy, make_datamodule, make_lit, make_trainer
from mnist_probe.translation import grid_predictions, shifted_stack

log = logging.getLogger("mnist_probe.bench")


def on_gpu() -> bool:
    return torch.cuda.is_available()


def machine() -> dict:
    """CPU model, cores, threads and library versions: the context every figure needs."""
    gpu = torch.cuda.get_device_name(0) if on_gpu() else None
    # The vector width torch's and oneDNN's kernels use: the CPU's, unless capped (ATEN_CPU_CAPABILITY,
    # ONEDNN_MAX_CPU_ISA) to run an AVX-512 machine with an AVX2 machine's kernels.
    capped = {k: os.environ[k] for k in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA") if os.environ.get(k)}
    return {"cpu": cpu_model(), "cores": torch.get_num_threads(), "gpu": gpu, "torch": torch.__version__,
            "python": platform.python_version(), "kernels": torch.backends.cpu.get_cpu_capability(),
            "capped": capped, "auto_precision": fastest()["chosen"]}  # fmt: skip


def median_seconds(fn, repeats: int, warm: bool = True) -> float:
    """Median wall time of fn() over max(repeats, 1) calls, after one warm-up call if warm."""
    if warm:
        fn()
    times = []
    for _ in range(max(repeats, 1)):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@torch.no_grad()
def bench_hooks(model, images: torch.Tensor, batch: int, repeats: int) -> list[dict]:
    """Inference img/s plain, and with ActivationRecorder hooks on all 12 layers (in memory)."""

    def plain():
        for s in range(0, len(images), batch):
            model(images[s : s + batch])

    def hooked():
        for s in range(0, len(images), batch):
            with ActivationRecorder(model, "all"):
                model(images[s : s + batch])

    model.eval()
    # Alternate the two, so drift in the machine's speed (turbo, other load) hits both alike.
    plain(), hooked()
    t_plain, t_hooks = [], []
    for _ in range(repeats):
        t_plain.append(median_seconds(plain, 0, warm=False))
        t_hooks.append(median_seconds(hooked, 0, warm=False))
    t_plain, t_hooks = statistics.median(t_plain), statistics.median(t_hooks)
    n = len(images)
    return [
        {"what": "inference, no hooks", "value": n / t_plain, "unit": "img/s"},
        {"what": "inference, hooks on all 12 layers", "value": n / t_hooks, "unit": "img/s"},
        {"what": "hook overhead", "value": 100 * (t_hooks / t_plain - 1), "unit": "%"},
    ]  # fmt: skip


# Peak RSS from /proc's VmHWM (KiB): getrusage's ru_maxrss would carry over the parent's peak
# across fork+exec on Linux, and this process (the in-memory benchmarks) has a large one.
STREAM_SCRIPT = """
import re, sys
from mnist_probe.data import load_mnist
from mnist_probe.model import KerasCNN
from mnist_probe.hooks import stream
def hwm():
    return re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1)
images, _ = load_mnist(sys.argv[1], "test")
before = hwm()
stream(KerasCNN(), images, sys.argv[2], "all", batch_size=500, float16=True)
print(before, hwm())
"""


def bench_streaming(root: str) -> list[dict]:
    """Peak RSS of streaming all 12 layers of the 10k test set to disk (float16), in a subprocess."""
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", STREAM_SCRIPT, root, tmp], check=True,
                             capture_output=True, text=True).stdout.split()  # fmt: skip
        seconds = time.perf_counter() - start
        disk = sum(f.stat().st_size for f in Path(tmp).glob("*.npy"))
    before, peak = (int(v) / 1024 for v in out[-2:])
    return [
        {"what": "streaming all layers, 10k test images: peak RSS", "value": peak, "unit": "MiB"},
        {"what": "  of which before recording (torch, data)", "value": before, "unit": "MiB"},
        {"what": "  written to disk (float16)", "value": disk / 2**20, "unit": "MiB"},
        {"what": "  wall time", "value": seconds, "unit": "s"},
    ]  # fmt: skip


@torch.no_grad()
def bench_shift(model, images: torch.Tensor, radius: int, batch: int, repeats: int) -> list[dict]:
    """The shift grid (translate + forward + softmax) against plain inference of as many images."""
    pairs = [(dx, dy) for dx in range(-radius, radius + 1) for dy in range(-radius, radius + 1)]
    stacked = shifted_stack(images, pairs)
    models = {"CNN": None}

    def plain():
        for s in range(0, len(stacked), batch):
            model(stacked[s : s + batch])

    model.eval()
    t_plain = median_seconds(plain, repeats)
    t_shift = median_seconds(
        lambda: grid_predictions(models, model, images, radius, batch, progress=False), repeats
    )
    n = len(stacked)
    return [
        {"what": f"shift grid ±{radius} px, {len(images)} images", "value": n / t_shift, "unit": "img/s"},
        {"what": "plain inference of the same batches", "value": n / t_plain, "unit": "img/s"},
        {"what": "shift sweep / plain inference", "value": 100 * t_plain / t_shift, "unit": "%"},
    ]  # fmt: skip


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
            "bad command line -> one-line error (train.epochs=1.5)":
                ([*run, "+experiment=train", "train.epochs=1.5"], None, 2),
            "a checkpoint that is no model -> one-line error":
                ([*run, "+experiment=train", f"checkpoint={empty}", f"hydra.run.dir={tmp}/run"], None, 2),
            "a run's first log line (+experiment=train)":
                ([*run, "+experiment=train", *overrides, f"hydra.run.dir={tmp}/run2"], r"\]\[mnist_probe",
                 None),
        }  # fmt: skip
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


class StepClock(pl.Callback):
    """perf_counter() at the start of every training batch: a gap holds everything a step costs
    (data, augmentation, forward, backward, optimiser, logging)."""

    def __init__(self) -> None:
        self.stamps: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.stamps.append(time.perf_counter())


def rate(stamps: list[float], batch: int, warmup: int) -> float:
    """Images/s over the steps after the first `warmup` (one-off costs: allocation, oneDNN plans)."""
    kept = stamps[warmup:]
    return batch * (len(kept) - 1) / (kept[-1] - kept[0])


def lightning_rate(cfg, precision: str, steps: int, warmup: int, log_dir: str) -> float:
    """Training img/s through the project's own path: train.make_lit/make_trainer, as in a run."""
    pl.seed_everything(cfg.seed, verbose=False)
    c = typed(cfg)
    clock = StepClock()
    trainer = make_trainer(
        c.train, c.trainer, Path(log_dir), Path(log_dir) / "work", precision=precision,
        max_steps=steps + warmup + 1, limit_val_batches=0, enable_progress_bar=False, extra_callbacks=[clock],
    )  # fmt: skip
    trainer.fit(make_lit(c.train, c.model), datamodule=make_datamodule(c.data, c.train))
    return rate(clock.stamps, cfg.train.batch_size, warmup)


def plain_rate(cfg, precision: str, steps: int, warmup: int) -> float:
    """Training img/s of a minimal PyTorch loop: same model, batches, augmentation and precision."""
    pl.seed_everything(cfg.seed, verbose=False)
    device = torch.device("cuda" if on_gpu() else "cpu")
    c = typed(cfg)
    dm = make_datamodule(c.data, c.train)
    dm.setup()
    dm.hold_on(device)  # on a GPU, the images there once, as in the Lightning path
    model = make_lit(c.train, c.model).model.to(device).train()
    optimizer = instantiate(cfg.train.optimizer)(model.parameters())
    augment = dm.augment.to(device)
    bf16 = precision.startswith("bf16")
    stamps = []
    for x, y in dm.train_dataloader():
        stamps.append(time.perf_counter())
        if len(stamps) > steps + warmup:
            break
        train_step(model, optimizer, augment(to_float(x.to(device))), y.to(device), bf16)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return rate(stamps, cfg.train.batch_size, warmup)


def flops_per_image(model, batch: int = 8) -> tuple[float, float]:
    """FLOPs of one image forward, and forward+backward, counted by torch's FlopCounterMode."""
    x = torch.rand(batch, 1, 28, 28)
    with FlopCounterMode(display=False) as fwd:
        model(x)
    with FlopCounterMode(display=False) as both:
        model(x).sum().backward()
    return fwd.get_total_flops() / batch, both.get_total_flops() / batch


def matmul_peak(dtype: torch.dtype, n: int, repeats: int) -> float:
    """GFLOP/s of an n x n matmul at dtype: what this machine's BLAS reaches, the practical roof.
    n shrinks where one 256 x 256 product is already slow (an emulated dtype), so the probe stays
    seconds long; a slow probe reads low, and bench_training says so rather than print > 100%."""
    device = "cuda" if on_gpu() else "cpu"

    def product(size: int):
        a, b = (torch.rand(size, size, device=device, dtype=dtype) for _ in range(2))

        def mm():
            a @ b
            if device == "cuda":
                torch.cuda.synchronize()

        return mm

    small = median_seconds(product(256), 1)
    n = min(n, max(256, int(256 * (0.25 / max(small, 1e-9)) ** (1 / 3))))  # ~0.25 s per product
    return 2 * n**3 / median_seconds(product(n), repeats) / 1e9


def bench_precision() -> tuple[list[dict], dict]:
    """What precision auto picks here: a fresh probe of both (not the cached one) and the choice."""
    fresh, kept = measure(), fastest()
    rows = [{"what": f"precision probe: train {p} (batch 32, 4 steps)", "value": r, "unit": "img/s"}
            for p, r in fresh["rates"].items()]  # fmt: skip
    if len(fresh["rates"]) == 1:  # bf16 left out: emulated on this CPU (precision.emulated_bf16)
        capability = torch.backends.cpu.get_cpu_capability()
        what = f"precision auto picks {kept['chosen']}, bf16 not measured (emulated on {capability} kernels)"
        rows.append({"what": what, "value": fresh["rates"][fresh["chosen"]], "unit": "img/s"})
        return rows, fresh["rates"]
    slower = min(fresh["rates"].values())
    picks = f"precision auto picks {kept['chosen']} (the cached pick; this probe: {fresh['chosen']})"
    rows.append({"what": picks, "value": fresh["rates"][fresh["chosen"]] / slower,
                 "unit": "x the slower"})  # fmt: skip
    return rows, fresh["rates"]


# A precision the probe found this many times slower than the fastest gets a short measurement.
FAR_SLOWER = 3.0


def bench_training(
    cfg, precisions: list[str], steps: int, warmup: int, repeats: int, probe: dict[str, float] | None = None
) -> list[dict]:  # fmt: skip
    """Lightning vs plain loop img/s per precision, and what that is in GFLOP/s of the matmul roof.
    A precision the probe found far slower here (emulated) is measured briefly, and marked so."""
    forward_flops, train_flops = flops_per_image(instantiate(cfg.model))
    rows = [
        {"what": "FLOPs per image, forward", "value": forward_flops / 1e6, "unit": "MFLOP"},
        {"what": "FLOPs per image, forward + backward", "value": train_flops / 1e6, "unit": "MFLOP"},
    ]
    best = max(probe.values()) if probe else None
    for precision in [p for p in precisions if not probe or p in probe]:  # not: emulated, unmeasured
        slow = bool(probe) and probe[precision] * FAR_SLOWER < best
        n_steps, n_warmup, n_repeats = (2, 1, 1) if slow else (steps, warmup, repeats)
        note = f" [{best / probe[precision]:.0f}x slower here: 2 steps only]" if slow else ""
        light, plain = [], []
        with tempfile.TemporaryDirectory() as tmp:
            for _ in range(n_repeats):  # alternate, so drift in the machine's speed hits both alike
                light.append(lightning_rate(cfg, precision, n_steps, n_warmup, tmp))
                plain.append(plain_rate(cfg, precision, n_steps, n_warmup))
        light, plain = statistics.median(light), statistics.median(plain)
        dtype = torch.bfloat16 if precision.startswith("bf16") else torch.float32
        peak = matmul_peak(dtype, 256 if steps < 5 else 8192 if on_gpu() else 2048, n_repeats)
        achieved = train_flops * light / 1e9
        ratio = 100 * achieved / peak
        failed = f" [peak probe failed: its matmul read {peak:.2f} GFLOP/s]" if ratio > 100 else ""
        rows += [
            {"what": f"train {precision}, Lightning (batch {cfg.train.batch_size}, augmented){note}",
             "value": light, "unit": "img/s"},
            {"what": f"train {precision}, plain PyTorch loop{note}", "value": plain, "unit": "img/s"},
            {"what": f"train {precision}, Lightning / plain", "value": 100 * light / plain, "unit": "%"},
            {"what": f"train {precision}, achieved", "value": achieved, "unit": "GFLOP/s"},
            {"what": f"matmul peak {str(dtype).removeprefix('torch.')}", "value": peak, "unit": "GFLOP/s"},
            {"what": f"train {precision}, achieved / matmul peak{failed}", "value": ratio, "unit": "%"},
        ]  # fmt: skip
    return rows


class AccuracyClock(pl.Callback):
    """Test accuracy every `every` training steps and at the end of each epoch, against the training
    seconds and images seen so far (the clock stops while it tests)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, every: int) -> None:
        self.images, self.labels, self.every = images, labels, max(int(every), 1)
        self.points: list[dict] = []  # {epoch, step, images, seconds, acc}
        self.start = self.paused = 0.0
        self.seen = 0

    def on_train_start(self, trainer, pl_module) -> None:
        self.images = self.images.to(pl_module.device)  # the test set on the device once
        self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.seen += len(batch[1])
        if trainer.global_step % self.every == 0:
            self.measure(trainer, pl_module)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if not self.points or self.points[-1]["step"] != trainer.global_step:
            self.measure(trainer, pl_module)

    def measure(self, trainer, pl_module) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize()
        stop = time.perf_counter()
        acc = accuracy(pl_module.model, self.images, self.labels)
        seconds = stop - self.start - self.paused
        self.points.append({"epoch": trainer.current_epoch + 1, "step": trainer.global_step,
                            "images": self.seen, "seconds": seconds, "acc": acc})  # fmt: skip
        self.paused += time.perf_counter() - stop


def time_to_accuracy(cfg, every: float) -> tuple[list[dict], int]:
    """Train cfg's recipe from scratch (no cache), testing every `every` of an epoch: AccuracyClock's
    points, and the number of training images in an epoch."""
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    c = typed(cfg)
    dm = make_datamodule(c.data, c.train)
    dm.setup()
    train_images = len(dm.tensors["train"][1])
    steps_per_epoch = math.ceil(train_images / cfg.train.batch_size)
    clock = AccuracyClock(*dm.tensors["test"], every=round(every * steps_per_epoch))
    with tempfile.TemporaryDirectory() as tmp:
        trainer = make_trainer(c.train, c.trainer, Path(tmp), Path(tmp) / "work", enable_progress_bar=False,
                               extra_callbacks=[clock])  # fmt: skip
        trainer.fit(make_lit(c.train, c.model), datamodule=dm)
    return clock.points, train_images


def first_reaching(points: list[dict], target: float) -> dict | None:
    """The first point whose test accuracy is at least target, or None."""
    return next((p for p in points if p["acc"] >= target), None)


# The accuracy the study's CNN reached: how long each recipe takes to get there.
TARGET_ACC = 0.993


def accuracy_rows(name: str, points: list[dict], train_images: int) -> list[dict]:
    """Rows for one recipe's curve: when it first reached TARGET_ACC (seconds, images), and where it ended."""
    never = {"seconds": float("nan"), "images": float("nan")}
    hit = first_reaching(points, TARGET_ACC) or never
    end = points[-1]
    return [
        {"what": f"{name}: time to {100 * TARGET_ACC:.1f}% test accuracy", "value": hit["seconds"],
         "unit": "s"},
        {"what": f"{name}: images seen until then", "value": hit["images"], "unit": "images"},
        {"what": f"{name}: in epochs of {train_images} images", "value": hit["images"] / train_images,
         "unit": "epochs"},
        {"what": f"{name}: final test accuracy, after {end['seconds']:.0f} s", "value": 100 * end["acc"],
         "unit": "%"},
    ]  # fmt: skip


# `make bench-long`: the fast recipe's and the default recipe's time to 99.3% and final accuracy,
# then the spread of the fast one over SPREAD's seeds.
LONG = {"train=fast": ["train=fast"], "train=default": ["train=default"]}
# `bench --levers`: each lever on its own, on the default recipe cut to one epoch; then the
# combination that became train=fast, and the default recipe (written as bench-levers in --out).
ONE = ["train=default", "train.epochs=1"]
LEVERS = {
    "1 epoch": ONE,
    "1 epoch, peak lr 0.001": [*ONE, "train.scheduler.factory.max_lr=0.001"],
    "1 epoch, peak lr 0.004": [*ONE, "train.scheduler.factory.max_lr=0.004"],
    "1 epoch, warm-up 10%": [*ONE, "train.scheduler.factory.pct_start=0.1"],
    "1 epoch, warm-up 40%": [*ONE, "train.scheduler.factory.pct_start=0.4"],
    "1 epoch, batch 64": [*ONE, "train.batch_size=64"],
    "1 epoch, batch 256": [*ONE, "train.batch_size=256"],
    "1 epoch, label smoothing 0.1": [*ONE, "train.loss=label_smoothing"],
    "1 epoch, no augmentation": [*ONE, "train.augment.enabled=false"],
    "1 epoch, half-strength augmentation": [*ONE, "train.augment.rotation=5", "train.augment.zoom=0.05",
                                            "train.augment.shift=0.05"],
    "1 epoch, foreach RMSprop": [*ONE, "+train.optimizer.foreach=true"],
    "2 epochs": ["train=default", "train.epochs=2"],
    "train=fast": ["train=fast"],
    "train=default": ["train=default"],
}


# `make bench-long` also trains the recipe `make run` trains once per seed: how reliably it gets there.
SPREAD = ("train=fast", tuple(range(42, 52)))


def spread_rows(name: str, curves: dict[int, list[dict]]) -> list[dict]:
    """Over seeds (seed -> its curve): how many reached TARGET_ACC, the images and seconds they took
    (median, min, max) and the final test accuracy (mean, min, max)."""
    n, target = len(curves), f"{100 * TARGET_ACC:.1f}%"
    hits = [h for h in (first_reaching(c, TARGET_ACC) for c in curves.values()) if h]
    finals = [100 * c[-1]["acc"] for c in curves.values()]
    rows = [{"what": f"{name}, {n} seeds: reached {target} test accuracy", "value": len(hits),
             "unit": f"of {n} seeds"},
            {"what": f"{name}, {n} seeds: final test accuracy, mean [min, max]",
             "value": statistics.mean(finals),
             "unit": f"% [{min(finals):.2f}, {max(finals):.2f}]"}]  # fmt: skip
    for key, unit in (("images", "images"), ("seconds", "s")):
        got = [h[key] for h in hits] or [float("nan")]
        what = f"{name}, {n} seeds: {key} to {target}, median [min, max] of those that got there"
        rows.append({"what": what,
                     "value": statistics.median(got),
                     "unit": f"{unit} [{min(got):.0f}, {max(got):.0f}]"})  # fmt: skip
    return rows


def bench_spread(overrides: list[str], every: float, recipe: str, seeds) -> tuple[list[dict], dict]:
    """recipe trained from scratch once per seed: spread_rows, and each seed's curve."""
    curves = {}
    for seed in seeds:
        log.info("bench-long: %s, seed %d", recipe, seed)
        cfg = compose_config("paths.output_dir=outputs/bench", recipe, *overrides, f"seed={seed}")
        curves[seed], _ = time_to_accuracy(cfg, every)
    return spread_rows(recipe, curves), {f"{recipe} seed={s}": c for s, c in curves.items()}


def bench_long(overrides: list[str], every: float, recipes: dict[str, list[str]]) -> tuple[list[dict], dict]:
    """Each recipe trained from scratch: rows (time and images to 99.3%, final accuracy) and every
    recipe's curve."""
    rows, curves = [], {}
    for name, extra in recipes.items():
        cfg = compose_config("paths.output_dir=outputs/bench", *extra, *overrides)
        log.info("bench-long: %s (%s)", name, " ".join(extra))
        # The default recipe is there for its final accuracy: a test every quarter epoch will do.
        often = max(every, 0.25) if name == "train=default" else every
        curves[name], train_images = time_to_accuracy(cfg, often)
        rows += accuracy_rows(name, curves[name], train_images)
    return rows, curves


def bench_interpreters(cfg, names: list[str]) -> list[dict]:
    """Fit seconds of each interpreter on the CNN's code vectors (fresh fits, not the cache), and its
    test accuracy (the speed levers must leave it within 0.1 point)."""
    c = typed(cfg)
    cnn = trained_cnn(cfg)
    (x, y), (x_test, y_test) = (features_of("codes", split, c.data, c.paths.cache, cnn)
                                for split in ("train", "test"))  # fmt: skip
    rows, total = [], 0.0
    for name in names:
        estimator = instantiate(interpreter_spec(cfg, name).estimator)
        start = time.perf_counter()
        estimator.fit(x, y)
        seconds = time.perf_counter() - start
        total += seconds
        acc = 100 * estimator.score(x_test, y_test)
        rows += [{"what": f"fit {name} on {len(y)} code vectors", "value": seconds, "unit": "s"},
                 {"what": f"  {name}: test accuracy", "value": acc, "unit": "%"}]
    rows.append({"what": f"fit all {len(names)} study interpreters", "value": total, "unit": "s"})
    return rows


# --tiny: a seconds-long smoke run of every part (the tests)
TINY = ["data.train_subset=448", "data.test_subset=500", "train.batch_size=64", "train.epochs=2",
        "data.val_size=500", "+model.filters=16"]


def main(argv: list[str] | None = None) -> dict:
    """Run every benchmark and write outputs/bench/bench.{json,md} (--long: bench-long.{json,md})."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="outputs/bench")
    parser.add_argument("--images", type=int, default=2000, help="images for inference benchmarks")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=24, help="timed training steps per repeat")
    parser.add_argument("--precisions", default="32-true,bf16-mixed", help="comma-separated")
    parser.add_argument("--long", action="store_true", help="only: time to 99.3%% test accuracy")
    parser.add_argument("--levers", action="store_true", help="only: time to 99.3%% for each lever (LEVERS)")
    parser.add_argument("--recipe", action="append", metavar="NAME=OVERRIDES",
                        help="only: time to 99.3%% for this recipe (Hydra overrides, space-separated)")
    parser.add_argument("--every", type=float, default=0.1, help="--long: test every this much of an epoch")
    parser.add_argument("--seeds", type=int, default=len(SPREAD[1]),
                        help=f"--long: train {SPREAD[0]} with this many seeds")  # fmt: skip
    parser.add_argument("--tiny", action="store_true", help="a seconds-long smoke run (tests)")
    parser.add_argument("--page", metavar="PATH", help="then write this page (docs/PERFORMANCE.md) from the "
                        "JSONs in --out; alone with --page-only, measure nothing")  # fmt: skip
    parser.add_argument("--page-only", action="store_true", help="only: write --page from the JSONs")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for the CNN, e.g. train=study")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    result = {} if args.page_only else measure_all(args)
    if args.page:
        write_page(Path(args.out), Path(args.page))
    return result


def measure_all(args: argparse.Namespace) -> dict:
    """The benchmarks the arguments ask for, reported into args.out."""
    start = time.perf_counter()
    overrides = [*args.overrides, *(TINY if args.tiny else [])]
    if args.recipe:
        recipes = dict(r.partition("=")[::2] for r in args.recipe)
        rows, curves = bench_long(overrides, args.every, {k: v.split() for k, v in recipes.items()})
        return report(rows, Path(args.out), "bench-recipes", curves=curves)
    if args.long or args.levers:
        rows, curves = bench_long(overrides, args.every, LEVERS if args.levers else LONG)
        if args.long:
            recipe, seeds = SPREAD
            more_rows, more = bench_spread(overrides, args.every, recipe, seeds[: args.seeds])
            rows, curves = rows + more_rows, curves | more
        return report(rows, Path(args.out), "bench-levers" if args.levers else "bench-long", curves=curves)
    cfg = compose_config("paths.output_dir=outputs/bench", *overrides)
    images_u8, _ = load_mnist(cfg.data.root, "test")
    images = to_float(images_u8[: 64 if args.tiny else args.images])
    steps, warmup = (2, 1) if args.tiny else (args.steps, 4)
    rows = bench_startup(args.repeats, overrides)
    probe_rows, probe = bench_precision()
    rows += probe_rows
    rows += bench_training(cfg, args.precisions.split(","), steps, warmup, args.repeats, probe)
    model = instantiate(cfg.model)  # throughput does not depend on the weights
    rows += bench_hooks(model, images, 500, args.repeats)
    rows += bench_shift(model, images[: 8 if args.tiny else 100], 1 if args.tiny else 5, 2000, args.repeats)
    if not args.tiny:
        rows += bench_streaming(cfg.data.root)
        rows += bench_interpreters(cfg, ["nn", "svm", "rf", "gb", "dt"])
    rows.append({"what": "make bench, wall time", "value": time.perf_counter() - start, "unit": "s"})
    return report(rows, Path(args.out), "bench")


def report(rows: list[dict], out: Path, name: str, **extra) -> dict:
    """Round, write out/NAME.json and NAME.md, print the table."""
    for row in rows:
        row["value"] = round(float(row["value"]), 2)
    result = {"machine": machine(), "command": " ".join(["python -m mnist_probe.bench", *sys.argv[1:]]),
              "date": time.strftime("%Y-%m-%d"), "rows": rows, **extra}  # fmt: skip
    write_json(out / f"{name}.json", result)
    md = write_table(rows, out / name, ["what", "value", "unit"])
    print(f"machine: {json.dumps(result['machine'])}\n\n{md}")
    return result


# What docs/PERFORMANCE.md shows, from the JSON `make bench` and `make bench-long` leave in outputs/bench/.
PAGES = {"bench": "`make bench`: training, inference, hooks, the shift grid, streaming, the interpreter fits",
         "bench-long": "`make bench-long`: each recipe trained from scratch, tested as it goes"}  # fmt: skip


def machine_line(m: dict) -> str:
    gpu = f"{m['gpu']} (host CPU {m['cpu']})" if m.get("gpu") else m["cpu"]
    capped = " ".join(f"{k}={v}" for k, v in m.get("capped", {}).items())
    kernels = f", kernels capped at {m['kernels']} ({capped})" if capped else ""
    auto = f", trainer.precision=auto: {m['auto_precision']}" if m.get("auto_precision") else ""
    return f"{gpu}, {m['cores']} threads{kernels}, torch {m['torch']}{auto}"


def performance_page(results: dict[str, dict]) -> str:
    """docs/PERFORMANCE.md from bench JSONs (name -> its JSON): each one's machine, command and date,
    and its figures; ratios (Lightning / plain loop, achieved / matmul peak) are rows of their own."""
    md = ["# Performance", "",
          "Generated by `python -m mnist_probe.bench --page` from the JSON that `make bench` and "
          "`make bench-long` write to outputs/bench/; rerun them to regenerate this page. Training "
          "figures are images per second at the recipe's batch; `Lightning / plain` is this project's "
          "training loop against a minimal PyTorch loop over the same batches, and `achieved / matmul "
          "peak` the training FLOP rate against the machine's measured matrix-multiply peak.",
          ""]  # fmt: skip
    for name, title in PAGES.items():
        result = results.get(name)
        if result is None:
            md += [f"## {title}", "", f"Not measured yet: run `make {name}`.", ""]
            continue
        md += [f"## {title}", "",
               f"Machine: {machine_line(result['machine'])}. "
               f"Command: `{result.get('command', 'make ' + name)}`"
               f"{', on ' + result['date'] if result.get('date') else ''}.", "",
               markdown_table(result["rows"], ["what", "value", "unit"])]  # fmt: skip
    return "\n".join(md)


def write_page(out: Path, page: Path) -> Path:
    """docs/PERFORMANCE.md (page) from the bench JSONs in out."""
    results = {name: json.loads((out / f"{name}.json").read_text()) for name in PAGES
               if (out / f"{name}.json").is_file()}  # fmt: skip
    text = performance_page(results)
    atomic_write(page, lambda tmp: tmp.write_text(text))
    log.info("wrote %s", page)
    return page


if __name__ == "__main__":
    main()
