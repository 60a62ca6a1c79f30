"""`train.precision: auto`, decided by measuring this machine: a few training steps of the study's
CNN at fp32 and at bf16 (autocast), the faster one wins. CPU flags tell only the slow case:
below AVX-512, bf16 is emulated (an order of magnitude slower than fp32: `make bench` shows both) and
fp32 is taken without measuring bf16; with AVX-512 it may still be emulated, or fast only with AMX.
Measured once per machine (device, thread count, torch version, kernel width) and kept per user, in
`~/.cache/mnist_probe/precision-<key>/` ($XDG_CACHE_HOME, or $MNIST_PROBE_MACHINE_CACHE), so every
run and test on this machine reuses it.
"""

from __future__ import annotations

import functools
import logging
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from mnist_probe.cache import config_key, get_or_compute
from mnist_probe.keras_cnn import KerasCNN
from mnist_probe.machine import cpu_model, machine_cache

log = logging.getLogger(__name__)

CANDIDATES = ("32-true", "bf16-mixed")


def _device(accelerator: str) -> torch.device:
    on_gpu = accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    return torch.device("cuda" if on_gpu else "cpu")


def train_step(model: torch.nn.Module, optimizer, x: torch.Tensor, y: torch.Tensor, bf16: bool) -> None:
    """One plain training step (cross-entropy, autocast to bf16 when asked): what the probe times."""
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        loss = F.cross_entropy(model(x), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def step_rate(
    precision: str, device: torch.device, batch: int = 32, steps: int = 4, budget_s: float = 4.0
) -> float:
    """Training images/s of KerasCNN at precision on device: one warm-up step, then up to `steps`
    timed steps, fewer when they run past budget_s (a precision far slower stops early)."""
    torch.manual_seed(0)
    model = KerasCNN().to(device).to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-3)
    x = torch.rand(batch, 1, 28, 28, device=device).to(memory_format=torch.channels_last)
    y = torch.arange(batch, device=device) % 10
    bf16 = precision.startswith("bf16")
    train_step(model, optimizer, x, y, bf16)  # warm-up: allocation, kernel choice
    start, done = time.perf_counter(), 0
    while done < steps and (done == 0 or time.perf_counter() - start < budget_s):
        train_step(model, optimizer, x, y, bf16)
        done += 1
    if device.type == "cuda":
        torch.cuda.synchronize()
    return batch * done / (time.perf_counter() - start)


def emulated_bf16(device: torch.device) -> bool:
    """bf16 on an x86 CPU whose kernels stop short of AVX-512 (ATen's capability AVX2 or less): no
    bf16 instructions, so every bf16 op is emulated, an order of magnitude slower than fp32. Not worth
    the seconds it takes to measure."""
    x86 = platform.machine().lower() in ("x86_64", "amd64", "i686", "x86")
    return device.type == "cpu" and x86 and not torch.backends.cpu.get_cpu_capability().startswith("AVX512")


def supported(precision: str, device: torch.device) -> bool:
    """Whether precision is a candidate on device: bf16 where the GPU has it, or the CPU is not
    known to emulate it."""
    if precision.startswith("bf16") and device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return not (precision.startswith("bf16") and emulated_bf16(device))


def measure(accelerator: str = "auto", rounds: int = 2) -> dict:
    """{precision: training images/s} for each candidate this device supports (the best of `rounds`,
    taken in turn, so a passing load on the machine hits each alike), and the faster one."""
    device = _device(accelerator)
    rates: dict[str, float] = {}
    for _ in range(rounds):
        for p in (p for p in CANDIDATES if supported(p, device)):
            rates[p] = max(rates.get(p, 0.0), step_rate(p, device))
    chosen = max(rates, key=rates.get)
    return {"rates": rates, "chosen": chosen, "device": str(device)}


def machine_key(accelerator: str = "auto") -> str:
    """What decides the answer: the device, its thread count, the torch build, and on a CPU the
    vector width its kernels use (ATEN_CPU_CAPABILITY can cap an AVX-512 CPU at AVX2)."""
    device = _device(accelerator)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(0)
        return config_key(device.type, name, torch.get_num_threads(), torch.__version__)
    return config_key(
        device.type,
        cpu_model(),
        torch.get_num_threads(),
        torch.__version__,
        torch.backends.cpu.get_cpu_capability(),
    )


def fastest(accelerator: str = "auto", cache_dir: str | Path | None = None) -> dict:
    """measure(accelerator), once per machine: read from cache_dir (machine_cache()) when measured
    before; measured afresh, and said so, when that folder cannot be written. Within a process the
    answer is read once (every CNN key and every Trainer asks)."""
    return _fastest(accelerator, Path(cache_dir or machine_cache()) / f"precision-{machine_key(accelerator)}")


@functools.cache
def _fastest(accelerator: str, entry: Path) -> dict:

    def compute(staging: Path) -> dict:
        result = measure(accelerator)
        log.info(
            "precision auto: measured %s on %s -> %s (kept in %s)",
            ", ".join(f"{p} {r:.0f} img/s" for p, r in result["rates"].items()),
            result["device"],
            result["chosen"],
            entry,
        )
        return result

    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        _, meta, _ = get_or_compute(entry, compute, lambda entry, meta: None)
    except OSError as err:
        log.warning("precision auto: cannot keep the measurement in %s (%s); measuring now", entry, err)
        meta = measure(accelerator)
    return {k: meta[k] for k in ("rates", "chosen", "device")}
