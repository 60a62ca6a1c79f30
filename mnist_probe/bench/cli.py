"""`make bench`'s command line: runs the benchmarks the arguments ask for and writes
outputs/bench/NAME.{json,md}; nothing here asserts a time."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import torch

from mnist_probe.bench.accuracy import LEVERS, LONG, SPREAD, bench_long, bench_spread
from mnist_probe.bench.common import machine
from mnist_probe.bench.hot_paths import (
    bench_hooks,
    bench_interpreters,
    bench_make_run,
    bench_shift,
    bench_startup,
    bench_streaming,
)
from mnist_probe.bench.page import labelled, write_page
from mnist_probe.bench.peers import (
    bench_cka,
    bench_grad_cam,
    bench_record_memory,
    bench_recording,
    bench_saliency,
    grey_resnet18,
)
from mnist_probe.bench.reports import bench_reports
from mnist_probe.bench.training import bench_precision, bench_training
from mnist_probe.cache import write_json
from mnist_probe.config import compose_config
from mnist_probe.data import load_mnist, to_float
from mnist_probe.model import build_model
from mnist_probe.schema import typed
from mnist_probe.specs import INFERENCE_BATCH
from mnist_probe.tables import write_table

# The six layers CKA compares between two networks (the study's CNN: its conv layers and its two dense ones).
CKA_LAYERS = ["conv2d_1", "conv2d_2", "conv2d_3", "conv2d_4", "dense_1", "dense_2"]
# --tiny: a seconds-long smoke run of every part (the tests)
TINY = [
    "data.train_subset=448",
    "data.test_subset=500",
    "train.batch_size=64",
    "train.epochs=2",
    "data.val_size=500",
    "+model.filters=16",
]


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
    parser.add_argument(
        "--recipe",
        action="append",
        metavar="NAME=OVERRIDES",
        help="only: time to 99.3%% for this recipe (Hydra overrides, space-separated)",
    )
    parser.add_argument("--every", type=float, default=0.1, help="--long: test every this much of an epoch")
    parser.add_argument(
        "--seeds", type=int, default=len(SPREAD[1]), help=f"--long: train {SPREAD[0]} with this many seeds"
    )
    parser.add_argument(
        "--make-run",
        action="store_true",
        help="only: make run's job from a fresh clone of this repository, timed",
    )
    parser.add_argument(
        "--reports",
        action="store_true",
        help="only: +experiment=report on the models people bring, from checkpoints, timed",
    )
    parser.add_argument("--tiny", action="store_true", help="a seconds-long smoke run (tests)")
    parser.add_argument(
        "--label",
        help="write bench@LABEL.json (bench-run@LABEL.json): another run "
        "(a second one, one under a kernel cap), a column of its own on the page",
    )
    parser.add_argument(
        "--page",
        metavar="PATH",
        help="then write this page (docs/PERFORMANCE.md) from the "
        "JSONs in --out; alone with --page-only, measure nothing",
    )
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
    if args.reports:
        return report(bench_reports(), Path(args.out), labelled("bench-reports", args.label))
    if args.make_run:
        repo = Path(__file__).resolve().parents[2]
        if not (repo / ".git").exists():
            raise SystemExit(
                f"error: --make-run clones the repository mnist_probe runs from; {repo} is "
                "no git checkout: run it from one (pip install -e .)"
            )
        rows = bench_make_run(repo, overrides)
        return report(rows, Path(args.out), labelled("bench-run", args.label))
    if args.long or args.levers:
        rows, curves = bench_long(overrides, args.every, LEVERS if args.levers else LONG)
        if args.long:
            recipe, seeds = SPREAD
            more_rows, more = bench_spread(overrides, args.every, recipe, seeds[: args.seeds])
            rows, curves = rows + more_rows, curves | more
        return report(rows, Path(args.out), "bench-levers" if args.levers else "bench-long", curves=curves)
    cfg = compose_config("paths.output_dir=outputs/bench", *overrides)
    images_u8, labels = load_mnist(cfg.data.root, "test")
    images = to_float(images_u8[: 64 if args.tiny else args.images])
    steps, warmup = (2, 1) if args.tiny else (args.steps, 4)
    rows = bench_startup(args.repeats, overrides)
    probe_rows, probe = bench_precision()
    rows += probe_rows
    rows += bench_training(cfg, args.precisions.split(","), steps, warmup, args.repeats, probe)
    model = build_model(typed(cfg).model)  # throughput does not depend on the weights
    rows += bench_hooks(model, images, INFERENCE_BATCH, args.repeats)
    rows += bench_recording(model, images, INFERENCE_BATCH, args.repeats)  # beside the peers (bench extra)
    rows += bench_recording(
        grey_resnet18(), images[:500], INFERENCE_BATCH, args.repeats, " of ResNet-18, 1-channel stem"
    )
    rows += bench_record_memory(cfg.data.root, max(len(images), 500))  # fewer: the allocator's noise shows
    few, few_labels = images[:500], labels[: len(images[:500])]  # the attributions' images
    rows += bench_grad_cam(model, few, few_labels, 100, args.repeats)
    rows += bench_saliency(model, few, few_labels, 100, args.repeats)
    torch.manual_seed(1)
    other = build_model(typed(cfg).model)  # CKA between two networks: this one and another initialisation
    rows += bench_cka(model, other, images[:1000], CKA_LAYERS, 100, 1)
    rows += bench_shift(model, images[: 8 if args.tiny else 100], 1 if args.tiny else 5, 2000, args.repeats)
    if not args.tiny:
        rows += bench_streaming(cfg.data.root)
        rows += bench_interpreters(cfg, ["nn", "svm", "rf", "gb", "dt"])
    rows.append({"what": "make bench, wall time", "value": time.perf_counter() - start, "unit": "s"})
    return report(rows, Path(args.out), labelled("bench", args.label))


def report(rows: list[dict], out: Path, name: str, **extra) -> dict:
    """Round, write out/NAME.json and NAME.md, print the table."""
    for row in rows:  # a row without a value (a peer not installed) says so in its name
        row["value"] = None if row["value"] is None else round(float(row["value"]), 2)
    result = {
        "machine": machine(),
        "command": " ".join(["python -m mnist_probe.bench", *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%d"),
        "rows": rows,
        **extra,
    }
    write_json(out / f"{name}.json", result)
    md = write_table(rows, out / name, ["what", "value", "unit"])
    print(f"machine: {json.dumps(result['machine'])}\n\n{md}")
    return result
