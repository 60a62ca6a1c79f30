"""The reproduce stage (+experiment=reproduce, `make reproduce`): the whole study on one CNN (the
study's recipe), the same recipe with each other loss, an architecture × augmentation sweep, then
docs/RESULTS.md written from the results."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from mnist_probe.cache import atomic_write
from mnist_probe.cka import cka_between
from mnist_probe.config import compose_config, job_choice
from mnist_probe.data import split_tensors
from mnist_probe.keras_weights import save_keras
from mnist_probe.levers import levers
from mnist_probe.logged import tensorboard_rows
from mnist_probe.model import build_model, load_model, top1_accuracy
from mnist_probe.pages.conclusions import conclusions
from mnist_probe.pages.page_results import (
    AugmentResult,
    AugmentRow,
    CkaPair,
    KerasRoundTrip,
    LossRow,
    PageResults,
    ReproduceResult,
)
from mnist_probe.pages.report import RESULTS_PAGE, write_results
from mnist_probe.pages.sweep import read_seeds
from mnist_probe.plots import cka_heatmap, curves_plot, gap_plot, position_curves, save
from mnist_probe.rows import to_json
from mnist_probe.schema import typed
from mnist_probe.scoring import logits_of
from mnist_probe.stages import beyond, shift, train
from mnist_probe.stages.adapters import page_setting, run_stages, trained_cnn, writer
from mnist_probe.stages.report import CHAIN
from mnist_probe.stages.results import TrainResult
from mnist_probe.tables import write_table
from mnist_probe.training import OpenedModel

log = logging.getLogger(__name__)


def compose_node(group: str, option: str) -> DictConfig:
    """The GROUP node of conf/GROUP/OPTION.yaml, composed (inside a Hydra app or outside one)."""
    return compose_config(f"{group}={option}")[group]


def sweep_cfg(cfg: DictConfig, model: str, shift_value: float, seed: int | None = None) -> DictConfig:
    """The config of one CNN of the sweep: the model's node, the sweep's recipe at this augmentation."""
    acfg = cfg.reproduce.augment
    sub = cfg.copy()
    sub.model = {**OmegaConf.to_container(compose_node("model", model)), **acfg.model_overrides}
    sub.train = OmegaConf.merge(
        compose_node("train", acfg.recipe), acfg.train_overrides, {"augment": {"shift": float(shift_value)}}
    )
    sub.shift.models = []
    if seed is not None:
        sub.seed = seed
    return sub


def augmentation_sweep(cfg: DictConfig, out_dir: Path) -> AugmentResult:
    """Architecture against augmentation: one CNN per model × train.augment.shift (a lighter recipe),
    each through the shift stage, and what each lever buys in consistency and 1-px flips. Then, on
    the first model at the recipe's own augmentation (the reference): its train/val gap, and linear
    CKA against the same CNN trained with another seed and against the other pooling; with
    reproduce.augment.probes, every CNN's position and class probes per layer."""
    c, acfg = typed(cfg), cfg.reproduce.augment
    test_images, test_labels = split_tensors(c.data, "test")
    images = test_images[: c.beyond.images]  # for CKA
    rows, cnns = [], {}
    for model in acfg.models:
        for value in acfg.shifts:
            sub = sweep_cfg(cfg, model, value)
            job = f"model={model}.shift={value}"
            res = run_stages(sub, out_dir, {job: shift.run})[job]
            grid = res.dataset_row("CNN")
            cnn = cnns[model, float(value)] = trained_cnn(sub)  # from the cache: the shift stage trained it
            positions = []
            if acfg.probes:
                positions = beyond.position_rows(
                    cnn, test_images, test_labels, c.beyond, c.seed, c.max_layers
                )
            rows.append(
                AugmentRow(
                    model,
                    value,
                    res.cnn_test_acc,
                    res.curves["CNN"],
                    grid.acc_grid_mean,
                    grid.consistency,
                    grid.change_1px,
                    positions,
                )
            )
    write_table([r.table_row(c.data.shape[2]) for r in rows], out_dir / "augment")
    title = f"CNN test accuracy against vertical shift, by model and augmentation ({acfg.recipe} recipe)"
    curves = {r.label(): (r.curve.dys, r.curve.accs) for r in rows}
    figures = {"augment_sweep": curves_plot(curves, "dy (px, dx = 0; < 0 is up)", title)}
    if acfg.probes:
        figures["positions"] = position_curves({r.label(): r.positions for r in rows})

    own = float(compose_node("train", acfg.recipe).augment.shift)
    ref_shift = own if own in [float(v) for v in acfg.shifts] else float(acfg.shifts[-1])
    first = acfg.models[0]
    reference = next(r for r in rows if r.model == first and float(r.shift) == ref_shift)
    ref = cnns[first, ref_shift]
    gap = ref.gap
    if gap:
        write_table(gap, out_dir / "gap")
        save(gap_plot(gap), out_dir / "gap.png")
    pairs = []
    if acfg.cka_seed is not None:
        twin = trained_cnn(sweep_cfg(cfg, first, ref_shift, acfg.cka_seed))
        pairs.append(
            cka_pair(
                "seeds",
                f"{first}, seed {c.seed}",
                ref,
                f"seed {acfg.cka_seed}",
                twin,
                images,
                c.beyond,
                c.max_layers,
            )
        )
    for model in acfg.models[1:]:
        other = cnns[model, ref_shift]
        pairs.append(
            cka_pair(
                f"vs_{model}",
                f"{first}, shift {ref_shift}",
                ref,
                model,
                other,
                images,
                c.beyond,
                c.max_layers,
            )
        )
    for pair in pairs:
        figures[f"cka_{pair.name}"] = cka_heatmap(
            np.array(pair.matrix), pair.rows, pair.cols, f"CKA: {pair.first} (rows) vs {pair.second}"
        )
    tb = writer(out_dir, "augment")  # TensorBoard's images: augment/NAME
    for name, fig in figures.items():
        save(fig, out_dir / f"{name}.png", tb, f"augment/{name}")
    tb.close()
    return AugmentResult(acfg.recipe, rows, levers(rows), reference, gap, pairs)


