"""The shift stage (+experiment=shift): the study's translation table for one digit, then the same
question asked of many test images on a grid of shifts."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, ListConfig
from sklearn.pipeline import Pipeline
from torch.utils.tensorboard import SummaryWriter
from torchvision.utils import make_grid

from mnist_probe.data import first_of_each_class, split_tensors, to_float
from mnist_probe.interpretation import fit_or_load_interpreter
from mnist_probe.layer_names import resolve_layers
from mnist_probe.model_layers import shift_layers
from mnist_probe.names import file_name
from mnist_probe.plots import curves_plot, metric_bars, save
from mnist_probe.schema import typed
from mnist_probe.shift_plots import (
    accuracy_heatmaps,
    class_shift_heatmap,
    deformation_plot,
    digit_curves,
    pair_labels,
    shift_curves,
)
from mnist_probe.stages.adapters import interpreter_spec, log_hparams, selected, trained_cnn, writer
from mnist_probe.stages.results import Curve, DatasetRow, PerClass, ShiftProb, ShiftResult
from mnist_probe.tables import write_table
from mnist_probe.training import OpenedModel
from mnist_probe.translation import (
    cached_grids,
    cnn_pass,
    code_layers,
    confusions,
    cosine,
    dataset_metrics,
    per_class_accuracy,
    pick_image,
    probabilities,
    shift_pairs,
    shifted_stack,
    study_cell,
)
from mnist_probe.viz import shift_strip

log = logging.getLogger(__name__)


def pairs_of(scfg: DictConfig) -> list[tuple[int, int]]:
    """The (dx, dy) pairs of cfg.shift (a sweep sets dx or dy to a single number)."""

    def as_list(value) -> list:
        return list(value) if isinstance(value, (list, tuple, ListConfig)) else [value]

    return shift_pairs(as_list(scfg.dx), as_list(scfg.dy), scfg.grid)


def models_under_test(cfg: DictConfig, cnn: OpenedModel) -> tuple[dict[str, Pipeline | None], dict[str, str]]:
    """{label: pipeline} for the CNN (None: its own softmax), then the interpreter named on the
    command line, else shift.models (cached fits); and each interpreter's cache key."""
    c = typed(cfg)
    models: dict[str, Pipeline | None] = {"CNN": None}
    keys = {}
    for name in selected(cfg, cfg.shift.models):
        spec = interpreter_spec(cfg, name)
        models[spec.label], meta = fit_or_load_interpreter(spec, cnn, c.data, c.paths.cache)
        keys[spec.label] = meta["key"]
    return models, keys


def one_image(cfg, out_dir: Path, models, cnn: OpenedModel, images_u8, labels, tb: SummaryWriter) -> dict:
    """The study's table for one test image: P(true class) per model and shift, and figures."""
    scfg = cfg.shift
    pairs = pairs_of(scfg)
    classes = typed(cfg).data.classes
    idx = pick_image(labels, scfg.index, typed(cfg).shift_target())
    true = int(labels[idx])
    stacked = shifted_stack(to_float(images_u8[idx : idx + 1]), [(0, 0), *pairs])
    model, code = cnn.model, cnn.code_layer
    if scfg.layers:
        layers = resolve_layers(model, list(scfg.layers))
    else:
        layers = shift_layers(model, typed(cfg).max_layers)
    out = cnn_pass(model, stacked, list(dict.fromkeys([*layers, code, *code_layers(models, model)])))
    probs = {k: v[1:] for k, v in probabilities(models, stacked, out, model).items()}
    columns = pair_labels(pairs)
    table = [
        {"model": name, **{c: study_cell(p[k], true, scfg.min_other, classes) for k, c in enumerate(columns)}}
        for name, p in probs.items()
    ]
    md = write_table(table, out_dir / "shift_table")
    rows = []
    for name, p in probs.items():
        for (dx, dy), pk in zip(pairs, p, strict=True):
            other = pk.copy()
            other[true] = -1
            rows.append(ShiftProb(name, dx, dy, float(pk[true]), int(other.argmax()), float(other.max())))
    write_table(rows, out_dir / "shift_probs")
    cosines = {name: cosine(out[name][1:], out[name][:1]) for name in dict.fromkeys([*layers, code])}
    p_true = {name: p[:, true] for name, p in probs.items()}
    preds = [f"CNN: {classes[int(p.argmax())]}" for p in probs["CNN"]]
    for name, fig in (
        ("shift_probability", shift_curves(pairs, p_true, classes[true], idx)),
        ("shift_strip", shift_strip(stacked[1:], pairs, preds)),
        ("shift_deformation", deformation_plot(pairs, cosines, p_true["CNN"])),
    ):
        save(fig, out_dir / f"{name}.png", tb, f"shift/{name}")
    tb.add_text("shift/table", md)
    scrub_in_tensorboard(tb, stacked[1:], {name: out[name][1:] for name in layers})
    for name, p in p_true.items():
        for k, value in enumerate(p):
            tb.add_scalar(f"shift_p_true/{name}", float(value), k)
    log.info("shift table for test #%d (a %s):\n%s", idx, classes[true], md)
    return {
        "index": idx,
        "digit": true,
        "pairs": pairs,
        "columns": columns,
        "table": table,
        "rows": rows,
        "code_layer": code,
        "cosines": {name: c.tolist() for name, c in cosines.items()},
    }


