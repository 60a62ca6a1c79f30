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

from mnist_probe.stages import interpreters, shift, train
from mnist_probe.stages.common import run_stages

log = logging.getLogger(__name__)

# What each seed runs, in order, each into its own subfolder.
STAGES = {"train": train.run, "interpreters": interpreters.run, "shift": shift.run}

# The vertical shifts whose dataset-scale accuracy is a headline number (the study's table turns there).
DYS = (-3, -4, -5)


def headline(trained: dict, interpreted: dict, shifted: dict) -> dict[str, float]:
    """The numbers a reader quotes, flat: name -> value (accuracies and rates as fractions)."""
    out = {"cnn_test_acc": trained["test_acc"], "cnn_cross_entropy": trained["confidence"]["cross_entropy"],
           "cnn_ece": trained["calibration"]["before"]["ece"]}  # fmt: skip
    for row in interpreted["rows"][1:]:  # row 0 is the CNN itself
        out[f"{row['interpreter']}@{row['features']}_acc"] = row["test_acc"]
    for row in shifted.get("dataset", []):
        if row["model"] == "CNN":
            out["cnn_consistency"] = row["consistency"]
            out["cnn_change_1px"] = row["change_1px"]
    if "CNN" in shifted.get("curves", {}):
        dys, accs = shifted["curves"]["CNN"]
        out |= {f"cnn_acc_dy{dy}": accs[dys.index(dy)] for dy in DYS if dy in dys}
    for row in shifted["rows"]:  # the study's digit: P(true class) where its table turns
        if row["model"] == "CNN" and row["dx"] == 0 and row["dy"] in DYS:
            out[f"cnn_digit_p_true_dy{row['dy']}"] = row["p_true"]
    return out


def run(cfg: DictConfig, out_dir: Path) -> dict:
    """Train (or load) this seed's CNN; its train, interpreters and shift results; the headline."""
    results = run_stages(cfg, out_dir, STAGES)
    numbers = headline(results["train"], results["interpreters"], results["shift"])
    log.info("seed %d headline: %s", cfg.seed, ", ".join(f"{k} {v:.4g}" for k, v in numbers.items()))
    return {"cnn_key": results["train"]["key"], "headline": numbers}
