"""Did the CNN learn translational symmetry? Integer shifts, P(class) per model, dataset metrics.

Sign convention (shown in every figure): dx > 0 moves the digit right, dy > 0 moves it down, so
the study's dy = -1..-5 moves the digit up. Pixels shifted in are 0, MNIST's background.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, ListConfig

from mnist_probe import UserError
from mnist_probe.data import to_float
from mnist_probe.model import CODE_LAYER
from mnist_probe.probe import ActivationRecorder

log = logging.getLogger(__name__)
SIZE = 28


def translate(images: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """Shift images (…×H×W) by whole pixels with zero fill, never wrapping around.

    Plain slicing is exact for integer shifts; an interpolating warp would blur nothing here but
    costs a grid_sample per call.
    """
    h, w = images.shape[-2:]
    if abs(dx) >= w or abs(dy) >= h:
        raise UserError(f"a shift of ({dx}, {dy}) px leaves nothing of a {h}×{w} image; keep |shift| < {h}")
    out = torch.zeros_like(images)
    out[..., max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = images[
        ..., max(-dy, 0) : h - max(dy, 0), max(-dx, 0) : w - max(dx, 0)
    ]
    return out


def as_list(value) -> list[int]:
    """A shift list from config: an int (one sweep value) or a list of ints."""
    if isinstance(value, (list, tuple, ListConfig)):
        return [int(v) for v in value]
    return [int(value)]


def shift_pairs(scfg: DictConfig) -> list[tuple[int, int]]:
    """The (dx, dy) pairs of the shift config: the grid of both lists, or the lists side by side."""
    dxs, dys = as_list(scfg.dx), as_list(scfg.dy)
    if not dxs or not dys:
        raise UserError("shift.dx and shift.dy need at least one value each, e.g. shift.dy=[0,-1]")
    for v in dxs + dys:
        if abs(v) >= SIZE:
            raise UserError(
                f"shift {v} px is outside the {SIZE}×{SIZE} image: keep |shift.dx|, |shift.dy| < {SIZE}"
            )
    if scfg.grid:
        return list(itertools.product(dxs, dys))
    if len(dxs) == 1 or len(dys) == 1:
        n = max(len(dxs), len(dys))
        return list(zip(dxs * n if len(dxs) == 1 else dxs, dys * n if len(dys) == 1 else dys, strict=True))
    if len(dxs) != len(dys):
        raise UserError(
            f"shift.dx has {len(dxs)} values and shift.dy {len(dys)}: give one of them a single "
            "value, equal lengths, or shift.grid=true for every pair"
        )
    return list(zip(dxs, dys, strict=True))


def shifted_stack(images: torch.Tensor, pairs: list[tuple[int, int]]) -> torch.Tensor:
    """All shifts of all images as one batch, shift-major: row k·N + i is image i at pairs[k]."""
    return torch.cat([translate(images, dx, dy) for dx, dy in pairs])


@dataclass
class ModelSpec:
    """A model under test: the CNN itself, an interpreter on CNN code vectors, or one on pixels."""

    label: str
    kind: str  # "cnn", "codes" or "pixels"
    estimator: object = None
    key: str | None = None  # the fitted interpreter's cache key (None for the CNN)


@torch.no_grad()
def cnn_pass(
    model: torch.nn.Module, images: torch.Tensor, layers: list[str], batch_size: int = 1000
) -> dict[str, torch.Tensor]:
    """One pass over float images recording `layers`, the code vector and softmax probabilities."""
    names = list(dict.fromkeys([*layers, CODE_LAYER, "dense_2"]))
    with ActivationRecorder(model, names) as rec:
        for start in range(0, len(images), batch_size):
            model(images[start : start + batch_size])
    out = {name: rec[name] for name in names}
    out["probs"] = torch.softmax(out["dense_2"].float(), 1)
    return out


def probabilities(
    specs: list[ModelSpec], images: torch.Tensor, cnn_out: dict[str, torch.Tensor]
) -> dict[str, np.ndarray]:
    """P(class) N×10 for every model, from one CNN pass (its probs and code vectors) and pixels."""
    pixels = images.flatten(1).numpy()
    codes = cnn_out[CODE_LAYER].numpy()
    out = {}
    for spec in specs:
        if spec.kind == "cnn":
            out[spec.label] = cnn_out["probs"].numpy()
        else:
            out[spec.label] = spec.estimator.predict_proba(codes if spec.kind == "codes" else pixels)
    return out


def fmt_pct(p: float) -> str:
    """A probability as the study wrote it: 100%, 99.99%, 0.71%, 1.4e-04%."""
    return f"{100 * p:.4g}%"


def study_cell(probs: np.ndarray, true: int, min_other: float) -> str:
    """'P(true)' and, where another class has at least min_other, '(k: P(k))', as in the study."""
    cell = fmt_pct(probs[true])
    others = probs.copy()
    others[true] = -1
    k = int(others.argmax())
    if others[k] >= min_other:
        cell += f" ({k}: {fmt_pct(others[k])})"
    return cell


def cosine(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """Row-wise cosine similarity of flattened a (K×…) against b (1×… broadcast)."""
    return torch.nn.functional.cosine_similarity(a.flatten(1), b.flatten(1), dim=1).numpy()


def grid_predictions(
    specs: list[ModelSpec], model, images: torch.Tensor, radius: int, batch_size: int
) -> tuple[list[tuple[int, int]], dict[str, np.ndarray]]:
    """Top-1 predictions of every model for every shift in [-radius, radius]²: {label: S×N}."""
    pairs = list(itertools.product(range(-radius, radius + 1), repeat=2))
    preds = {spec.label: np.empty((len(pairs), len(images)), dtype=np.int64) for spec in specs}
    chunk = max(1, batch_size // len(images))  # shifts per forward pass, bounded by batch_size
    from tqdm import tqdm

    for start in tqdm(range(0, len(pairs), chunk), desc="shift grid", leave=False):
        block = pairs[start : start + chunk]
        stacked = shifted_stack(images, block)
        probs = probabilities(specs, stacked, cnn_pass(model, stacked, [], batch_size))
        for label, p in probs.items():
            preds[label][start : start + len(block)] = p.argmax(1).reshape(len(block), -1)
    return pairs, preds


def dataset_metrics(
    pairs: list[tuple[int, int]], preds: np.ndarray, labels: np.ndarray, seed: int = 0
) -> dict:
    """Accuracy per shift, Zhang's consistency and the 1-px prediction-change probability.

    consistency: P(same top-1 at two shifts drawn at random from the grid) (Zhang 2019).
    change_1px: P(top-1 differs between two shifts one pixel apart) (Azulay & Weiss 2019).
    """
    index = {p: k for k, p in enumerate(pairs)}
    acc = (preds == labels[None, :]).mean(1)
    rng = np.random.default_rng(seed)
    a = rng.integers(0, len(pairs), size=(8, preds.shape[1]))
    b = rng.integers(0, len(pairs), size=(8, preds.shape[1]))
    cols = np.arange(preds.shape[1])
    consistency = float(np.mean(preds[a, cols] == preds[b, cols]))
    neighbours = [(index[p], index[(p[0] + ddx, p[1] + ddy)]) for p in pairs
                  for ddx, ddy in ((1, 0), (0, 1)) if (p[0] + ddx, p[1] + ddy) in index]  # fmt: skip
    i, j = np.array(neighbours).T
    change = float(np.mean(preds[i] != preds[j]))
    return {"accuracy": acc, "consistency": consistency, "change_1px": change}


def model_specs(cfg: DictConfig, model, model_key: str) -> list[ModelSpec]:
    """The CNN, then the interpreter named on the command line, else shift.models (cached fits)."""
    from mnist_probe.interpreters import fit_or_load, interpreter_config

    specs = [ModelSpec("CNN", "cnn")]
    names = [cfg.interpreter] if cfg.get("interpreter") else list(cfg.shift.models)
    for spec in names:
        icfg = interpreter_config(spec)
        estimator, meta = fit_or_load(cfg, icfg, model, model_key)
        label = f"CNN+{icfg.name}" if icfg.features == "codes" else f"{icfg.name} (pixels)"
        specs.append(ModelSpec(label, icfg.features, estimator, meta["key"]))
    return specs


def pick_image(scfg: DictConfig, labels: torch.Tensor) -> int:
    """shift.index if given, else the first test image of shift.digit."""
    if scfg.index is not None:
        if not 0 <= scfg.index < len(labels):
            raise UserError(f"shift.index {scfg.index} is outside the test set 0..{len(labels) - 1}")
        return int(scfg.index)
    if not 0 <= scfg.digit <= 9:
        raise UserError(f"shift.digit must be 0..9, got {scfg.digit}")
    return int((labels == scfg.digit).nonzero()[0])


def one_image(cfg, out_dir: Path, specs, model, images_u8, labels, writer) -> dict:
    """The study's table for one test image: P(true class) per model and shift, and figures."""
    from mnist_probe.model import layer_name
    from mnist_probe.report import write_table
    from mnist_probe.viz import deformation_plot, pair_labels, save, shift_curves, shift_strip

    scfg = cfg.shift
    pairs = shift_pairs(scfg)
    idx = pick_image(scfg, labels)
    true = int(labels[idx])
    stacked = shifted_stack(to_float(images_u8[idx : idx + 1]), [(0, 0), *pairs])
    layers = [layer_name(h) for h in scfg.layers]
    out = cnn_pass(model, stacked, layers)
    probs = {k: v[1:] for k, v in probabilities(specs, stacked, out).items()}
    columns = pair_labels(pairs)
    table = [{"model": label, **{c: study_cell(p[k], true, scfg.min_other)
              for k, c in enumerate(columns)}} for label, p in probs.items()]  # fmt: skip
    md = write_table(table, out_dir / "shift_table")
    rows = []
    for label, p in probs.items():
        for (dx, dy), pk in zip(pairs, p, strict=True):
            other = pk.copy()
            other[true] = -1
            rows.append({"model": label, "dx": dx, "dy": dy, "p_true": float(pk[true]),
                         "top_other": int(other.argmax()), "p_other": float(other.max())})  # fmt: skip
    write_table(rows, out_dir / "shift_probs")
    cosines = {name: cosine(out[name][1:], out[name][:1]) for name in [*layers, CODE_LAYER]}
    p_true = {label: p[:, true] for label, p in probs.items()}
    preds = [f"CNN: {int(p.argmax())}" for p in probs["CNN"]]
    for name, fig in (
        ("shift_probability", shift_curves(pairs, p_true, true, idx)),
        ("shift_strip", shift_strip(stacked[1:], pairs, preds)),
        ("shift_deformation", deformation_plot(pairs, cosines, p_true["CNN"])),
    ):
        writer.add_figure(f"shift/{name}", fig, close=False)
        save(fig, out_dir / f"{name}.png")
    writer.add_text("shift/table", md)
    for label, p in p_true.items():
        for k, value in enumerate(p):
            writer.add_scalar(f"shift_p_true/{label}", float(value), k)
    log.info("shift table for test #%d (a %d):\n%s", idx, true, md)
    return {"index": idx, "digit": true, "pairs": pairs, "table": table, "rows": rows,
            "code_cosine": cosines[CODE_LAYER].tolist(),
            "cosines": {name: c.tolist() for name, c in cosines.items()}}  # fmt: skip


