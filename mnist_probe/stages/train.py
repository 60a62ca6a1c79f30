"""The train stage (+experiment=train): train (or load from the cache) the CNN, report how it scores."""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from mnist_probe.calibration import fit_temperature, reliability, scores
from mnist_probe.data import split_tensors
from mnist_probe.pages.verdicts import gap_sentence
from mnist_probe.plots import gap_plot, reliability_diagram, save
from mnist_probe.rows import from_json
from mnist_probe.schema import typed
from mnist_probe.scoring import confidence, logits_of
from mnist_probe.specs import KERAS_EPSILON, DataSpec
from mnist_probe.stages.adapters import log_hparams, trained_cnn, writer
from mnist_probe.stages.results import Calibration, TrainingPart, TrainResult
from mnist_probe.tables import write_table
from mnist_probe.training import scored_logits

log = logging.getLogger(__name__)


def run(cfg: DictConfig, out_dir: Path) -> TrainResult:
    """Train (or load from the cache) the CNN; report its test accuracy and how confident it is."""
    cnn = trained_cnn(cfg, out_dir)
    meta = cnn.meta
    data = typed(cfg).data
    labels = split_tensors(data, "scored")[1]
    logits = scored_logits(cnn, data, typed(cfg).paths.cache)
    sure = confidence(logits, labels)
    log.info(
        "test cross-entropy %.4f; its %d errors carry %.1f%% (%.1f nats each), %d of them with P(true) "
        "< %g (where the clipped loss gives no gradient); largest logit size %.0f",
        sure.cross_entropy,
        sure.errors,
        100 * sure.error_share_of_loss,
        sure.mean_loss_on_errors,
        sure.errors_below_epsilon,
        KERAS_EPSILON,
        sure.max_abs_logit,
    )
    calibration = calibrate(data, cnn.model, logits, labels, out_dir)
    log_hparams(
        out_dir,
        {
            "test_acc": meta["test_acc"],
            "test_cross_entropy": sure.cross_entropy,
            "ece_after_scaling": calibration.after.ece,
        },
    )
    gap = cnn.gap
    if gap:
        write_table(gap, out_dir / "gap")
        save(gap_plot(gap), out_dir / "gap.png")
        log.info("%s (gap.md, gap.png)", gap_sentence(gap))
    parts = [from_json(TrainingPart, part) for part in meta.get("parts", [])]
    return TrainResult(**{**meta, "gap": gap, "parts": parts}, confidence=sure, calibration=calibration)


def calibrate(data: DataSpec, model, logits, labels, out_dir: Path) -> Calibration:
    """ECE, NLL and Brier on the scored test set, before and after a temperature fitted on the
    validation split; the reliability diagram as calibration.png and in TensorBoard."""
    val_images, val_labels = split_tensors(data, "val")
    temperature = fit_temperature(logits_of(model, val_images), val_labels)
    before, after = scores(logits, labels), scores(logits / temperature, labels)
    fig = reliability_diagram(
        reliability(logits, labels),
        reliability(logits / temperature, labels),
        temperature,
        (before.ece, after.ece),
    )
    tb = writer(out_dir, "calibration")
    save(fig, out_dir / "calibration.png", tb, "calibration/reliability")
    tb.close()
    log.info(
        "calibration: ECE %.2f%% -> %.2f%%, NLL %.4f -> %.4f, Brier %.4f -> %.4f with temperature %.3g "
        "(fitted on %d validation images)",
        100 * before.ece,
        100 * after.ece,
        before.nll,
        after.nll,
        before.brier,
        after.brier,
        temperature,
        len(val_labels),
    )
    return Calibration(temperature, before, after, bins=15)
