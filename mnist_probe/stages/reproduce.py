"""The reproduce stage (+experiment=reproduce, `make reproduce`): the whole study on one CNN (the
study's recipe), the same recipe with each other loss, an architecture × augmentation sweep, then
docs/RESULTS.md written from the results."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from mnist_probe.config import compose_config
from mnist_probe.data import split_tensors
from mnist_probe.keras_weights import save_keras
from mnist_probe.model import load_model
from mnist_probe.stages import activations, interpreters, shift, train
from mnist_probe.stages.common import data_spec, plain, run_stages, trained_cnn
from mnist_probe.stages.report import write_report, write_table
from mnist_probe.train import test_logits
from mnist_probe.viz import curves_plot, save

log = logging.getLogger(__name__)

# The stages the study's run chains, in order.
CHAIN = {"train": train.run, "activations": activations.run, "interpreters": interpreters.run,
         "shift": shift.run}  # fmt: skip


def compose_node(group: str, option: str) -> DictConfig:
    """The GROUP node of conf/GROUP/OPTION.yaml, composed (inside a Hydra app or outside one)."""
    return compose_config(f"{group}={option}")[group]


def augmentation_sweep(cfg: DictConfig, out_dir: Path) -> dict:
    """Architecture against augmentation: one CNN per model × train.augment.shift (a lighter recipe),
    each through the shift stage, and what each lever buys in consistency and 1-px flips."""
    acfg = cfg.reproduce.augment
    rows, curves = [], {}
    for model in acfg.models:
        for value in acfg.shifts:
            sub = cfg.copy()
            sub.model = compose_node("model", model)
            sub.train = OmegaConf.merge(compose_node("train", acfg.recipe), acfg.train_overrides,
                                        {"augment": {"shift": float(value)}})  # fmt: skip
            sub.shift.models = []
            job = f"model={model}.shift={value}"
            res = run_stages(sub, out_dir, {job: shift.run})[job]
            row = res["dataset"][0]
            dys, accs = res["curves"]["CNN"]
            curves[f"{model}, shift {value}"] = (dys, accs)
            near = {f"acc_dy{dy}": accs[dys.index(dy)] for dy in (-3, -4, -5) if dy in dys}
            rows.append({"model": model, "train.augment.shift": value,
                         "max shift (px)": round(28 * float(value), 1), "test_acc": res["cnn_test_acc"],
                         **near, "acc_grid_mean": row["acc_grid_mean"], "consistency": row["consistency"],
                         "change_1px": row["change_1px"]})  # fmt: skip
    write_table(rows, out_dir / "augment")
    title = f"CNN test accuracy against vertical shift, by model and augmentation ({acfg.recipe} recipe)"
    save(curves_plot(curves, "dy (px, dx = 0; < 0 is up)", title), out_dir / "augment_sweep.png")
    return {"recipe": acfg.recipe, "rows": rows, "curves": curves, "levers": levers(rows)}


def levers(rows: list[dict]) -> list[dict]:
    """What each lever buys, read off the sweep's rows: the consistency and 1-px flips gained by
    every architecture over the first model at the same augmentation, and by every augmentation
    over none with the same architecture."""
    cell = {(r["model"], r["train.augment.shift"]): r for r in rows}
    models = list(dict.fromkeys(r["model"] for r in rows))
    shifts = list(dict.fromkeys(r["train.augment.shift"] for r in rows))
    out = []

    def gain(lever: str, held: str, a: dict, b: dict) -> None:
        out.append({"lever": lever, "held fixed": held,
                    "consistency (points)": round(100 * (b["consistency"] - a["consistency"]), 1),
                    "change_1px (points)": round(100 * (b["change_1px"] - a["change_1px"]), 1),
                    "acc_grid_mean (points)": round(100 * (b["acc_grid_mean"] - a["acc_grid_mean"]), 1)})

    first = models[0]
    for model in models[1:]:
        for value in shifts:
            if (first, value) in cell and (model, value) in cell:
                gain(f"model {first} → {model}", f"shift {value}", cell[first, value], cell[model, value])
    if 0.0 in shifts:
        for model in models:
            for value in (v for v in shifts if v != 0.0):
                if (model, 0.0) in cell and (model, value) in cell:
                    gain(f"augment.shift 0 → {value}", f"model {model}", cell[model, 0.0], cell[model, value])
    return out


def loss_comparison(cfg: DictConfig, out_dir: Path, main: dict) -> list[dict]:
    """The study's recipe again with each of reproduce.losses (train stage only): does the loss
    decide how confident the CNN gets? One row per loss, the main CNN's first."""
    rows = [loss_row(cfg.train.loss, main)]
    if cfg.get("checkpoint"):  # a user's weights: no recipe to train again
        return rows
    for loss in cfg.reproduce.losses:
        if loss == cfg.train.loss:
            continue
        sub = cfg.copy()
        sub.train.loss = loss
        job = f"loss={loss}"
        rows.append(loss_row(loss, run_stages(sub, out_dir, {job: train.run})[job]))
    return rows


