"""Calibration: metrics that see what accuracy hides, and a temperature that undoes over-confidence."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mnist_probe.calibration import fit_temperature, reliability, scores
from mnist_probe.data import split_tensors
from mnist_probe.keras_cnn import KerasCNN
from mnist_probe.model import load_model
from mnist_probe.scoring import logits_of as logits_of  # (a test_ name would be collected)
from tests.conftest import SMALL_FILTERS, data_spec


def calibrated(n: int = 20_000, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits whose softmax is the true label distribution: labels drawn from the model's own P."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, 10, generator=g) * 2
    labels = torch.multinomial(torch.softmax(logits, 1), 1, generator=g).squeeze(1)
    return logits, labels


def test_calibrated_logits_score_near_zero_ece_and_over_confidence_does_not():
    logits, labels = calibrated()
    fair, loud = scores(logits, labels), scores(logits * 8, labels)
    assert fair.ece < 0.02 and loud.ece > 0.2
    assert fair.accuracy == loud.accuracy  # same argmax: accuracy cannot tell them apart
    assert loud.nll > 2 * fair.nll and loud.brier > fair.brier


def test_temperature_recovers_the_scale_of_over_confident_logits():
    logits, labels = calibrated()
    assert fit_temperature(logits * 8, labels) == pytest.approx(8, rel=0.05)
    assert fit_temperature(logits / 3, labels) == pytest.approx(1 / 3, rel=0.05)
    huge = logits * 4000  # the study recipe's CNN had logits in the thousands: no overflow
    t = fit_temperature(huge, labels)
    assert scores(huge / t, labels).nll < 0.01 * scores(huge, labels).nll


def test_reliability_bins_count_every_image_once():
    logits, labels = calibrated(2000)
    bins = reliability(logits, labels)
    assert sum(bins["count"]) == 2000 and len(bins["accuracy"]) == 15
    rows = zip(bins["confidence"], bins["accuracy"], bins["count"], strict=True)
    filled = [(c, a) for c, a, n in rows if n > 100]
    assert all(abs(c - a) < 0.1 for c, a in filled)  # calibrated: accuracy follows confidence


def test_train_stage_reports_calibration(small_run):
    cfg, results = small_run
    cal = results["calibration"]
    assert cal["temperature"] > 0 and set(cal["before"]) == {"ece", "nll", "brier", "accuracy"}
    assert cal["before"]["accuracy"] == pytest.approx(results["test_acc"], abs=1e-6)
    assert cal["after"]["accuracy"] == cal["before"]["accuracy"]  # T changes confidence, not argmax
    # the NLL against one written out by hand (log-sum-exp in numpy) on the same model and images
    images, labels = split_tensors(data_spec(cfg), "scored")
    model = load_model(results["checkpoint"], KerasCNN(filters=SMALL_FILTERS))
    logits = logits_of(model, images).double().numpy()
    top = logits.max(1, keepdims=True)
    log_z = (top + np.log(np.exp(logits - top).sum(1, keepdims=True)))[:, 0]
    nll = float(np.mean(log_z - logits[np.arange(len(labels)), labels.numpy()]))
    assert cal["before"]["nll"] == pytest.approx(nll, rel=1e-6)
    out = Path(cfg.paths.output_dir)
    assert (out / "calibration.png").is_file()
    assert json.loads((out / "results.json").read_text())["calibration"]["temperature"] == cal["temperature"]
