"""`make bench`: throughput and memory of the hot paths, as JSON and a markdown table in outputs/bench/.

Not a test: it measures and reports; nothing here asserts a time. Medians of several repeats.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from mnist_probe.cache import write_json
from mnist_probe.data import load_mnist, to_float
from mnist_probe.probe import ActivationRecorder
from mnist_probe.report import write_table

log = logging.getLogger("mnist_probe.bench")
CONF = Path(__file__).resolve().parents[1] / "conf"


def machine() -> dict:
    """CPU model, cores, threads and library versions: the context every figure needs."""
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": cpu, "cores": torch.get_num_threads(), "gpu": gpu, "torch": torch.__version__,
            "python": platform.python_version()}  # fmt: skip


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
        {"what": "hook overhead", "value": 100 * (t_hooks / t_plain - 1), "unit": "%",
         "target": "<= 5%"},
    ]  # fmt: skip


# Peak RSS from /proc's VmHWM (KiB): getrusage's ru_maxrss would carry over the parent's peak
# across fork+exec on Linux, and this process (the in-memory benchmarks) has a large one.
STREAM_SCRIPT = """
import re, sys
from mnist_probe.data import load_mnist
from mnist_probe.model import KerasCNN
from mnist_probe.probe import stream
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
        {"what": "streaming all layers, 10k test images: peak RSS", "value": peak, "unit": "MiB",
         "target": "<= 2048 MiB"},
        {"what": "  of which before recording (torch, data)", "value": before, "unit": "MiB"},
        {"what": "  written to disk (float16)", "value": disk / 2**20, "unit": "MiB"},
        {"what": "  wall time", "value": seconds, "unit": "s"},
    ]  # fmt: skip


@torch.no_grad()
def bench_shift(model, images: torch.Tensor, radius: int, batch: int, repeats: int) -> list[dict]:
    """The shift grid (translate + forward + softmax) against plain inference of as many images."""
    from mnist_probe.shift import ModelSpec, grid_predictions, shifted_stack

    pairs = [(dx, dy) for dx in range(-radius, radius + 1) for dy in range(-radius, radius + 1)]
    stacked = shifted_stack(images, pairs)
    spec = [ModelSpec("CNN", "cnn")]

    def plain():
        for s in range(0, len(stacked), batch):
            model(stacked[s : s + batch])

    model.eval()
    t_plain = median_seconds(plain, repeats)
    t_shift = median_seconds(lambda: grid_predictions(spec, model, images, radius, batch), repeats)
    n = len(stacked)
    return [
        {"what": f"shift grid ±{radius} px, {len(images)} images", "value": n / t_shift, "unit": "img/s"},
        {"what": "plain inference of the same batches", "value": n / t_plain, "unit": "img/s"},
        {"what": "shift sweep / plain inference", "value": 100 * t_plain / t_shift, "unit": "%",
         "target": ">= 90%"},
    ]  # fmt: skip


def bench_interpreters(cfg, names: list[str]) -> list[dict]:
    """Fit seconds of each interpreter on the CNN's code vectors (fresh fits, not the cache)."""
    from mnist_probe.interpreters import features, interpreter_config
    from mnist_probe.train import cnn_key, fit_or_load

    model, _ = fit_or_load(cfg)
    key = cnn_key(cfg)
    x, y = features(cfg, "codes", "train", model, key)
    rows, total = [], 0.0
    for name in names:
        estimator = instantiate(interpreter_config(name).estimator)
        start = time.perf_counter()
        estimator.fit(x, y)
        seconds = time.perf_counter() - start
        total += seconds
        rows.append({"what": f"fit {name} on {len(y)} code vectors", "value": seconds, "unit": "s"})
    rows.append({"what": f"fit all {len(names)} study interpreters", "value": total, "unit": "s",
                 "target": "<= 90 s"})  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> dict:
    """Run every benchmark and write outputs/bench/bench.{json,md}."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="outputs/bench")
    parser.add_argument("--images", type=int, default=2000, help="images for inference benchmarks")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tiny", action="store_true", help="a seconds-long smoke run (tests)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for the CNN, e.g. train=keras")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
        cfg = compose("config", overrides=["paths.output_dir=outputs/bench", *args.overrides])
    images_u8, _ = load_mnist(cfg.data.root, "test")
    n = 64 if args.tiny else args.images
    images = to_float(images_u8[:n])
    model = instantiate(cfg.model)  # throughput does not depend on the weights
    rows = bench_hooks(model, images, 500, args.repeats)
    rows += bench_shift(model, images[: 8 if args.tiny else 200], 1 if args.tiny else 5, 2000, args.repeats)
    if not args.tiny:
        rows += bench_streaming(cfg.data.root)
        rows += bench_interpreters(cfg, ["nn", "svm", "rf", "gb", "dt"])
    for row in rows:
        row["value"] = round(float(row["value"]), 2)
    result = {"machine": machine(), "rows": rows}
    out = Path(args.out)
    write_json(out / "bench.json", result)
    md = write_table(rows, out / "bench", ["what", "value", "unit", "target"])
    print(f"machine: {json.dumps(result['machine'])}\n\n{md}")  # the table is the command's output
    return result


if __name__ == "__main__":
    main()
