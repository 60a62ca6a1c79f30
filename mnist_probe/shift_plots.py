"""Figures of the translation test: P(class) along the shifts, how far each layer's output moves, accuracy
over the grid of shifts, per class and per digit; every axis says which way a shift goes (SHIFT_NOTE)."""

from __future__ import annotations

import numpy as np

from mnist_probe.names import layer_label
from mnist_probe.plots import plt  # pyplot, with the file-only backend plots sets

SHIFT_NOTE = "dx > 0: right, dy < 0: up"


def pair_labels(pairs: list[tuple[int, int]]) -> list[str]:
    """Axis labels for shifts: 'dy=-3' when dx is 0 throughout, else '(dx,dy)'."""
    if all(dx == 0 for dx, _ in pairs):
        return [f"dy={dy}" for _, dy in pairs]
    return [f"({dx},{dy})" for dx, dy in pairs]


def shift_curves(pairs, p_true: dict[str, np.ndarray], digit: str, idx: int) -> plt.Figure:
    """P(true class) against shift, one line per model (log scale shows the study's 1e-4%)."""
    fig, ax = plt.subplots(figsize=(8, 4.8))
    x = np.arange(len(pairs))
    for label, p in p_true.items():
        ax.plot(x, np.clip(p, 1e-8, 1), "o-", label=label)
    ax.set_yscale("log")
    ax.set_ylim(1e-8, 2)
    ax.set_xticks(x, pair_labels(pairs))
    ax.set_ylabel(f"P(y = {digit} | shifted X)")
    ax.set_title(f"test #{idx} (a {digit}) shifted ({SHIFT_NOTE})")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def deformation_plot(pairs, cosines: dict[str, np.ndarray], p_true: np.ndarray) -> plt.Figure:
    """Cosine similarity of each layer's activation to the unshifted one, beside CNN P(true)."""
    fig, ax = plt.subplots(figsize=(8, 4.8))
    x = np.arange(len(pairs))
    for name, c in cosines.items():
        ax.plot(x, c, "o-", label=f"cos sim, {layer_label(name)}")
    ax.plot(x, p_true, "k--", lw=2, label="CNN P(true class)")
    ax.set_ylim(-0.05, 1.05)
    ax.set_xticks(x, pair_labels(pairs))
    ax.set_ylabel("similarity to the unshifted image / probability")
    ax.set_title(f"How shifts deform the CNN's activations ({SHIFT_NOTE})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def accuracy_heatmaps(radius: int, acc: dict[str, np.ndarray]) -> plt.Figure:
    """Test accuracy on the (dx, dy) grid, one panel per model."""
    n = len(acc)
    fig, axes = plt.subplots(1, n, figsize=(3.3 * n, 3.6), squeeze=False)
    ticks = list(range(-radius, radius + 1))
    for ax, (label, a) in zip(axes[0], acc.items(), strict=True):
        grid = a.reshape(len(ticks), len(ticks)).T  # rows: dy, columns: dx
        im = ax.imshow(
            100 * grid,
            cmap="viridis",
            vmin=0,
            vmax=100,
            origin="upper",
            extent=(-radius - 0.5, radius + 0.5, radius + 0.5, -radius - 0.5),
        )
        ax.set_title(f"{label}\n(0,0): {100 * grid[radius, radius]:.1f}%", fontsize=9)
        ax.set_xlabel("dx (px, + right)")
    axes[0, 0].set_ylabel("dy (px, + down)")
    fig.subplots_adjust(wspace=0.3)
    fig.colorbar(im, ax=axes[0].tolist(), label="test accuracy (%)", shrink=0.8)
    return fig


def class_shift_heatmap(
    acc: np.ndarray, dys: list[int], title: str, classes: list[str] | None = None
) -> plt.Figure:
    """Accuracy of each class (rows) at each vertical shift (columns), with the value in each cell."""
    fig, ax = plt.subplots(figsize=(1 + 0.75 * len(dys), 5.5))
    im = ax.imshow(100 * acc, cmap="viridis", vmin=0, vmax=100, aspect="auto")
    for i in range(acc.shape[0]):
        for j in range(acc.shape[1]):
            ax.text(
                j,
                i,
                f"{100 * acc[i, j]:.0f}",
                ha="center",
                va="center",
                fontsize=7,
                color="black" if acc[i, j] > 0.6 else "white",
            )
    ax.set_xticks(range(len(dys)), [str(d) for d in dys])
    ax.set_yticks(range(acc.shape[0]), classes or [str(c) for c in range(acc.shape[0])])
    ax.set_xlabel("dy (px, dx = 0; < 0 is up)")
    ax.set_ylabel("true class")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, label="accuracy (%)")
    fig.tight_layout()
    return fig


def digit_curves(
    dys: list[int], p_true: dict[int, np.ndarray], title: str, classes: list[str] | None = None
) -> plt.Figure:
    """P(true class) against vertical shift, one line per class (the first test image of each)."""
    fig, ax = plt.subplots(figsize=(8, 4.8))
    for digit, p in p_true.items():
        ax.plot(
            dys, np.clip(p, 1e-8, 1), "o-", label=classes[digit] if classes else str(digit), color=f"C{digit}"
        )
    ax.set_yscale("log")
    ax.set_ylim(1e-8, 2)
    ax.set_xlabel("dy (px, dx = 0; < 0 is up)")
    ax.set_ylabel("P(true class)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(title="class", fontsize=7, ncol=2)
    fig.tight_layout()
    return fig
