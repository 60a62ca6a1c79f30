"""What two networks (or two inputs) share: linear centered kernel alignment (CKA; Kornblith et al.,
2019, "Similarity of neural network representations revisited").

CKA(X, Y) compares two representations of the same n examples (n×p and n×q, any p, q): 1 when one is
an orthogonal transform and isotropic scaling of the other, near 0 when unrelated. Minibatch CKA
(Nguyen et al., 2021) averages the unbiased HSIC estimator over minibatches, so 10k images of wide
layers never need an n×n kernel or all activations in memory at once; resampling the minibatches
gives each CKA its bootstrap interval.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch import nn

from mnist_probe.data import to_float
from mnist_probe.hooks import record
from mnist_probe.intervals import quantile_interval, resample_counts
from mnist_probe.layer_names import resolve_layers
from mnist_probe.translation import translate

BATCH = 100  # images a minibatch: 1,000 images give ten, enough to resample for an interval
MIN_BATCHES = 5  # fewer minibatches than this give no interval


def linear_cka(x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor) -> float:
    """Linear CKA of two representations of the same examples (rows), flattened to n×p and n×q:
    ||YᵀX||²_F / (||XᵀX||_F ||YᵀY||_F) on column-centered features. Where features outnumber the
    examples (a conv layer's 50k values an image), the same number from the n×n Gram matrices
    K = XXᵀ, L = YYᵀ: tr(KL) / (||K||_F ||L||_F), so memory grows with n², never with p·q."""
    x, y = _centered(x), _centered(y)
    if max(x.shape[1], y.shape[1]) > x.shape[0]:
        k, l = x @ x.T, y @ y.T  # noqa: E741 - the paper's names
        return float((k * l).sum() / (torch.linalg.matrix_norm(k) * torch.linalg.matrix_norm(l)))
    cross = torch.linalg.matrix_norm(y.T @ x) ** 2
    return float(cross / (torch.linalg.matrix_norm(x.T @ x) * torch.linalg.matrix_norm(y.T @ y)))


def _centered(a: np.ndarray | torch.Tensor) -> torch.Tensor:
    a = torch.as_tensor(a).flatten(1).double()
    return a - a.mean(0, keepdim=True)


def unbiased_hsic(k: torch.Tensor, l: torch.Tensor) -> torch.Tensor:  # noqa: E741 - the paper's name
    """The unbiased HSIC estimator of two n×n Gram matrices (Song et al., 2012), n >= 4."""
    n = k.shape[0]
    k, l = k.clone(), l.clone()  # noqa: E741
    k.fill_diagonal_(0)
    l.fill_diagonal_(0)
    ones = torch.ones(n, 1, dtype=k.dtype, device=k.device)
    trace = (k * l).sum()
    middle = (ones.T @ k @ ones) * (ones.T @ l @ ones) / ((n - 1) * (n - 2))
    last = 2 * (ones.T @ k @ l @ ones) / (n - 2)
    return ((trace + middle - last) / (n * (n - 3))).squeeze()


class MinibatchCKA:
    """Linear CKA between every pair of two lists of layers, accumulated minibatch by minibatch
    (update(xs, ys) with each batch's activations of the same examples); .matrix() is len(xs)×len(ys),
    .intervals() its 95% bootstrap intervals over the minibatches (len(xs)×len(ys)×2)."""

    def __init__(self, rows: int, cols: int) -> None:
        self.rows, self.cols = rows, cols
        self.parts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []  # per batch: HSIC xy, xx, yy

    @property
    def batches(self) -> int:
        return len(self.parts)

    def update(self, xs: list[torch.Tensor], ys: list[torch.Tensor]) -> None:
        grams_x = [_gram(a) for a in xs]
        grams_y = [_gram(a) for a in ys]
        xy = torch.tensor(
            [[float(unbiased_hsic(kx, ky)) for ky in grams_y] for kx in grams_x], dtype=torch.float64
        ).reshape(self.rows, self.cols)
        xx = torch.tensor([float(unbiased_hsic(k, k)) for k in grams_x], dtype=torch.float64)
        yy = torch.tensor([float(unbiased_hsic(k, k)) for k in grams_y], dtype=torch.float64)
        self.parts.append((xy, xx, yy))

    def matrix(self) -> np.ndarray:
        return self._cka(torch.ones(1, self.batches, dtype=torch.float64))[0].numpy()

    def intervals(self, seed: int = 0) -> np.ndarray | None:
        """Each CKA's 95% percentile interval with the minibatches resampled (None with fewer than
        MIN_BATCHES of them)."""
        if self.batches < MIN_BATCHES:
            return None
        counts = torch.as_tensor(resample_counts(self.batches, seed=seed))
        return quantile_interval(self._cka(counts).numpy())

    def _cka(self, weights: torch.Tensor) -> torch.Tensor:
        """CKA from the minibatches' HSIC sums, each batch counted as often as weights says."""
        xy, xx, yy = (torch.stack(p) for p in zip(*self.parts, strict=True))
        sxy, sxx, syy = (torch.tensordot(weights, t, dims=1) for t in (xy, xx, yy))
        return sxy / torch.sqrt(sxx[:, :, None] * syy[:, None, :])


def _gram(a: torch.Tensor) -> torch.Tensor:
    """XXᵀ of one minibatch: the product in float32 (its error, about 1e-8 of a CKA, is far below
    any difference this reports), the HSIC sums that follow in float64."""
    a = a.flatten(1).float()
    return (a @ a.T).double()


@torch.no_grad()
def cka_between(
    model_a: nn.Module,
    model_b: nn.Module,
    images: torch.Tensor,
    layers_a: list | str = "all",
    layers_b: list | str = "all",
    batch_size: int = BATCH,
    seed: int = 0,
) -> tuple[list[str], list[str], np.ndarray, np.ndarray | None]:
    """Minibatch linear CKA between every layer of model_a and every layer of model_b on the same
    images (uint8 N×H×W or float): (layers of a, layers of b, len(a)×len(b) matrix, its intervals
    len(a)×len(b)×2 or None)."""
    names_a, names_b = resolve_layers(model_a, layers_a), resolve_layers(model_b, layers_b)
    acc = MinibatchCKA(len(names_a), len(names_b))
    for batch in _batches(images, batch_size):
        a, b = record(model_a, batch, names_a), record(model_b, batch, names_b)
        acc.update([a[n] for n in names_a], [b[n] for n in names_b])
    return names_a, names_b, acc.matrix(), acc.intervals(seed)


@torch.no_grad()
def shift_cka(
    model: nn.Module,
    images: torch.Tensor,
    shifts: Iterable[tuple[int, int]],
    layers: list | str = "all",
    batch_size: int = BATCH,
    seed: int = 0,
) -> tuple[list[str], np.ndarray, np.ndarray | None]:
    """Each layer's minibatch CKA between the unshifted images and the images shifted by each (dx, dy):
    (layers, len(shifts)×len(layers), its intervals len(shifts)×len(layers)×2 or None); how much a
    translation changes what each layer represents."""
    names, shifts = resolve_layers(model, layers), list(shifts)
    accs = [MinibatchCKA(len(names), len(names)) for _ in shifts]
    for batch in _batches(images, batch_size):
        base = record(model, batch, names)
        for acc, (dx, dy) in zip(accs, shifts, strict=True):
            moved = record(model, translate(batch, dx, dy), names)
            acc.update([base[n] for n in names], [moved[n] for n in names])
    cis = [acc.intervals(seed) for acc in accs]
    ci = None if cis[0] is None else np.stack([c[np.arange(len(names)), np.arange(len(names))] for c in cis])
    return names, np.stack([np.diag(acc.matrix()) for acc in accs]), ci


def _batches(images: torch.Tensor, batch_size: int):
    images = to_float(images)
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size]
        if len(batch) >= 4:  # the unbiased HSIC needs four examples
            yield batch