def scrub_in_tensorboard(tb: SummaryWriter, shifted: torch.Tensor, maps: dict[str, torch.Tensor]) -> None:
    """The shifted digit and every feature map of each layer, logged with the shift's position as the
    step: TensorBoard's step slider then scrubs the translation and shows the maps deform."""
    for step, image in enumerate(shifted):
        tb.add_image("shift_scrub/input", image, step)
        for name, acts in maps.items():
            sheet = acts[step]
            if sheet.dim() == 3:  # C×H×W: one tile per map, one colour scale for the layer
                sheet = make_grid(
                    sheet.unsqueeze(1),
                    nrow=8,
                    padding=1,
                    pad_value=1.0,
                    normalize=True,
                    value_range=(min(0.0, float(acts.min())), float(acts.max()) or 1.0),
                )
            else:  # a vector: one row of pixels
                sheet = (sheet / (acts.max() or 1.0)).reshape(1, 1, -1)
            tb.add_image(f"shift_scrub/{file_name(name)}", sheet, step)


def every_digit(cfg, out_dir: Path, model, images_u8, labels, tb: SummaryWriter) -> dict:
    """The study's test on the first test image of every class, not one "1": the CNN's P(true class)
    at the shift stage's vertical shifts (shift.dy, dx = 0; the study's: 0..-5), as a table (as the
    study wrote its cells) and a figure."""
    dys = list(dict.fromkeys(dy for _, dy in pairs_of(cfg.shift)))
    pairs = [(0, dy) for dy in dys]
    classes, item = typed(cfg).data.classes, cfg.data.item
    indices = first_of_each_class(labels, len(classes))
    stacked = shifted_stack(to_float(images_u8[indices]), pairs)  # row k·classes + d: class d at pairs[k]
    probs = cnn_pass(model, stacked, [])["probs"].numpy().reshape(len(pairs), len(indices), -1)
    rows, p_true = [], {}
    for digit, index in enumerate(indices):
        p = probs[:, digit]  # shifts × classes
        p_true[digit] = p[:, digit]
        cells = {
            f"dy={dy}": study_cell(p[k], digit, cfg.shift.min_other, classes) for k, dy in enumerate(dys)
        }
        rows.append({item: classes[digit], "test index": index, **cells})
    md = write_table(rows, out_dir / "shift_every_digit")
    fig = digit_curves(
        dys, p_true, f"CNN: P(true class) of the first test image of each {item}, shifted up", classes
    )
    save(fig, out_dir / "shift_every_digit.png", tb, "shift/every_digit")
    log.info("the study's test on the first test image of every %s (CNN):\n%s", item, md)
    return {"every_digit": rows}


def by_class(
    out_dir: Path,
    pairs,
    preds: np.ndarray,
    y: np.ndarray,
    radius: int,
    tb: SummaryWriter,
    classes: list[str],
    item: str,
) -> dict:
    """The CNN's accuracy per true class at each vertical shift, and what shifted images become."""
    dys = list(range(radius, -radius - 1, -1))
    acc = per_class_accuracy(pairs, preds, y, [(0, dy) for dy in dys], len(classes))
    rows = [
        {
            item: name,
            "images": int(np.sum(y == c)),
            **{f"dy={dy}": float(acc[c, k]) for k, dy in enumerate(dys)},
        }
        for c, name in enumerate(classes)
    ]
    tb.add_text("shift/per_class", write_table(rows, out_dir / "shift_per_class"))
    mistakes = []
    for dy in dys:
        top = confusions(pairs, preds, y, (0, dy), num_classes=len(classes))
        mistakes.append(
            {
                "dy": dy,
                "errors": int(np.sum(preds[pairs.index((0, dy))] != y)),
                "most frequent (true → predicted: images)": ", ".join(
                    f"{classes[t]} → {classes[p]}: {n}" for t, p, n in top
                )
                or "none",
            }
        )
    md = write_table(mistakes, out_dir / "shift_confusions")
    tb.add_text("shift/confusions", md)
    title = f"CNN accuracy per {item} against vertical shift ({len(y)} test images)"
    fig = class_shift_heatmap(acc, dys, title, classes)
    save(fig, out_dir / "shift_per_class.png", tb, "shift/per_class")
    log.info("what the CNN makes of shifted %ss:\n%s", item, md)
    return {"per_class": PerClass(dys, acc.tolist()), "confusions": mistakes}