def dataset_scale(cfg, out_dir: Path, specs, model, model_key, images_u8, labels, writer) -> dict:
    """Accuracy on the (dx, dy) grid, consistency and 1-px change rate over many test images."""
    from mnist_probe.cache import config_key, locked, write_npz
    from mnist_probe.report import write_table
    from mnist_probe.viz import accuracy_heatmaps, curves_plot, metric_bars, save

    dcfg = cfg.shift.dataset
    n, radius = min(dcfg.samples, len(labels)), dcfg.radius
    keep = np.random.default_rng(cfg.seed).permutation(len(labels))[:n]
    images, y = to_float(images_u8[keep]), labels[keep].numpy()
    # Grid predictions are cached per model, so sweep jobs over shift.dy compute them once, and
    # the models still missing share one CNN pass over the shifted images.
    entry = Path(cfg.paths.cache) / f"cnn-{model_key}"
    # An interpreter's grid is keyed by its fitted estimator too, so a changed setting recomputes it.
    keys = {s.label: config_key(model_key, s.label, n, radius, cfg.seed, *([s.key] if s.key else []))
            for s in specs}  # fmt: skip
    paths = {label: entry / f"shiftgrid-{key}.npz" for label, key in keys.items()}
    with locked(entry / "shiftgrid"):
        missing = [s for s in specs if not paths[s.label].is_file()]
        if missing:
            pairs, fresh = grid_predictions(missing, model, images, radius, dcfg.batch_size)
            for s in missing:
                write_npz(paths[s.label], pairs=np.array(pairs), preds=fresh[s.label])
    rows, acc, curves = [], {}, {}
    for spec in specs:
        with np.load(paths[spec.label]) as z:
            pairs, preds = [tuple(p) for p in z["pairs"].tolist()], z["preds"]
        metrics = dataset_metrics(pairs, preds, y, cfg.seed)
        acc[spec.label] = metrics["accuracy"]
        index = {p: k for k, p in enumerate(pairs)}
        dys = list(range(-radius, radius + 1))
        curves[spec.label] = (dys, [float(metrics["accuracy"][index[(0, d)]]) for d in dys])
        rows.append({"model": spec.label, "acc_unshifted": float(metrics["accuracy"][index[(0, 0)]]),
                     "acc_grid_mean": float(metrics["accuracy"].mean()),
                     "consistency": metrics["consistency"], "change_1px": metrics["change_1px"]})  # fmt: skip
    md = write_table(rows, out_dir / "shift_dataset")
    writer.add_text("shift/dataset", md)
    figures = {
        "shift_heatmap": accuracy_heatmaps(radius, acc),
        "shift_consistency": metric_bars(rows, "consistency",
                                         f"Consistency: same top-1 at two random shifts in ±{radius} px"),
        "shift_change_1px": metric_bars(rows, "change_1px", "P(top-1 changes under a 1-pixel shift)"),
        "shift_accuracy_dy": curves_plot(curves, "dy (px, dx = 0; < 0 is up)",
                                         f"Test accuracy against vertical shift ({n} test images)"),
    }  # fmt: skip
    for name, fig in figures.items():
        writer.add_figure(f"shift/{name}", fig, close=False)
        save(fig, out_dir / f"{name}.png")
    log.info("dataset-scale shift metrics over %d test images:\n%s", n, md)
    return {"dataset": rows, "curves": {k: list(v) for k, v in curves.items()}, "samples": n}


def shift_stage(cfg: DictConfig, out_dir: Path) -> dict:
    """The study's translation table for one digit, then dataset-scale shift metrics."""
    from torch.utils.tensorboard import SummaryWriter

    from mnist_probe.train import cnn_key, split_tensors
    from mnist_probe.train import fit_or_load as fit_cnn

    shift_pairs(cfg.shift)  # refuse bad shifts before any training
    model, meta = fit_cnn(cfg, out_dir)  # if it must train, its curves go to this run
    key = cnn_key(cfg)
    specs = model_specs(cfg, model, key)
    images_u8, labels = split_tensors(cfg, "test")
    writer = SummaryWriter(str(out_dir / "tb" / "shift"))
    results = {"cnn_key": key, "cnn_test_acc": meta["test_acc"], "models": [s.label for s in specs]}
    results |= one_image(cfg, out_dir, specs, model, images_u8, labels, writer)
    if cfg.shift.dataset.enabled:
        results |= dataset_scale(cfg, out_dir, specs, model, key, images_u8, labels, writer)
    writer.close()
    return results
