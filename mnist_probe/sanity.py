"""Can an explanation be trusted? Does it depend on the model at all: the model-randomisation test of
Adebayo et al. (2018, "Sanity checks for saliency maps"), as Quantus's MPRT computes it. The
network's weights are re-initialised layer by layer, from the output down (cascading: one layer more
each step) or one layer at a time (independent), and each method's map is compared with the map of
the trained network, image by image: Spearman's rank correlation of the absolute values, and SSIM of
the maps scaled to their largest absolute value. A method whose maps stay alike after the weights
are gone explains the image, not the model. An edge detector (a Sobel filter of the input), which
knows nothing of the model, runs through the same steps as the control that must fail. And is it
faithful: does removing the pixels it ranks first take the class away sooner than a random order?
"""

from __future__ import annotations

import copy
import dataclasses
import warnings
import zlib
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.functional.image import structural_similarity_index_measure
from torchmetrics.functional.regression import spearman_corrcoef

from mnist_probe.attribution import attribute
from mnist_probe.data import to_float
from mnist_probe.intervals import bootstrap_mean, two_level_interval
from mnist_probe.model_layers import spread
from mnist_probe.names import EDGE_CONTROL, RANDOM_ORDER
from mnist_probe.rows import FaithfulnessRow, RandomisationRow
from mnist_probe.specs import Augment, DataSpec, Recipe

FAITHFULNESS_STEPS = 20  # deletion and insertion: the ranked pixels in this many equal parts
RANDOMISATION_DRAWS = 5  # independent re-initialisations of each step (beyond.randomisation_draws)

MODES = ("cascading", "independent")
SHUFFLED = "labels shuffled"  # the data-randomisation test's one step, as its rows name it
Explainer = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]  # (model, x, targets) -> N×H×W


