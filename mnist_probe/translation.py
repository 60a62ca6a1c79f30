"""Did the CNN learn translational symmetry? Integer shifts, P(class) per model, dataset metrics.

Sign convention (shown in every figure): dx > 0 moves the digit right, dy > 0 moves it down, so
the study's dy = -1..-5 moves the digit up. Pixels shifted in are 0, MNIST's background.

A "model" here is a name mapped to None (the CNN itself: softmax of its logits) or to an
interpreter pipeline (mnist_probe.interpretation); every model sees the same shifted images.
"""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

import numpy as np
import torch
from sklearn.pipeline import Pipeline
from tqdm import tqdm

from mnist_probe.cache import config_key, get_or_compute, locked, write_npz
from mnist_probe.errors import UserError
from mnist_probe.hooks import ActivationRecorder
from mnist_probe.interpretation import CodeVectors, Pixels
from mnist_probe.intervals import bootstrap_mean
from mnist_probe.layer_names import resolve_layers
from mnist_probe.names import SIZE
from mnist_probe.outputs import NUM_CLASSES
from mnist_probe.specs import INFERENCE_BATCH
from mnist_probe.tables import pct
from mnist_probe.training import OpenedModel

log = logging.getLogger(__name__)


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


def shift_pairs(dxs: list[int], dys: list[int], grid: bool = False) -> list[tuple[int, int]]:
    """The (dx, dy) pairs: every combination (grid), or the lists side by side (a single value is
    repeated to the other list's length)."""
    dxs, dys = [int(v) for v in dxs], [int(v) for v in dys]
    if not dxs or not dys:
        raise UserError("shift.dx and shift.dy need at least one value each, e.g. shift.dy=[0,-1]")
    for v in dxs + dys:
        if abs(v) >= SIZE:
            raise UserError(
                f"shift {v} px is outside the {SIZE}×{SIZE} image: keep |shift.dx|, |shift.dy| < {SIZE}"
            )
    if grid:
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


def _shared_layer(pipe: Pipeline | None, model: torch.nn.Module) -> str | None:
    """The layer of `model` a pipeline's features come from (read off the CNN's own pass), if any."""
    first = pipe.steps[0][1] if pipe is not None else None
    if isinstance(first, CodeVectors) and first.model is model:
        return resolve_layers(model, first.layer)[0]
    return None


@torch.no_grad()
def cnn_pass(
    model: torch.nn.Module, images: torch.Tensor, layers: list[str], batch_size: int = INFERENCE_BATCH
) -> dict[str, torch.Tensor]:
    """One pass over float images recording `layers`; "probs" holds the softmax of the output."""
    names = resolve_layers(model, layers) if layers else []
    logits = []
    with ActivationRecorder(model, names) as rec:
        for start in range(0, len(images), batch_size):
            logits.append(model(images[start : start + batch_size]).detach().cpu())
    out = {name: rec[name] for name in names}
    out["probs"] = torch.softmax(torch.cat(logits).float(), 1)
    return out


def code_layers(models: dict[str, Pipeline | None], model: torch.nn.Module) -> list[str]:
    """The layers of `model` that the models' pipelines read (recorded in the CNN's own pass)."""
    layers = (_shared_layer(pipe, model) for pipe in models.values())
    return list(dict.fromkeys(layer for layer in layers if layer is not None))


def probabilities(
    models: dict[str, Pipeline | None],
    images: torch.Tensor,
    cnn_out: dict[str, torch.Tensor],
    model: torch.nn.Module,
) -> dict[str, np.ndarray]:
    """P(class) N×10 for every model. The CNN's pass (cnn_out, from cnn_pass over the same images
    with code_layers recorded) feeds the CNN and every code-vector pipeline: the CNN runs once,
    whatever the number of interpreters on its code vectors."""
    out = {}
    for label, pipe in models.items():
        layer = _shared_layer(pipe, model)
        if pipe is None:
            out[label] = cnn_out["probs"].numpy()
        elif layer is not None:
            out[label] = pipe[1:].predict_proba(cnn_out[layer].flatten(1).numpy())
        elif isinstance(pipe.steps[0][1], Pixels):
            out[label] = pipe[1:].predict_proba(images.flatten(1).numpy())
        else:
            out[label] = pipe.predict_proba(images)
    return out