def dataset_scale(cfg, out_dir: Path, models, keys, cnn: OpenedModel, images_u8, labels, tb) -> dict:
    """Accuracy on the (dx, dy) grid, consistency and 1-px change rate over many test images."""
    dcfg = cfg.shift.dataset
    n, radius = min(dcfg.samples, len(labels)), dcfg.radius
    keep = np.random.default_rng(cfg.seed).permutation(len(labels))[:n]
    images, y = to_float(images_u8[keep]), labels[keep].numpy()
    rows, acc, curves = [], {}, {}
    grid = cached_grids(cfg.paths.cache, cnn, models, keys, images, radius, dcfg.batch_size, cfg.seed)
    for name, (pairs, preds) in grid.items():
        metrics = dataset_metrics(pairs, preds, y, cfg.seed)
        acc[name] = metrics["accuracy"]
        index = {p: k for k, p in enumerate(pairs)}
        dys = list(range(-radius, radius + 1))
        curves[name] = Curve(dys, [float(metrics["accuracy"][index[(0, d)]]) for d in dys])
        rows.append(
            DatasetRow(
                name,
                float(metrics["accuracy"][index[(0, 0)]]),
                float(metrics["accuracy"].mean()),
                metrics["consistency"],
                metrics["change_1px"],
                metrics["consistency_ci"],
                metrics["change_1px_ci"],
            )
        )
    md = write_table(rows, out_dir / "shift_dataset", list(DatasetRow.COLUMNS))
    tb.add_text("shift/dataset", md)
    figures = {
        "shift_heatmap": accuracy_heatmaps(radius, acc),
        "shift_consistency": metric_bars(
            rows, "consistency", f"Consistency: same top-1 at two random shifts in ±{radius} px"
        ),
        "shift_change_1px": metric_bars(rows, "change_1px", "P(top-1 changes under a 1-pixel shift)"),
        "shift_accuracy_dy": curves_plot(
            {k: (v.dys, v.accs) for k, v in curves.items()},
            "dy (px, dx = 0; < 0 is up)",
            f"Test accuracy against vertical shift ({n} test images)",
        ),
    }
    for name, fig in figures.items():
        save(fig, out_dir / f"{name}.png", tb, f"shift/{name}")
    log.info("dataset-scale shift metrics over %d test images:\n%s", n, md)
    per_class = by_class(out_dir, *grid["CNN"], y, radius, tb, typed(cfg).data.classes, cfg.data.item)
    return {"dataset": rows, "curves": curves, "samples": n, **per_class}


def run(cfg: DictConfig, out_dir: Path) -> ShiftResult:
    """The study's translation table for one digit, then dataset-scale shift metrics."""
    pairs_of(cfg.shift)  # refuse bad shifts before any training
    cnn = trained_cnn(cfg, out_dir)  # if it must train, its curves go to this run
    models, keys = models_under_test(cfg, cnn)
    images_u8, labels = split_tensors(typed(cfg).data, "test")
    tb = writer(out_dir, "shift")
    parts = one_image(cfg, out_dir, models, cnn, images_u8, labels, tb)
    parts |= every_digit(cfg, out_dir, cnn.model, images_u8, labels, tb)
    if cfg.shift.dataset.enabled:
        parts |= dataset_scale(cfg, out_dir, models, keys, cnn, images_u8, labels, tb)
    tb.close()
    results = ShiftResult(
        cnn_key=cnn.key,
        cnn_test_acc=cnn.test_acc,
        models=list(models),
        **parts,
        classes=typed(cfg).data.classes,
        item=cfg.data.item,
    )
    headline = {"cnn_test_acc": cnn.test_acc}
    for row in results.dataset:
        headline[f"{row.model}/consistency"] = row.consistency
        headline[f"{row.model}/change_1px"] = row.change_1px
    for row in results.rows:  # P(true class) of the study's digit at each shift, per model
        headline[f"{row.model}/p_true({row.dx},{row.dy})"] = row.p_true
    log_hparams(out_dir, headline)
    log.info("shift table: %s", out_dir / "shift_table.md")
    return results
