"""The model-randomisation test agrees with Quantus's MPRT (the reference implementation of Adebayo
et al.'s test) on the same trained CNN, the same MNIST test images and the same randomised weights:
each cascading step's mean Spearman within 0.02, for each of three randomisation draws against
Quantus seeded as that draw (a constant map, which ranks nothing, left out by both: Quantus gives
NaN). Slow: Quantus comes with `make test-slow`."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mnist_probe.sanity as sanity
from mnist_probe.attribution import attribute
from mnist_probe.data import split_tensors, to_float
from mnist_probe.specs import DataSpec, Hardware, Recipe
from mnist_probe.training import fit_or_load
from tests.conftest import mnist_root

pytestmark = pytest.mark.slow
SEED = 42
DRAWS = 3


def quantus_weights(model, layers, seed):
    """Quantus's re-initialisation: torch.manual_seed(seed + 1) before each layer's reset_parameters."""
    copied = sanity.copy.deepcopy(model)
    modules = dict(copied.named_modules())
    with torch.random.fork_rng(devices=[]):
        for name in layers:
            torch.manual_seed(seed + 1)
            modules[name].reset_parameters()
    return copied.eval()


@pytest.mark.parametrize("method", ["saliency", "grad_cam"])
def test_model_randomisation_matches_quantus_mprt(tmp_path, monkeypatch, method):
    import quantus  # make test-slow installs it (the quantus extra)

    data = DataSpec(root=mnist_root(), train_subset=3000, val_size=500, test_subset=500)
    recipe = Recipe(epochs=1, batch_size=64, gap_images=0)
    model = fit_or_load(data, recipe, 0, tmp_path, None, None, Hardware(progress_bar=False)).model.eval()
    images, labels = split_tensors(data, "test")
    x, y = to_float(images[:64]), labels[:64]

    monkeypatch.setattr(sanity, "randomised", quantus_weights)  # the same weights at every step
    rows = sanity.model_randomisation(model, x, y, [method], "cascading", seed=SEED, draws=DRAWS)
    ours = {r.layer: r.draw_means for r in rows if r.method == method}

    def explain(model, inputs, targets, **kwargs):
        maps = attribute(model, torch.as_tensor(inputs), torch.as_tensor(targets), method)
        return maps.unsqueeze(1).numpy()  # Quantus's N×1×H×W

    trained = explain(model, x.numpy(), y.numpy())
    for draw in range(DRAWS):  # draw k is seeded seed + k: Quantus at that seed
        mprt = quantus.MPRT(
            similarity_func=quantus.similarity_func.correlation_spearman,
            layer_order="top_down",
            seed=SEED + draw,
            abs=True,
            normalise=True,
            disable_warnings=True,
        )
        theirs = mprt(
            model=model,
            x_batch=x.numpy(),
            y_batch=y.numpy(),
            a_batch=trained,
            explain_func=explain,
            device="cpu",
            batch_size=64,
        )
        theirs = {layer: float(np.nanmean(scores)) for layer, scores in theirs.items() if layer != "original"}
        assert list(theirs) == list(ours)  # the same layers, from the output down
        gaps = {layer: abs(ours[layer][draw] - theirs[layer]) for layer in ours}
        assert max(gaps.values()) < 0.02, (draw, ours, theirs)
    last = [r for r in rows if r.method == method][-1]
    assert last.spearman < 0.9  # and the test measured something: the maps did move
