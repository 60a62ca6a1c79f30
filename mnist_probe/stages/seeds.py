"""The seeds stage (+experiment=seeds, `make seeds`): one seed's headline numbers, so that a sweep
over `seed` gives each number with its spread (the sweep summary writes seeds.md: mean ± std, min,
max, and whether the study's single figure lies inside our spread).

Each job trains (or loads from the cache) its seed's CNN once; the train, interpreters and shift
stages then run on it, each in its own subfolder, as `+experiment=NAME seed=S` would.
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from mnist_probe import study
from mnist_probe.schema import typed
from mnist_probe.stages import interpreters, shift, train
from mnist_probe.stages.adapters import run_stages
from mnist_probe.stages.results import InterpretersResult, SeedsResult, ShiftResult, TrainResult

log = logging.getLogger(__name__)

# What each seed runs, in order, each into its own subfolder.
CHAIN = {"train": train.run, "interpreters": interpreters.run, "shift": shift.run}


def headline(trained: TrainResult, interpreted: InterpretersResult, shifted: ShiftResult) -> dict[str, float]:
    """The numbers a reader quotes, flat: name -> value (accuracies and rates as fractions)."""
    out = {
        "cnn_test_acc": trained.test_acc,
        "cnn_cross_entropy": trained.confidence.cross_entropy,
        "cnn_ece": trained.calibration.before.ece,
    }
    for row in interpreted.rows:
        out[study.interpreter_name(row.interpreter, row.features)] = row.test_acc
    for model in shifted.models:  # the CNN, then each interpreter of the shift table
        grid = shifted.dataset_row(model)
        if grid is not None:
            out[study.shift_name(model, "consistency")] = grid.consistency
            out[study.shift_name(model, "change_1px")] = grid.change_1px
        curve = shifted.curves.get(model)
        if curve is not None:
            out |= {
                study.shift_name(model, f"acc_dy{dy}"): curve.at(dy)
                for dy in study.TURNING_DY
                if dy in curve.dys
            }
        p_true = shifted.p_true(model)  # the study's digit: P(true class) where its table turns
        out |= {study.digit_name(dy, model): p_true[(0, dy)] for dy in study.TURNING_DY if (0, dy) in p_true}
    return out


def run(cfg: DictConfig, out_dir: Path) -> SeedsResult:
    """Train (or load) this seed's CNN; its train, interpreters and shift results; the headline."""
    results = run_stages(cfg, out_dir, CHAIN)
    numbers = headline(results["train"], results["interpreters"], results["shift"])
    log.info("seed %d headline: %s", cfg.seed, ", ".join(f"{k} {v:.4g}" for k, v in numbers.items()))
    shifted = results["shift"]
    its_image = study.its_image(cfg.shift.index, shifted.digit)
    return SeedsResult(results["train"].key, numbers, study.comparable(typed(cfg).beside_study, its_image))
