"""What every benchmark shares: the machine it ran on and a median of repeats."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable

import torch

from mnist_probe.bench import CAP_VARIABLES
from mnist_probe.machine import cpu_model
from mnist_probe.precision import fastest


def on_gpu() -> bool:
    return torch.cuda.is_available()


def machine() -> dict:
    """CPU model, cores, threads and library versions: the context every figure needs."""
    gpu = torch.cuda.get_device_name(0) if on_gpu() else None
    # The vector width torch's, oneDNN's and MKL's kernels use: the CPU's, unless capped to run an
    # AVX-512 machine with an AVX2 machine's kernels (mnist_probe.bench gives MKL the others' cap).
    capped = {k: os.environ[k] for k in CAP_VARIABLES if os.environ.get(k)}
    return {
        "cpu": cpu_model(),
        "cores": torch.get_num_threads(),
        "gpu": gpu,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "kernels": torch.backends.cpu.get_cpu_capability(),
        "capped": capped,
        "auto_precision": fastest()["chosen"],
    }


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


def alternated(
    contenders: dict[str, Callable[[], object]], repeats: int, warm: bool = True
) -> dict[str, float]:
    """Median seconds of each contender over the repeats, one call of each in turn per repeat, after
    one warm-up call of each (if warm)."""
    for fn in contenders.values() if warm else ():
        fn()
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(max(repeats, 1)):
        for name, fn in contenders.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}
