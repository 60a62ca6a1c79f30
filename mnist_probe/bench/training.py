"""Training throughput: Lightning against a plain PyTorch loop, per precision, and the achieved FLOP
rate against the machine's matrix-multiply peak."""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from torch.utils.flop_counter import FlopCounterMode

from mnist_probe.bench.common import median_seconds, on_gpu
from mnist_probe.data import to_float
from mnist_probe.model import build_model
from mnist_probe.precision import fastest, measure, train_step
from mnist_probe.schema import typed
from mnist_probe.trainer import make_datamodule, make_lit, make_trainer


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
        c.train,
        c.trainer,
        Path(log_dir),
        Path(log_dir) / "work",
        precision=precision,
        max_steps=steps + warmup + 1,
        limit_val_batches=0,
        enable_progress_bar=False,
        extra_callbacks=[clock],
    )
    trainer.fit(make_lit(c.train, c.model, c.data), datamodule=make_datamodule(c.data, c.train))
    return rate(clock.stamps, cfg.train.batch_size, warmup)


def plain_rate(cfg, precision: str, steps: int, warmup: int) -> float:
    """Training img/s of a minimal PyTorch loop: same model, batches, augmentation and precision."""
    pl.seed_everything(cfg.seed, verbose=False)
    device = torch.device("cuda" if on_gpu() else "cpu")
    c = typed(cfg)
    dm = make_datamodule(c.data, c.train)
    dm.setup()
    dm.hold_on(device)  # on a GPU, the images there once, as in the Lightning path
    model = make_lit(c.train, c.model, c.data).model.to(device).train()
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
    """GFLOP/s of an n x n matrix product at dtype, the practical roof: the faster of BLAS's matmul
    and the same product as a 1x1 convolution (oneDNN, the library the training's convolutions run
    on; on an AMD CPU MKL's float32 matmul can read below the training's own rate). n shrinks where
    one 256 x 256 product is already slow (an emulated dtype), so the probe stays seconds long; a
    slow probe reads low, and bench_training says so rather than print > 100%."""
    device = "cuda" if on_gpu() else "cpu"

    def product(size: int, as_conv: bool = False):
        a, b = (torch.rand(size, size, device=device, dtype=dtype) for _ in range(2))
        if as_conv:  # a @ b as (1, K=size, M=size, 1) convolved with (N=size, K, 1, 1)
            a, b = a.t().reshape(1, size, size, 1).contiguous(), b.t().reshape(size, size, 1, 1).contiguous()

        def mm():
            F.conv2d(a, b) if as_conv else a @ b
            if device == "cuda":
                torch.cuda.synchronize()

        return mm

    small = median_seconds(product(256), 1)
    n = min(n, max(256, int(256 * (0.25 / max(small, 1e-9)) ** (1 / 3))))  # ~0.25 s per product
    fastest = min(median_seconds(product(n, as_conv), repeats) for as_conv in (False, True))
    return 2 * n**3 / fastest / 1e9


def bench_precision() -> tuple[list[dict], dict]:
    """What precision auto picks here: a fresh probe of both (not the cached one) and the choice."""
    fresh, kept = measure(), fastest()
    rows = [
        {"what": f"precision probe: train {p} (batch 32, 4 steps)", "value": r, "unit": "img/s"}
        for p, r in fresh["rates"].items()
    ]
    if len(fresh["rates"]) == 1:  # bf16 left out: emulated on this CPU (precision.emulated_bf16)
        capability = torch.backends.cpu.get_cpu_capability()
        what = f"precision auto picks {kept['chosen']}, bf16 not measured (emulated on {capability} kernels)"
        rows.append({"what": what, "value": fresh["rates"][fresh["chosen"]], "unit": "img/s"})
        return rows, fresh["rates"]
    slower = min(fresh["rates"].values())
    picks = f"precision auto picks {kept['chosen']} (the cached pick; this probe: {fresh['chosen']})"
    rows.append({"what": picks, "value": fresh["rates"][fresh["chosen"]] / slower, "unit": "x the slower"})
    return rows, fresh["rates"]


# A precision the probe found this many times slower than the fastest gets a short measurement.
FAR_SLOWER = 3.0


def bench_training(
    cfg, precisions: list[str], steps: int, warmup: int, repeats: int, probe: dict[str, float] | None = None
) -> list[dict]:
    """Lightning vs plain loop img/s per precision, and what that is in GFLOP/s of the matmul roof.
    A precision the probe found far slower here (emulated) is measured briefly, and marked so."""
    forward_flops, train_flops = flops_per_image(build_model(typed(cfg).model))
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
            {
                "what": f"train {precision}, Lightning (batch {cfg.train.batch_size}, augmented){note}",
                "value": light,
                "unit": "img/s",
            },
            {"what": f"train {precision}, plain PyTorch loop{note}", "value": plain, "unit": "img/s"},
            {"what": f"train {precision}, Lightning / plain", "value": 100 * light / plain, "unit": "%"},
            {"what": f"train {precision}, achieved", "value": achieved, "unit": "GFLOP/s"},
            {"what": f"matmul peak {str(dtype).removeprefix('torch.')}", "value": peak, "unit": "GFLOP/s"},
            {"what": f"train {precision}, achieved / matmul peak{failed}", "value": ratio, "unit": "%"},
        ]
    return rows