def cka_pair(
    name: str, first: str, a: OpenedModel, second: str, b: OpenedModel, images, bcfg, most: int | None
) -> CkaPair:
    """Linear CKA between every probed layer of CNN a and every probed layer of CNN b."""
    rows, cols, matrix, ci = cka_between(
        a.model, b.model, images, beyond.probed_layers(a, bcfg, most), beyond.probed_layers(b, bcfg, most)
    )
    return CkaPair(
        name,
        first,
        second,
        rows,
        cols,
        np.round(matrix, 4).tolist(),
        None if ci is None else np.round(ci, 4).tolist(),
    )


def loss_comparison(cfg: DictConfig, out_dir: Path, main: TrainResult) -> list[LossRow]:
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


def loss_row(loss: str, res: TrainResult) -> LossRow:
    sure, cal = res.confidence, res.calibration
    return LossRow(
        loss,
        res.test_acc,
        sure.errors,
        sure.errors_below_epsilon,
        sure.cross_entropy,
        sure.max_abs_logit,
        cal.before.ece,
        cal.after.ece,
        cal.temperature,
        res.epochs,
        res.key,
    )


def keras_round_trip(cfg: DictConfig, out_dir: Path) -> KerasRoundTrip:
    """The CNN written as a Keras 2 weights file (save_keras) and opened the way `checkpoint=FILE`
    opens a user's Keras weights: do the predictions survive the layout change?"""
    c = typed(cfg)
    cnn = trained_cnn(cfg)
    path = save_keras(cnn.model, out_dir / "model.h5")
    back = load_model(path, build_model(c.model))  # what checkpoint=FILE reads it with
    images, labels = split_tensors(c.data, "scored")
    ours, theirs = logits_of(cnn.model, images), logits_of(back, images)
    return KerasRoundTrip(
        file=str(path),
        megabytes=round(path.stat().st_size / 2**20, 2),
        images=len(labels),
        test_acc=cnn.meta["test_acc"],
        test_acc_from_keras_file=top1_accuracy(theirs, labels),
        same_top1=int((ours.argmax(1) == theirs.argmax(1)).sum()),
        max_abs_logit_diff=float((ours - theirs).abs().max()),
    )


def run(cfg: DictConfig, out_dir: Path) -> ReproduceResult:
    """Train (cfg.train, the study's recipe under +experiment=reproduce), run every stage, report."""
    start = time.perf_counter()
    chained = run_stages(cfg, out_dir, CHAIN)
    losses = loss_comparison(cfg, out_dir / "losses", chained["train"])
    keras_file = keras_round_trip(cfg, out_dir / "keras")
    augment = augmentation_sweep(cfg, out_dir / "augment")
    seeds = cfg.reproduce.seeds
    results = PageResults(
        **chained,
        augment=augment,
        losses=losses,
        keras_file=keras_file,
        seeds=dataclasses.replace(read_seeds(Path(seeds)), path=seeds) if seeds else None,
        seconds=time.perf_counter() - start,
        setting=dataclasses.replace(page_setting(cfg), recipe_name=job_choice("train", "study")),
        tensorboard=tensorboard_rows(out_dir, list(CHAIN)),
        run_dir=os.path.relpath(out_dir) if Path.cwd() in out_dir.resolve().parents else str(out_dir),
    )
    checked = conclusions(results)
    docs = Path(cfg.reproduce.docs)
    saved = {"data": results.setting.data, "page": RESULTS_PAGE, "results": to_json(results)}
    atomic_write(docs / "RESULTS.json", lambda tmp: tmp.write_text(json.dumps(saved)))
    report = write_results(out_dir, results, docs)
    log.info("report: %s", report)
    for c in checked:
        log.info("conclusion: %s -> %s", c.claim, c.verdict)
    return ReproduceResult(str(report), chained["shift"].cnn_key, chained["train"].test_acc, checked)