def edge_map(model: nn.Module, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The Sobel gradient magnitude of each image, channels summed: an "explanation" of no model."""
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
    kernels = torch.stack([kx, kx.T]).unsqueeze(1).to(x)  # 2×1×3×3
    grey = x.sum(1, keepdim=True)
    g = F.conv2d(F.pad(grey, (1, 1, 1, 1), mode="replicate"), kernels)
    return g.pow(2).sum(1).sqrt()


def _explainers(methods: list[str], explainers: dict[str, Explainer] | None) -> dict[str, Explainer]:
    """attribution.attribute's methods by name, the caller's explainers, and the edge control last."""
    explain: dict[str, Explainer] = {m: lambda net, xs, ts, m=m: attribute(net, xs, ts, m) for m in methods}
    return explain | (explainers or {}) | {EDGE_CONTROL: edge_map}


def randomisable_layers(model: nn.Module) -> list[str]:
    """The modules holding weights of their own that can re-initialise them (reset_parameters), in
    the order the model defines them: what the test randomises."""

    def own_weights(m: nn.Module) -> bool:
        return hasattr(m, "reset_parameters") and next(m.parameters(recurse=False), None) is not None

    return [name for name, m in model.named_modules() if name and own_weights(m)]


def randomised(model: nn.Module, layers: list[str], seed: int) -> nn.Module:
    """A copy of the model with these layers re-initialised (their own init, seeded by the seed and
    the layer's name: not a small integer a model may have been built with), the rest kept."""
    copied = copy.deepcopy(model)
    modules = dict(copied.named_modules())
    with torch.random.fork_rng(devices=[]):
        for name in layers:
            torch.manual_seed(zlib.crc32(f"{seed}:{name}".encode()))
            modules[name].reset_parameters()
    return copied.eval()


def cascading_steps(layers: list[str], most: int | None = None) -> list[list[str]]:
    """The cascading test's steps: step k randomises the last k layers (the one it adds comes first);
    at most `most` of them, spread from the top layer alone to every layer."""
    return spread([layers[len(layers) - k :] for k in range(1, len(layers) + 1)], most)


def randomisation_sequence(
    model: nn.Module,
    image: torch.Tensor,
    target: int,
    methods: list[str],
    seed: int = 0,
    explainers: dict[str, Explainer] | None = None,
    most: int | None = None,
) -> tuple[list[str], dict[str, list[torch.Tensor]]]:
    """One image's maps on the trained network and after each cascading step, as Adebayo et al.'s
    figure shows them: (the columns: 'trained' and the layer each step adds, {method: H×W maps})."""
    x, targets = to_float(image.unsqueeze(0) if image.dim() < 4 else image)[:1], torch.tensor([target])
    explain = _explainers(methods, explainers)
    steps = cascading_steps(randomisable_layers(model), most)
    nets = [model.eval(), *(randomised(model, changed, seed) for changed in steps)]
    maps = {name: [fn(net, x, targets)[0].detach() for net in nets] for name, fn in explain.items()}
    return ["trained", *(changed[0] for changed in steps)], maps


def constant(maps: torch.Tensor) -> torch.Tensor:
    """Per map (N×H×W): True where |map| is the same everywhere, so that it ranks no pixel above
    another (Grad-CAM's all-zero maps after its ReLU). Such a map is not scored: Quantus gives NaN."""
    flat = maps.detach().abs().flatten(1)
    return flat.amax(1) == flat.amin(1)


def similarity(original: torch.Tensor, other: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per image: Spearman's rank correlation of the absolute values (ties averaged), and SSIM of the
    two maps each scaled by its largest absolute value; NaN where either map is constant."""
    a, b = original.detach().double(), other.detach().double()
    rho = torch.atleast_1d(spearman_corrcoef(a.abs().flatten(1).T, b.abs().flatten(1).T))

    def scaled(m: torch.Tensor) -> torch.Tensor:
        top = m.flatten(1).abs().amax(1).clamp_min(1e-12)
        return (m / top[:, None, None]).unsqueeze(1).float()

    ssim = structural_similarity_index_measure(scaled(a), scaled(b), data_range=2.0, reduction="none")
    flat = (constant(original) | constant(other)).numpy()
    return np.where(flat, np.nan, rho.numpy()), np.where(flat, np.nan, ssim.numpy())


def scored_row(
    method: str,
    mode: str,
    step: int,
    layer: str,
    trained: torch.Tensor,
    others: list[torch.Tensor],
) -> RandomisationRow:
    """One method's row from its trained maps and its maps after each draw's randomisation: each
    draw's mean over the images with a score (a constant map on either side has none), their mean,
    and the interval over the draws and the images together (intervals.two_level_interval)."""
    rho, ssim = (np.stack(s) for s in zip(*(similarity(trained, o) for o in others), strict=True))
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a draw whose maps were all constant: NaN
        draw_means = np.nanmean(rho, 1)
        spearman, mean_ssim = float(np.nanmean(draw_means)), float(np.nanmean(np.nanmean(ssim, 1)))
    return RandomisationRow(
        method,
        mode,
        step,
        layer,
        spearman,
        mean_ssim,
        list(two_level_interval(rho)),
        [float(v) for v in draw_means],
        rho.shape[1],
        int(constant(trained).sum()),
        int(sum(constant(o).sum() for o in others)),
        int(np.isnan(rho).sum()),
    )


def model_randomisation(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor | list[int],
    methods: list[str],
    mode: str = "cascading",
    seed: int = 0,
    explainers: dict[str, Explainer] | None = None,
    trained: dict[str, torch.Tensor] | None = None,
    most: int | None = None,
    draws: int = RANDOMISATION_DRAWS,
) -> list[RandomisationRow]:
    """Each method's maps (attribution.attribute, and explainers by name; the edge control always)
    on the model with more and more layers randomised (cascading: from the last layer down, one
    more a step) or one layer at a time (independent), against its maps on the trained model
    (`trained`, by name, where the caller has them already; else computed here): one row per method
    and step (scored_row). Each step is drawn `draws` times, re-initialised with the seeds seed,
    seed + 1, ...: a score moves from one draw to the next, and its interval holds that. A deep
    model's steps: at most `most`, spread over its layers (a step's number counts the layers it
    randomised)."""
    if mode not in MODES:
        raise ValueError(f"mode {mode!r}: one of {', '.join(MODES)}")
    if draws < 1:
        raise ValueError(f"draws={draws}: at least 1 randomisation draw (5 or more for a spread)")
    x, targets = to_float(images), torch.as_tensor(targets)
    model = model.eval()
    explain = _explainers(methods, explainers)
    trained = trained or {}
    original = {
        name: trained[name] if name in trained else fn(model, x, targets) for name, fn in explain.items()
    }
    layers = randomisable_layers(model)
    steps = cascading_steps(layers) if mode == "cascading" else [[name] for name in layers]
    rows = []
    for step, changed in spread(list(enumerate(steps, 1)), most):
        nets = [randomised(model, changed, seed + k) for k in range(draws)]
        for name, fn in explain.items():
            others = [fn(net, x, targets) for net in nets]
            rows.append(scored_row(name, mode, step, changed[0], original[name], others))
    return rows


def memorising(data: DataSpec, recipe: Recipe, images: int, epochs: int) -> tuple[DataSpec, Recipe]:
    """The data and recipe of the data-randomisation test (Adebayo et al. 2018, section 4): the first
    `images` training images with their labels shuffled, trained `epochs` epochs at the recipe's
    optimiser and batch without augmentation or schedule, so that the network memorises them."""
    shuffled = dataclasses.replace(
        data, train_subset=images, shuffle_labels=True, val_size=min(images, data.val_size)
    )  # validating costs, and tells nothing
    plain = dataclasses.replace(
        recipe, epochs=epochs, augment=Augment(enabled=False), scheduler=None, epoch_images=None, gap_images=0
    )
    return shuffled, plain


def data_randomisation(
    model: nn.Module,
    memorised: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor | list[int],
    methods: list[str],
    explainers: dict[str, Explainer] | None = None,
    trained: dict[str, torch.Tensor] | None = None,
) -> list[RandomisationRow]:
    """Each method's maps for the same images and classes on a network of the same architecture that
    memorised shuffled labels (memorising()), against its maps on the trained network: one row per
    method (mode 'data'). A method whose maps stay alike explains something other than what the
    network learnt from the labels. The edge control runs beside them. One memorised network is one
    draw: the interval covers the images only."""
    x, targets = to_float(images), torch.as_tensor(targets)
    explain = _explainers(methods, explainers)
    trained = trained or {}
    rows = []
    for name, fn in explain.items():
        original = trained[name] if name in trained else fn(model.eval(), x, targets)
        rows.append(scored_row(name, "data", 1, SHUFFLED, original, [fn(memorised.eval(), x, targets)]))
    return rows


def faithfulness(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor | list[int],
    maps: dict[str, torch.Tensor],
    steps: int = FAITHFULNESS_STEPS,
    seed: int = 0,
) -> list[FaithfulnessRow]:
    """Deletion and insertion (Petsiuk et al. 2018): pixels removed from the image (set to 0), or
    revealed on a blank one, in the order each map ranks them (largest |value| first), in `steps`
    equal parts; P(target) after each part. The area under each curve (the mean over the steps) per
    image, with its 95% interval: a faithful map's deletion area is small and insertion area large.
    An image whose map is constant is left out of that map's means (and counted).
    A random order (seeded) runs beside the maps as the line to beat."""
    x, targets = to_float(images), torch.as_tensor(targets)
    n, pixels = len(x), x.shape[-2] * x.shape[-1]
    generator = torch.Generator().manual_seed(seed)
    orders = {name: m.detach().abs().flatten(1).argsort(1, descending=True) for name, m in maps.items()}
    orders[RANDOM_ORDER] = torch.stack([torch.randperm(pixels, generator=generator) for _ in range(n)])
    flat = {name: constant(m).numpy() for name, m in maps.items()} | {RANDOM_ORDER: np.zeros(n, bool)}
    cuts = [round(pixels * k / steps) for k in range(1, steps + 1)]
    rows = []
    model = model.eval()
    for name, order in orders.items():
        rank = torch.empty_like(order)
        rank.scatter_(1, order, torch.arange(pixels).expand(n, -1))  # each pixel's place in the order
        curves = {"deletion": [], "insertion": []}
        with torch.no_grad():
            for cut in cuts:
                gone = (rank < cut).reshape(n, 1, *x.shape[-2:]).to(x.dtype)  # the first `cut` pixels
                for kind, image in (("deletion", x * (1 - gone)), ("insertion", x * gone)):
                    p = torch.softmax(model(image), 1)[torch.arange(n), targets]
                    curves[kind].append(p)
        kept = ~flat[name]  # a constant map orders nothing: its image is left out
        for kind, curve in curves.items():
            per_image = torch.stack(curve, 1).numpy()[kept]
            area = per_image.mean(1)
            rows.append(
                FaithfulnessRow(
                    name,
                    kind,
                    float(area.mean()) if len(area) else float("nan"),
                    list(bootstrap_mean(area, seed=seed)) if len(area) else None,
                    [float(v) for v in per_image.mean(0)] if len(area) else [],
                    n,
                    int(flat[name].sum()),
                )
            )
    return rows
