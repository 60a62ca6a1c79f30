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


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), else what the platform module says."""
    lines = _cpuinfo().splitlines()
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return names[0] if names else platform.processor()


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
