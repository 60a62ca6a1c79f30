"""What this machine is, read without importing torch: the CPU's model and flags, the GPU if any.
Every figure this project prints names its machine; the config check asks whether a GPU exists."""

from __future__ import annotations

import os
import platform
from pathlib import Path

NVIDIA = Path("/proc/driver/nvidia/gpus")


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux
        return ""


def _field(lines: list[str], key: str) -> str | None:
    return next((ln.split(":", 1)[1].strip() for ln in lines if ln.split(":")[0].strip() == key), None)


def cpu_model() -> str:
    """The CPU's model name, family and model numbers and widest vector unit (/proc/cpuinfo), e.g.
    'Vendor CPU (family 25, model 1, AVX2)': a VM's model name alone can hide which CPU it is; else
    what the platform module says."""
    lines = _cpuinfo().splitlines()
    name = _field(lines, "model name")
    if name is None:
        return platform.processor()
    flags = set((_field(lines, "flags") or "").split())
    vector = (
        "AVX-512 with BF16"
        if "avx512_bf16" in flags
        else "AVX-512"
        if "avx512f" in flags
        else "AVX2"
        if "avx2" in flags
        else "no AVX2"
    )
    family, model = _field(lines, "cpu family"), _field(lines, "model")
    return f"{name} (family {family}, model {model}, {vector})" if family else f"{name} ({vector})"


def gpu_names() -> list[str]:
    """NVIDIA GPUs as the driver lists them (Linux), without starting CUDA."""
    names = []
    if NVIDIA.is_dir():
        for info in sorted(NVIDIA.glob("*/information")):
            lines = info.read_text().splitlines()
            model = [ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("Model")]
            names.append(model[0] if model else "NVIDIA GPU")
    if not names and Path("/dev/nvidia0").exists():
        names.append("NVIDIA GPU")
    return names


def gpu_present() -> bool:
    """Whether this machine has an NVIDIA GPU."""
    return bool(gpu_names())


def describe() -> str:
    """The device the stages compute on, for results.json: the GPU, else the CPU and its cores."""
    gpus = gpu_names()
    return f"cuda: {gpus[0]}" if gpus else f"cpu: {cpu_model()} ({os.cpu_count()} cores)"


def machine_cache() -> Path:
    """Where per-machine facts live (the precision measurement, data files' digests):
    $MNIST_PROBE_MACHINE_CACHE, else the user's cache dir."""
    if os.environ.get("MNIST_PROBE_MACHINE_CACHE"):
        return Path(os.environ["MNIST_PROBE_MACHINE_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mnist_probe"
