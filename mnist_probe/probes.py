"""Linear probes: a logistic regression on each layer's activations, fitted on training images and scored
on test images (does linear separability grow with depth? Alain & Bengio's question asked of any CNN),
recorded a group of layers at a time and cached per CNN, layers and images."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits
from torch import nn

from mnist_probe.cache import config_key, get_or_compute
from mnist_probe.data import split_tensors, to_float
from mnist_probe.hooks import record
from mnist_probe.interpretation import fit_timed
from mnist_probe.intervals import bootstrap_mean
from mnist_probe.layer_names import resolve_layers
from mnist_probe.model_layers import spread
from mnist_probe.rows import ProbeRow, from_json, to_json
from mnist_probe.specs import DataSpec
from mnist_probe.training import OpenedModel

log = logging.getLogger(__name__)


def fit_linear_probe(x: np.ndarray, y: np.ndarray, max_iter: int = 100) -> tuple[Pipeline, float]:
    """A standardised logistic regression (C = 0.1) fitted on (x, y), the probe of every layer, and
    the seconds its fit took. BLAS runs on one thread: its N×10 products are too thin to share between
    threads, which only wait on each other."""
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter, C=0.1))
    with warnings.catch_warnings(), threadpool_limits(1, user_api="blas"):
        warnings.simplefilter("ignore", ConvergenceWarning)
        return probe, fit_timed(probe, x, y)


# The probes' activations are recorded a group of layers at a time, a group as many layers as fit in
# this many bytes for one split: a forward pass per group and split, where a pass per layer would run a
# 60-layer ResNet 120 times over the images.
PROBE_BYTES = 2**30


def layer_groups(
    model: nn.Module, x: torch.Tensor, layers: list[str], limit: int | None = None
) -> list[list[str]]:
    """layers in their order, cut into groups whose activations of all of x take at most `limit`
    bytes each (default PROBE_BYTES; a layer larger than that alone)."""
    limit = PROBE_BYTES if limit is None else limit
    one = record(model, x[:1], layers)
    sizes = {name: a[0].numel() * a.element_size() * len(x) for name, a in one.items()}
    groups: list[list[str]] = [[]]
    total = 0
    for name in layers:
        if groups[-1] and total + sizes[name] > limit:
            groups.append([])
            total = 0
        groups[-1].append(name)
        total += sizes[name]
    return groups


def linear_probes(
    model: nn.Module,
    x_train: torch.Tensor,
    y_train: np.ndarray,
    x_test: torch.Tensor,
    y_test: np.ndarray,
    layers: str | list = "all",
) -> list[ProbeRow]:
    """A logistic regression on each layer's flattened activations, fitted on (x_train, y_train)
    images and scored on the test images: does linear separability grow with depth? (Alain &
    Bengio's question asked of this network.)"""
    rows = []
    names = resolve_layers(model, layers)
    depth = {name: h for h, name in enumerate(resolve_layers(model, "all"), 1)}  # h of a leaf layer
    for group in layer_groups(model, x_train, names):  # conv2d_1 alone is 50,176 values an image
        a_trains, a_tests = record(model, x_train, group), record(model, x_test, group)
        for name in group:
            a_train, a_test = a_trains.pop(name).flatten(1).numpy(), a_tests.pop(name).flatten(1).numpy()
            probe, seconds = fit_linear_probe(a_train, y_train)
            right = probe.predict(a_test) == y_test
            h = depth.get(name, len(rows) + 1)
            rows.append(
                ProbeRow(
                    h,
                    name,
                    a_train.shape[1],
                    float(np.mean(right)),
                    round(seconds, 1),
                    list(bootstrap_mean(right)),
                )
            )
            log.info("linear probe h=%d %s (%d dims): %.4f", h, name, a_train.shape[1], rows[-1].test_acc)
    return rows


# What decides a probe's numbers besides the CNN and the images: bump when linear_probes changes.
PROBES_VERSION = "standardscaler-logreg-C0.1-iter100, with intervals"


def cached_linear_probes(
    cnn: OpenedModel,
    data: DataSpec,
    cache_dir: str | Path,
    train_samples: int,
    test_samples: int | None,
    max_layers: int | None = None,
) -> list[ProbeRow]:
    """linear_probes on every layer of the CNN (at most max_layers, spread over its depth):
    train_samples random training images (seed 0), the first test_samples test images (all when None);
    cached per CNN, layers and images (minutes of fitting)."""
    every = resolve_layers(cnn.model, "all")
    layers = spread(every, max_layers)

    def compute(staging: Path) -> dict:
        x_train, y_train = split_tensors(data, "train")
        keep = np.random.default_rng(0).permutation(len(y_train))[:train_samples]
        x_test, y_test = split_tensors(data, "test")
        x_test, y_test = x_test[:test_samples], y_test[:test_samples]
        rows = linear_probes(
            cnn.model,
            to_float(x_train[keep]),
            y_train[keep].numpy(),
            to_float(x_test),
            y_test.numpy(),
            layers,
        )
        return {"rows": [to_json(r) for r in rows]}

    cut = [] if layers == every else [layers]  # every layer: the key it had before the cut
    key = config_key(PROBES_VERSION, cnn.key, data.content(), train_samples, test_samples, *cut)
    rows, _, cached = get_or_compute(Path(cache_dir) / f"probes-{key}", compute, lambda _, meta: meta["rows"])
    if cached:
        log.info("linear probes from the cache (probes-%s)", key)
    return [from_json(ProbeRow, row) for row in rows]
