"""The interpreters stage (+experiment=interpreters): other classifiers on the CNN's code vectors
and on raw pixels, the study's accuracy table, and a linear probe on every layer."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from mnist_probe import study
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
from mnist_probe.viz import interpreter_bars, probe_plot, save

log = logging.getLogger(__name__)


def probes(cfg: DictConfig, model, train_samples: int, test_samples: int | None) -> list[dict]:
    """Linear probes on every layer: train_samples random training images, the first test_samples
    test images (all when None)."""
    data = data_spec(cfg)
    x_train, y_train = split_tensors(data, "train")
    keep = np.random.default_rng(0).permutation(len(y_train))[:train_samples]
    x_test, y_test = split_tensors(data, "test")
    x_test, y_test = x_test[:test_samples], y_test[:test_samples]
    return linear_probes(model, to_float(x_train[keep]), y_train[keep].numpy(),
                         to_float(x_test), y_test.numpy())  # fmt: skip


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
        x, y = features(cfg, kind, "test", cnn)  # what pipe[0] makes of the 10k test images, cached
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
        results["probes"] = probes(cfg, cnn.model, pcfg.train_samples, pcfg.test_samples)
        tb.add_text("interpreters/probes", write_table(results["probes"], out_dir / "probes"))
        fig = probe_plot(results["probes"])
        tb.add_figure("interpreters/probes", fig, close=False)
        save(fig, out_dir / "probes.png")
    tb.close()
    log_hparams(out_dir, {f"{r['interpreter']}@{r['features']}": r["test_acc"] for r in rows})
    log.info("interpreter table: %s", out_dir / "interpreters.md")
    return results
