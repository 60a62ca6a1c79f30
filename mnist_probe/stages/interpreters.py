"""The interpreters stage (+experiment=interpreters): other classifiers on the CNN's code vectors
and on raw pixels, the study's accuracy table, and a linear probe on every layer."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from mnist_probe import study
from mnist_probe.data import split_tensors
from mnist_probe.interpretation import features_of, fit_or_load_interpreter
from mnist_probe.intervals import bootstrap_mean
from mnist_probe.keras_cnn import KerasCNN
from mnist_probe.plots import interpreter_bars, probe_plot, save
from mnist_probe.probes import cached_linear_probes
from mnist_probe.schema import typed
from mnist_probe.stages.adapters import interpreter_spec, log_hparams, selected, trained_cnn, writer
from mnist_probe.stages.results import InterpreterRow, InterpretersResult
from mnist_probe.tables import write_table
from mnist_probe.training import scored_logits

log = logging.getLogger(__name__)


def run(cfg: DictConfig, out_dir: Path) -> InterpretersResult:
    """Fit interpreters on code vectors / pixels; table, bar chart, probes by layer, TensorBoard."""
    c = typed(cfg)
    cnn = trained_cnn(cfg, out_dir)  # if it must train, its curves go to this run
    label = "CNN softmax (dense_2)" if isinstance(cnn.model, KerasCNN) else "CNN softmax"
    cnn_ref = study.CNN_ACC if c.beside_study else None  # its figures: its CNN on MNIST
    diff = None if cnn_ref is None else cnn.test_acc - cnn_ref
    labels = split_tensors(c.data, "scored")[1]
    cnn_hits = (scored_logits(cnn, c.data, c.paths.cache).argmax(1) == labels).numpy().astype(np.float64)
    own = InterpreterRow(
        label,
        "image",
        cnn.test_acc,
        cnn_ref,
        diff,
        cnn.meta.get("train_seconds"),
        None,
        list(bootstrap_mean(cnn_hits, seed=c.seed)),
    )
    rows = []
    for name in selected(cfg, cfg.interpreters.models):
        spec = interpreter_spec(cfg, name)
        pipe, fit_meta = fit_or_load_interpreter(spec, cnn, c.data, c.paths.cache)
        # what pipe[0] makes of the test images the CNN was scored on (all 10k, or data.test_subset)
        x, y = features_of(spec.features, "scored", c.data, c.paths.cache, cnn)
        start = time.perf_counter()
        hits = (pipe[-1].predict(x) == y).astype(np.float64)
        seconds = round(time.perf_counter() - start, 2)
        acc = float(hits.mean())
        intervals = [list(bootstrap_mean(values, seed=c.seed)) for values in (hits, hits - cnn_hits)]
        # on pixels, any run on MNIST is comparable; on code vectors, only its CNN's
        comparable = c.beside_study or (c.data.study and spec.features == "pixels")
        ref = study.study_acc(spec.name, spec.features) if comparable else None
        rows.append(
            InterpreterRow(
                spec.name,
                spec.features,
                acc,
                ref,
                None if ref is None else acc - ref,
                fit_meta["fit_seconds"],
                seconds,
                *intervals,
            )
        )
        beside = f"study {ref:.4f}" if ref is not None else "no study figure: its CNN on MNIST only"
        log.info("%s on %s: %.4f (%s)", spec.name, spec.features, acc, beside)
    pcfg = cfg.interpreters.probes
    results = InterpretersResult(
        cnn.key,
        own,
        rows,
        # not in every job of an interpreter sweep
        cached_linear_probes(cnn, c.data, c.paths.cache, pcfg.train_samples, pcfg.test_samples, c.max_layers)
        if pcfg.enabled and not cfg.get("interpreter")
        else None,
    )
    md = write_table(results.table(), out_dir / "interpreters")
    tb = writer(out_dir, "interpreters")
    tb.add_text("interpreters/table", md)
    fig = interpreter_bars(results.table())
    save(fig, out_dir / "interpreters.png", tb, "interpreters/accuracy")
    if results.probes:
        tb.add_text("interpreters/probes", write_table(results.probes, out_dir / "probes"))
        fig = probe_plot(results.probes)
        save(fig, out_dir / "probes.png", tb, "interpreters/probes")
    tb.close()
    log_hparams(out_dir, {f"{r.interpreter}@{r.features}": r.test_acc for r in results.table()})
    log.info("interpreter table: %s", out_dir / "interpreters.md")
    return results