def study_cell(probs: np.ndarray, true: int, min_other: float, classes: list[str] | None = None) -> str:
    """'P(true)' and, where another class has at least min_other, '(k: P(k))', as in the study (k by
    its name in classes, where given)."""
    cell = pct(probs[true], 4, "g")
    others = probs.copy()
    others[true] = -1
    k = int(others.argmax())
    if others[k] >= min_other:
        cell += f" ({classes[k] if classes else k}: {pct(others[k], 4, 'g')})"
    return cell


def cosine(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """Row-wise cosine similarity of flattened a (K×…) against b (1×… broadcast)."""
    return torch.nn.functional.cosine_similarity(a.flatten(1), b.flatten(1), dim=1).numpy()


def grid_predictions(
    models: dict[str, Pipeline | None],
    model: torch.nn.Module,
    images: torch.Tensor,
    radius: int,
    batch_size: int,
    progress: bool = True,
) -> tuple[list[tuple[int, int]], dict[str, np.ndarray]]:
    """Top-1 predictions of every model for every shift in [-radius, radius]²: {label: S×N}. Each step
    takes as many whole shifts of the images as fit in batch_size images (at least one): the CNN runs
    over them in forward passes of INFERENCE_BATCH, each interpreter classifies them in one call."""
    pairs = list(itertools.product(range(-radius, radius + 1), repeat=2))
    preds = {label: np.empty((len(pairs), len(images)), dtype=np.int64) for label in models}
    chunk = max(1, batch_size // len(images))  # shifts per step
    layers = code_layers(models, model)
    starts = range(0, len(pairs), chunk)
    for start in tqdm(starts, desc="shift grid", leave=False, disable=not progress):
        block = pairs[start : start + chunk]
        stacked = shifted_stack(images, block)
        probs = probabilities(models, stacked, cnn_pass(model, stacked, layers), model)
        for label, p in probs.items():
            preds[label][start : start + len(block)] = p.argmax(1).reshape(len(block), -1)
    return pairs, preds


def cached_grids(
    cache_dir: str | Path,
    cnn: OpenedModel,
    models: dict[str, Pipeline | None],
    keys: dict[str, str | None],
    images: torch.Tensor,
    radius: int,
    batch_size: int = 4000,
    seed: int = 0,
) -> dict[str, tuple[list[tuple[int, int]], np.ndarray]]:
    """grid_predictions of every model, {label: (pairs, preds S×N)}, cached per model (a sweep over
    shift.dy computes them once); the models still missing share one CNN pass. A grid's key covers
    the CNN, the model's fitted interpreter (keys[label]), the images (their count and seed), the radius."""
    cache, n = Path(cache_dir), len(images)
    entries = {
        name: cache / f"shiftgrid-{config_key(cnn.key, name, keys.get(name), n, radius, seed)}"
        for name in models
    }
    fresh: dict[str, np.ndarray] = {}
    pairs: list = []

    def compute_for(name: str):
        def compute(staging: Path) -> dict:
            if name not in fresh:  # the first miss computes every grid still missing, in one pass
                todo = {
                    k: m for k, m in models.items() if k == name or not (entries[k] / "meta.json").is_file()
                }
                pairs[:], preds = grid_predictions(todo, cnn.model, images, radius, batch_size)
                fresh.update(preds)
            write_npz(staging / "grid.npz", pairs=np.array(pairs), preds=fresh[name])
            return {"model": name, "images": n, "radius": radius}

        return compute

    def load(entry: Path, meta: dict):
        with np.load(entry / "grid.npz") as z:
            return [tuple(p) for p in z["pairs"].tolist()], z["preds"]

    with locked(cache / f"shiftgrid-{cnn.key}"):  # one process computes this CNN's grids at a time
        return {name: get_or_compute(entries[name], compute_for(name), load)[0] for name in models}


CONSISTENCY_DRAWS = 8  # random pairs of shifts drawn per image


def _agreements(preds: np.ndarray, draws: int, seed: int) -> np.ndarray:
    """draws × N: whether each image's top-1 agrees at two shifts drawn at random from the grid."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, len(preds), size=(draws, preds.shape[1]))
    b = rng.integers(0, len(preds), size=(draws, preds.shape[1]))
    cols = np.arange(preds.shape[1])
    return preds[a, cols] == preds[b, cols]


def _changes(pairs: list[tuple[int, int]], preds: np.ndarray) -> np.ndarray:
    """neighbour pairs × N: whether each image's top-1 differs between two shifts one pixel apart."""
    index = {p: k for k, p in enumerate(pairs)}
    neighbours = [
        (index[p], index[(p[0] + ddx, p[1] + ddy)])
        for p in pairs
        for ddx, ddy in ((1, 0), (0, 1))
        if (p[0] + ddx, p[1] + ddy) in index
    ]
    i, j = np.array(neighbours).T
    return preds[i] != preds[j]


def consistency(preds: np.ndarray, draws: int = CONSISTENCY_DRAWS, seed: int = 0) -> float:
    """P(same top-1 at two shifts drawn at random from the grid) (Zhang 2019); preds is S×N."""
    return float(np.mean(_agreements(preds, draws, seed)))


def change_1px(pairs: list[tuple[int, int]], preds: np.ndarray) -> float:
    """P(top-1 differs between two shifts one pixel apart) (Azulay & Weiss 2019); preds is S×N."""
    return float(np.mean(_changes(pairs, preds)))


def dataset_metrics(
    pairs: list[tuple[int, int]], preds: np.ndarray, labels: np.ndarray, seed: int = 0
) -> dict:
    """Accuracy per shift, Zhang's consistency and the 1-px prediction-change probability, each of the
    last two with its 95% bootstrap interval over the images (each image's share resampled).

    consistency: P(same top-1 at two shifts drawn at random from the grid) (Zhang 2019).
    change_1px: P(top-1 differs between two shifts one pixel apart) (Azulay & Weiss 2019).
    """
    acc = (preds == labels[None, :]).mean(1)
    agree, changed = _agreements(preds, CONSISTENCY_DRAWS, seed), _changes(pairs, preds)
    return {
        "accuracy": acc,
        "consistency": float(np.mean(agree)),
        "change_1px": float(np.mean(changed)),
        "consistency_ci": list(bootstrap_mean(agree.mean(0), seed=seed)),
        "change_1px_ci": list(bootstrap_mean(changed.mean(0), seed=seed)),
    }


def pick_image(labels: torch.Tensor, index: int | None = None, digit: int = 1) -> int:
    """`index` if given, else the first image of class `digit` (the study shifted the first "1")."""
    if index is not None:
        if not 0 <= index < len(labels):
            raise UserError(f"shift.index {index} is outside the test set 0..{len(labels) - 1}")
        return int(index)
    found = (labels == digit).nonzero()
    if not len(found):
        raise UserError(
            f"no test image of class {digit} among the {len(labels):,} read; set shift.target to "
            "a class the test set holds"
        )
    return int(found[0])


def per_class_accuracy(
    pairs: list[tuple[int, int]],
    preds: np.ndarray,
    labels: np.ndarray,
    shifts: list[tuple[int, int]],
    num_classes: int = NUM_CLASSES,
) -> np.ndarray:
    """Accuracy of each true class (rows 0..num_classes-1) at each of `shifts` (columns), from grid
    predictions."""
    index = {p: k for k, p in enumerate(pairs)}
    classes = np.arange(num_classes)
    return np.array(
        [
            [np.mean(preds[index[s]][labels == c] == c) if np.any(labels == c) else np.nan for s in shifts]
            for c in classes
        ]
    )


def confusions(
    pairs: list[tuple[int, int]],
    preds: np.ndarray,
    labels: np.ndarray,
    shift: tuple[int, int],
    top: int = 3,
    num_classes: int = NUM_CLASSES,
) -> list[tuple[int, int, int]]:
    """The `top` most frequent mistakes at one shift, as (true class, predicted class, count)."""
    p = preds[pairs.index(shift)]
    wrong = p != labels
    counts = np.zeros((num_classes, num_classes), dtype=int)
    np.add.at(counts, (labels[wrong], p[wrong]), 1)
    order = np.argsort(-counts, axis=None, kind="stable")[:top]
    return [
        (int(i // num_classes), int(i % num_classes), int(counts.flat[i]))
        for i in order
        if counts.flat[i] > 0
    ]
