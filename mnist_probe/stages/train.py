"""The train stage (+experiment=train): train (or load from the cache) the CNN, report how it scores."""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from mnist_probe.data import split_tensors
from mnist_probe.stages.common import data_spec, trained_cnn
from mnist_probe.train import confidence, test_logits

log = logging.getLogger(__name__)


def run(cfg: DictConfig, out_dir: Path) -> dict:
    """Train (or load from the cache) the CNN; report its test accuracy and how confident it is."""
    cnn = trained_cnn(cfg, out_dir)
    meta = cnn.meta
    images, labels = split_tensors(data_spec(cfg), "scored")
    sure = confidence(test_logits(cnn.model, images), labels)
    if cfg.get("checkpoint"):
        how = "your checkpoint"
    else:
        how = "from cache" if meta["cached"] else f"trained in {meta['train_seconds']:.0f}s"
    log.info("CNN test accuracy %.2f%% on %d images (%s; %s)",
             100 * meta["test_acc"], meta["test_images"], how, meta["checkpoint"])  # fmt: skip
    log.info("test cross-entropy %.4f; its %d errors carry %.1f%% (%.1f nats each); largest |logit| %.0f",
             sure["cross_entropy"], sure["errors"], 100 * sure["error_share_of_loss"],
             sure["mean_loss_on_errors"], sure["max_abs_logit"])  # fmt: skip
    return {**meta, "confidence": sure}