def loss_row(loss: str, res: dict) -> dict:
    sure, cal = res["confidence"], res["calibration"]
    return {"train.loss": loss, "test_acc": res["test_acc"], "errors": sure["errors"],
            "test cross-entropy": sure["cross_entropy"], "largest logit size": sure["max_abs_logit"],
            "ECE": cal["before"]["ece"], "ECE after T": cal["after"]["ece"], "T": cal["temperature"],
            "epochs": res.get("epochs"), "key": res["key"]}  # fmt: skip


def keras_round_trip(cfg: DictConfig, out_dir: Path) -> dict:
    """The CNN written as a Keras 2 weights file (save_keras) and opened the way `checkpoint=FILE`
    opens a user's Keras weights: do the predictions survive the layout change?"""
    cnn = trained_cnn(cfg)
    path = save_keras(cnn.model, out_dir / "model.h5")
    back = load_model(path, instantiate(plain(cfg.model)))  # what checkpoint=FILE reads it with
    images, labels = split_tensors(data_spec(cfg), "scored")
    ours, theirs = test_logits(cnn.model, images), test_logits(back, images)
    return {"file": str(path), "megabytes": round(path.stat().st_size / 2**20, 2), "images": len(labels),
            "test_acc": cnn.meta["test_acc"],
            "test_acc_from_keras_file": (theirs.argmax(1) == labels).sum().item() / len(labels),
            "same_top1": int((ours.argmax(1) == theirs.argmax(1)).sum()),
            "max_abs_logit_diff": float((ours - theirs).abs().max())}  # fmt: skip


def run(cfg: DictConfig, out_dir: Path) -> dict:
    """Train (cfg.train, the study's recipe under +experiment=reproduce), run every stage, report."""
    start = time.perf_counter()
    results = run_stages(cfg, out_dir, CHAIN)
    results["losses"] = loss_comparison(cfg, out_dir / "losses", results["train"])
    results["keras_file"] = keras_round_trip(cfg, out_dir / "keras")
    results["augment"] = augmentation_sweep(cfg, out_dir / "augment")
    bench = Path(cfg.reproduce.bench)
    results["bench"] = json.loads(bench.read_text()) if bench.is_file() else None
    seeds = cfg.reproduce.seeds
    results["seeds"] = json.loads(Path(seeds).read_text()) | {"path": seeds} if seeds else None
    results["seconds"] = time.perf_counter() - start
    report = write_report(cfg, out_dir, results, Path(cfg.reproduce.docs))
    log.info("report: %s", report)
    for c in results["conclusions"]:
        log.info("conclusion: %s -> %s", c["claim"], c["verdict"])
    return {"report": str(report), "cnn_test_acc": results["train"]["test_acc"],
            "cnn_key": results["shift"]["cnn_key"], "conclusions": results["conclusions"]}  # fmt: skip
