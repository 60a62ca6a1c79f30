"""The interpreters stage (+experiment=interpreters): other classifiers on the CNN's code vectors
and on raw pixels, the study's accuracy table, and a linear probe on every layer."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from mnist_probe import study
from mnist_probe.cache import config_key, get_or_compute
from mnist_probe.data import split_tensors, to_float
from mnist_probe.interpreters import linear_probes
from mnist_probe.stages.common import (
    data_spec,
    features,
    fitted_interpreter,
    interpreter_settings,
    log_hparams,
    selected,
    trained_cnn,
    writer,
)
from mnist_probe.stages.report import write_table
from mnist_probe.train import TrainedCNN
from mnist_probe.viz import interpreter_bars, probe_plot, save

log = logging.getLogger(__name__)


# What decides a probe's numbers besides the CNN and the samples: bump when linear_probes changes.
PROBES_VERSION = "standardscaler-logreg-C0.1-iter100"


def probes(cfg: DictConfig, cnn: TrainedCNN, train_samples: int, test_samples: int | None) -> list[dict]:
    """Linear probes on every layer: train_samples random training images, the first test_samples
    test images (all when None). Cached per CNN and samples (minutes of fitting on 2 cores)."""
    data = data_spec(cfg)

    def compute(staging: Path) -> dict:
        x_train, y_train = split_tensors(data, "train")
        keep = np.random.default_rng(0).permutation(len(y_train))[:train_samples]
        x_test, y_test = split_tensors(data, "test")
        x_test, y_test = x_test[:test_samples], y_test[:test_samples]
        return {"rows": linear_probes(cnn.model, to_float(x_train[keep]), y_train[keep].numpy(),
                                      to_float(x_test), y_test.numpy())}  # fmt: skip

    key = config_key(PROBES_VERSION, cnn.key, data.content(), train_samples, test_samples)
    entry = Path(cfg.paths.cache) / f"probes-{key}"
    rows, _, cached = get_or_compute(entry, compute, lambda _, meta: meta["rows"])
    if cached:
        log.info("linear probes from the cache (probes-%s)", key)
    return rows


def run(cfg: DictConfig, out_dir: Path) -> dict:
    """Fit interpreters on code vectors / pixels; table, bar chart, probes by layer, TensorBoard."""
    cnn = trained_cnn(cfg, out_dir)  # if it must train, its curves go to this run
    rows = [{
        "interpreter": "CNN softmax (dense_2)", "features": "image", "test_acc": cnn.test_acc,
        "study_acc": study.CNN_ACC, "diff": cnn.test_acc - study.CNN_ACC,
        "fit_seconds": cnn.meta.get("train_seconds"), "predict_seconds": None,
    }]  # fmt: skip
    for spec in selected(cfg, cfg.interpreters.models):
        settings = interpreter_settings(cfg, spec)
        name, kind = settings["name"], settings["features"]
        pipe, fit_meta = fitted_interpreter(cfg, settings, cnn)
        # what pipe[0] makes of the test images the CNN was scored on (all 10k, or data.test_subset)
        x, y = features(cfg, kind, "scored", cnn)
        start = time.perf_counter()
        acc = float(np.mean(pipe[-1].predict(x) == y))
        seconds = round(time.perf_counter() - start, 2)
        ref = study.study_acc(name, kind)
        rows.append({
            "interpreter": name, "features": kind, "test_acc": acc, "study_acc": ref,
            "diff": None if ref is None else acc - ref, "fit_seconds": fit_meta["fit_seconds"],
            "predict_seconds": seconds,
        })  # fmt: skip
        log.info("%s on %s: %.4f (study %s)", name, kind, acc, ref)
    md = write_table(rows, out_dir / "interpreters")
    tb = writer(out_dir, "interpreters")
    tb.add_text("interpreters/table", md)
    fig = interpreter_bars(rows)
    tb.add_figure("interpreters/accuracy", fig, close=False)
    save(fig, out_dir / "interpreters.png")
    results: dict = {"cnn_key": cnn.key, "rows": rows}
    pcfg = cfg.interpreters.probes
    if pcfg.enabled and not cfg.get("interpreter"):  # not in every job of an interpreter sweep
        results["probes"] = probes(cfg, cnn, pcfg.train_samples, pcfg.test_samples)
        tb.add_text("interpreters/probes", write_table(results["probes"], out_dir / "probes"))
        fig = probe_plot(results["probes"])
        tb.add_figure("interpreters/probes", fig, close=False)
        save(fig, out_dir / "probes.png")
    tb.close()
    log_hparams(out_dir, {f"{r['interpreter']}@{r['features']}": r["test_acc"] for r in rows})
    log.info("interpreter table: %s", out_dir / "interpreters.md")
    return results
