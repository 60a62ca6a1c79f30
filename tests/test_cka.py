"""Linear CKA: 1 for a representation and itself, invariant to orthogonal transforms and isotropic
scaling, near 0 for unrelated ones; the minibatch estimate agrees with the full one."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mnist_probe.cka import MinibatchCKA, cka_between, linear_cka, shift_cka
from mnist_probe.lenet import LeNet5


def features(seed: int, n: int = 200, p: int = 30) -> torch.Tensor:
    return torch.randn(n, p, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), scale=st.floats(0.01, 100.0))
def test_cka_is_one_with_itself_and_invariant_to_rotation_and_scale(seed, scale):
    x = features(seed)
    q, _ = torch.linalg.qr(features(seed + 1, n=30))  # a random orthogonal 30×30
    assert linear_cka(x, x) == pytest.approx(1.0)
    assert linear_cka(x, scale * x @ q) == pytest.approx(1.0)
    assert linear_cka(x, x + 5.0) == pytest.approx(1.0)  # centered: an offset changes nothing


def test_cka_of_unrelated_features_is_small_and_not_invariant_to_any_linear_map():
    x, y = features(0, n=2000), features(1, n=2000)
    assert linear_cka(x, y) < 0.05
    stretch = torch.ones(30, dtype=torch.float64)
    stretch[0] = 50.0  # anisotropic scaling is not an isometry: CKA drops
    assert linear_cka(x, x * stretch) < 0.9


def test_minibatch_cka_agrees_with_the_full_estimate():
    x = features(0, n=1000)
    y = x @ features(2, n=30, p=10) + 0.5 * features(3, n=1000, p=10)  # related, not identical
    acc = MinibatchCKA(1, 2)
    for start in range(0, 1000, 250):
        acc.update([x[start : start + 250]], [y[start : start + 250], x[start : start + 250]])
    m = acc.matrix()
    assert m[0, 1] == pytest.approx(1.0)
    assert m[0, 0] == pytest.approx(linear_cka(x, y), abs=0.03)


def test_minibatch_cka_intervals_cover_the_population_value():
    """Two related representations whose CKA over 40,000 examples is the truth: the interval from
    1,000 examples in ten minibatches covers it in most of 40 independent draws, and is not a point."""
    mixing = torch.randn(8, 8, generator=torch.Generator().manual_seed(999), dtype=torch.float64)
    spread = torch.linspace(0.5, 2, 20, dtype=torch.float64)

    def pair(seed, n):
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(n, 20, generator=g, dtype=torch.float64) * spread
        return x, x[:, :8] @ mixing + torch.randn(n, 8, generator=g, dtype=torch.float64)

    truth = linear_cka(*pair(10_000, 40_000))
    covered = 0
    for seed in range(40):
        x, y = pair(seed, 1000)
        acc = MinibatchCKA(1, 1)
        for start in range(0, 1000, 100):
            acc.update([x[start : start + 100]], [y[start : start + 100]])
        low, high = acc.intervals(seed)[0, 0]
        assert low < acc.matrix()[0, 0] < high
        covered += low <= truth <= high
    assert 30 <= covered <= 40


def test_cka_between_networks_and_under_shifts():
    torch.manual_seed(0)
    net = LeNet5().eval()
    images = (torch.rand(64, 28, 28) * 255).to(torch.uint8)
    a, b, m, ci = cka_between(net, net, images, ["c1", "c3", "f6"], ["c1", "c3", "f6"], batch_size=32)
    assert a == b == ["c1", "c3", "f6"] and m.shape == (3, 3)
    assert np.allclose(np.diag(m), 1.0)  # a network and itself, layer by layer
    names, curve, shifted_ci = shift_cka(net, images, [(0, 0), (0, -3)], ["c1", "f6"], batch_size=32)
    assert names == ["c1", "f6"] and curve.shape == (2, 2)
    assert ci is None and shifted_ci is None  # two minibatches: too few to resample
    assert np.allclose(curve[0], 1.0) and np.all(curve[1] < 1.0)  # no shift: identical; a shift: not


def test_linear_cka_of_a_conv_layer_uses_the_gram_form_with_the_same_value():
    """Features outnumbering the examples (100 images of a 64×28×28 conv map: 50,176 features) go
    through the n×n Gram matrices: p×p products would need 20 GB. Where both forms fit, they agree."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(100, 64 * 28 * 28, generator=g)
    y = x[:, : 64 * 14 * 14] * 2 + 0.5 * torch.randn(100, 64 * 14 * 14, generator=g)  # a noisy part of x
    value = linear_cka(x, y)  # would ask for p×p = 50,176² doubles (20 GB) in the feature form
    assert 0.1 < value < 1.0 and linear_cka(x, 3 * x) == pytest.approx(1.0)

    def feature_form(a, b):
        a, b = a - a.mean(0), b - b.mean(0)
        return float((b.T @ a).norm() ** 2 / ((a.T @ a).norm() * (b.T @ b).norm()))

    small_x, small_y = x[:, :60].double(), y[:, :80].double()  # 100 examples: the feature form
    wide_x, wide_y = small_x[:50], small_y[:50]  # 50 examples, 80 features: the Gram form
    assert linear_cka(small_x, small_y) == pytest.approx(feature_form(small_x, small_y), rel=1e-9)
    assert linear_cka(wide_x, wide_y) == pytest.approx(feature_form(wide_x, wide_y), rel=1e-9)
