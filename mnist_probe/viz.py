"""Figures of images and activations (feature-map sheets, code-vector panels, shifted digits): each
function takes tensors and returns a matplotlib Figure; mnist_probe.plots.save writes a PNG."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
from torchvision.utils import make_grid

from mnist_probe.names import CODE_LAYER, layer_label
from mnist_probe.shift_plots import SHIFT_NOTE


def show(ax, image: torch.Tensor, **kwargs) -> None:
    """One input image (C×H×W, or H×W, in [0, 1]) on ax: a grey image dark on light, as the study drew
    digits; a colour one in its colours."""
    image = image.detach().float().cpu()
    if image.dim() == 3 and image.shape[0] == 3:
        ax.imshow(image.permute(1, 2, 0).clamp(0, 1).numpy(), **kwargs)
    else:
        ax.imshow(image.reshape(image.shape[-2:]), cmap="gray_r", vmin=0, vmax=1, **kwargs)


def feature_map_sheet(image: torch.Tensor, maps: torch.Tensor, layer: str, title: str = "") -> plt.Figure:
    """All C maps of one layer (C×H×W, C a square) on one sheet, the input digit on the left.

    One colour scale for the whole sheet (0 to the layer's max), so a weak or dead map looks weak.
    """
    c, h, w = maps.shape
    side = int(np.ceil(np.sqrt(c)))
    fig = plt.figure(figsize=(12, 8.4))
    grid = fig.add_gridspec(1, 2, width_ratios=[3, side], wspace=0.05)
    ax = fig.add_subplot(grid[0])
    show(ax, image)
    ax.set_title(f"input {'×'.join(map(str, image.shape[-2:]))}", fontsize=10)
    ax.axis("off")
    top, bottom = float(maps.max()) or 1.0, min(0.0, float(maps.min()))  # below 0: no ReLU before it
    # One mosaic, one imshow (64 axes took 0.6 s a sheet): tiles side by side, gaps left blank (NaN).
    tiles = maps.float().unsqueeze(1)
    mosaic = make_grid(tiles, nrow=side, padding=max(1, h // 12), pad_value=float("nan"))[0]
    cmap = plt.get_cmap("viridis").with_extremes(bad="white")
    ax = fig.add_subplot(grid[1])
    ax.imshow(mosaic, cmap=cmap, vmin=bottom, vmax=top, interpolation="nearest")
    ax.axis("off")
    fig.suptitle(f"{layer_label(layer)}: {c}×{h}×{w} = {c * h * w:,} values  {title}")
    return fig


def code_vector_panel(
    images: torch.Tensor, codes: np.ndarray, probs: np.ndarray, labels: list[int], layer: str = CODE_LAYER
) -> plt.Figure:
    """One row per image: the digit, its code vector (the output of `layer`) as a heat strip, its 10
    probabilities."""
    n = len(images)
    fig, axes = plt.subplots(
        n, 3, figsize=(12, 0.9 * n + 0.8), gridspec_kw={"width_ratios": [1, 12, 3]}, squeeze=False
    )
    top, bottom, dims = float(codes.max()) or 1.0, min(0.0, float(codes.min())), codes.shape[1]
    for i in range(n):
        a_img, a_code, a_prob = axes[i]
        show(a_img, images[i])
        a_img.axis("off")
        a_code.imshow(codes[i][None, :], aspect="auto", cmap="magma", vmin=bottom, vmax=top)
        a_code.set_yticks([])
        a_code.set_xticks([] if i < n - 1 else np.linspace(0, dims - 1, 5).round().astype(int))
        classes = range(probs.shape[1])
        a_prob.bar(classes, probs[i], color=["C3" if k == labels[i] else "C0" for k in classes])
        a_prob.set_ylim(0, 1)
        a_prob.set_yticks([])
        a_prob.set_xticks(classes if i == n - 1 else [])
    axes[0, 1].set_title(f"code vector, {layer_label(layer)}, {dims} values")
    axes[0, 2].set_title("P(class), true class red")
    fig.tight_layout()
    return fig


def shift_strip(stacked: torch.Tensor, pairs, preds: list[str] | None = None) -> plt.Figure:
    """The shifted inputs side by side, each titled with its (dx, dy) and, if given, a caption."""
    n = len(pairs)
    fig, axes = plt.subplots(1, n, figsize=(1.6 * n, 2.3), squeeze=False)
    for k, ax in enumerate(axes[0]):
        show(ax, stacked[k])
        ax.set_title(f"({pairs[k][0]}, {pairs[k][1]})", fontsize=9)
        if preds:
            ax.set_xlabel(preds[k], fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"shifted inputs (dx, dy); {SHIFT_NOTE}", fontsize=9)
    fig.tight_layout()
    return fig


def _attribution_grid(
    cells: list[list[tuple[torch.Tensor, float | None]]],
    row_labels: list[str],
    col_labels: list[str],
    title: str,
) -> plt.Figure:
    """A grid of images: each cell (image, scale), an input digit when scale is None, else an
    attribution on a diverging scale of ±scale."""
    rows, cols = len(cells), len(cells[0])
    fig, axes = plt.subplots(rows, cols, figsize=(1.55 * cols, 1.55 * rows), squeeze=False)
    for r, row in enumerate(cells):
        for k, (image, scale) in enumerate(row):
            if scale is None:
                show(axes[r, k], image)
            else:
                axes[r, k].imshow(image, cmap="RdBu_r", vmin=-scale, vmax=scale)
        axes[r, 0].set_ylabel(row_labels[r], fontsize=7)
    for k, label in enumerate(col_labels):
        axes[0, k].set_title(label, fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def _scale(a: torch.Tensor) -> float:
    return float(a.abs().max()) or 1.0


def attribution_sheet(images: torch.Tensor, attrs: dict[str, torch.Tensor], labels: list[int]) -> plt.Figure:
    """One row per digit: the image, then each method's attribution of its true class."""
    maps = list(attrs.values())
    cells = [[(image, None), *[(a[i], _scale(a[i])) for a in maps]] for i, image in enumerate(images)]
    methods = [m.replace("_", " ") for m in attrs]
    return _attribution_grid(
        cells,
        [str(d) for d in labels],
        ["input", *methods],
        "Where the network looks: attributions of the true class",
    )


def attribution_strip(
    shifted: torch.Tensor, attrs: dict[str, torch.Tensor], dys: list[int], item: str = "digit"
) -> plt.Figure:
    """The shifted image along the top row, each method's attribution of it below (one scale a row)."""
    cells = [[(shifted[k], None) for k in range(len(dys))]]
    cells += [[(a[k], _scale(a)) for k in range(len(dys))] for a in attrs.values()]
    methods = [m.replace("_", " ") for m in attrs]
    return _attribution_grid(
        cells, ["input", *methods], [f"dy={dy}" for dy in dys], f"Does the attribution move with the {item}?"
    )


def randomisation_sheet(
    image: torch.Tensor, columns: list[str], maps: dict[str, list[torch.Tensor]]
) -> plt.Figure:
    """The model-randomisation sequence of one image: a row per method, its map on the trained network
    and after each cascading step (each map on its own scale: randomised weights change magnitudes)."""
    cells = [[(image, None), *[(m, _scale(m)) for m in sequence]] for sequence in maps.values()]
    return _attribution_grid(
        cells,
        [m.replace("_", " ") for m in maps],
        ["input", *columns],
        "Do the maps change as the layers are randomised (from the output down)?",
    )


def filter_sheet(patches: torch.Tensor, wanted: torch.Tensor | None, layer: str) -> plt.Figure:
    """Per filter, one tile: its top-k patches as a square mosaic and, if given, the optimised input
    beside it (scaled to the mosaic's height). One imshow for the whole sheet, filters in order."""
    c, k, channels, s, _ = patches.shape
    side = int(np.ceil(np.sqrt(k)))
    tiles = []
    for f in range(c):
        mosaic = make_grid(patches[f], nrow=side, padding=1, pad_value=1.0)[:channels]
        if wanted is not None:
            size = mosaic.shape[-2:]
            big = torch.nn.functional.interpolate(wanted[f][None], size=size, mode="nearest")[0]
            mosaic = torch.cat([mosaic, torch.ones(channels, mosaic.shape[1], 2), big], dim=2)
        tiles.append(mosaic)
    cols = int(np.ceil(np.sqrt(c)))
    sheet = make_grid(torch.stack(tiles), nrow=cols, padding=4, pad_value=0.5)[:channels]
    fig, ax = plt.subplots(figsize=(12, 12 * sheet.shape[1] / sheet.shape[2] + 0.6))
    show(ax, sheet, interpolation="nearest")
    ax.axis("off")
    what = f"top-{k} test patches ({s}×{s} px)" + (
        ", and beside them the input that excites it most" if wanted is not None else ""
    )
    ax.set_title(f"What each filter of {layer} wants (in order, row by row): {what}", fontsize=9)
    fig.tight_layout()
    return fig
