"""The reproduce stage (+experiment=reproduce, `make reproduce`): the whole study on one CNN (the
study's recipe), an augmentation sweep, then docs/RESULTS.md written from the results."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

from mnist_probe.cache import write_json
from mnist_probe.config import CONF
from mnist_probe.stages import activations, interpreters, shift, train
from mnist_probe.stages.common import run_stages
from mnist_probe.stages.report import write_report, write_table
from mnist_probe.viz import curves_plot, save

log = logging.getLogger(__name__)

# The stages the study's run chains, in order.
CHAIN = {"train": train.run, "activations": activations.run, "interpreters": interpreters.run,
         "shift": shift.run}  # fmt: skip


def compose_train(recipe: str) -> DictConfig:
    """The train node of conf/train/RECIPE.yaml, composed (inside a Hydra app or outside one)."""
    if GlobalHydra.instance().is_initialized():
        return compose("config", overrides=[f"train={recipe}"]).train
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
        return compose("config", overrides=[f"train={recipe}"]).train


def augmentation_sweep(cfg: DictConfig, out_dir: Path) -> dict:
    """One CNN per train.augment.shift value (a lighter recipe), each through the shift stage."""
    acfg = cfg.reproduce.augment
    rows, curves = [], {}
    for value in acfg.shifts:
        sub = cfg.copy()
        sub.train = OmegaConf.merge(compose_train(acfg.recipe), acfg.train_overrides,
                                    {"augment": {"shift": float(value)}})  # fmt: skip
        sub.shift.models = []
        job = out_dir / f"augment.shift={value}"
        log.info("augmentation sweep: train.augment.shift=%s", value)
        res = shift.run(sub, job)
        write_json(job / "results.json", res)
        row = res["dataset"][0]
        curves[f"augment.shift={value}"] = res["curves"]["CNN"]
        dys, accs = res["curves"]["CNN"]
        rows.append({"train.augment.shift": value, "max shift (px)": round(28 * float(value), 1),
                     "test_acc": res["cnn_test_acc"], "acc_dy-4": accs[dys.index(-4)] if -4 in dys else None,
                     "acc_grid_mean": row["acc_grid_mean"], "consistency": row["consistency"],
                     "change_1px": row["change_1px"]})  # fmt: skip
    write_table(rows, out_dir / "augment")
    title = f"CNN test accuracy against vertical shift, by training augmentation ({acfg.recipe} recipe)"
    save(curves_plot(curves, "dy (px, dx = 0; < 0 is up)", title), out_dir / "augment_sweep.png")
    return {"recipe": acfg.recipe, "rows": rows, "curves": curves}


def run(cfg: DictConfig, out_dir: Path) -> dict:
    """Train (cfg.train, the study's recipe under +experiment=reproduce), run every stage, report."""
    start = time.perf_counter()
    results = run_stages(cfg, out_dir, CHAIN)
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
