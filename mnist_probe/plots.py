"""Figures of numbers (curves, bars, heatmaps, spreads): each function takes numbers and returns a
matplotlib Figure; save() writes a PNG. No torch here, so the sweep summary draws without it;
figures of images and activations are in mnist_probe.viz."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from mnist_probe.cache import atomic_write  # noqa: E402
from mnist_probe.names import CODE_LAYER, layer_label  # noqa: E402
from mnist_probe.rows import GapRow  # noqa: E402

DPI = 100


def save(fig: plt.Figure, path: str | Path, tb=None, tag: str = "") -> Path:
    """Write a figure as PNG atomically (fixed size: no tight bbox) and close it. With a TensorBoard
    writer, the same pixels go to it under tag: the figure is drawn once for both."""
    fig.set_dpi(DPI)
    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3]
    plt.close(fig)
    atomic_write(path, lambda tmp: Image.fromarray(rgb).save(tmp, format="png"))
    if tb is not None:
        tb.add_image(tag, rgb, dataformats="HWC")
    return Path(path)


def code_heatmap(codes: np.ndarray, labels: np.ndarray, layer: str = CODE_LAYER) -> plt.Figure:
    """Code vectors of many images sorted by class, one row each: classes show as bands."""
    order = np.argsort(labels, kind="stable")
    fig, ax = plt.subplots(figsize=(10, 8))
    im = ax.imshow(codes[order], aspect="auto", cmap="magma", interpolation="nearest")
    classes = np.unique(labels)
    bounds = np.searchsorted(labels[order], classes)
    ax.set_yticks(bounds + np.diff(np.append(bounds, len(labels))) / 2, [str(d) for d in classes])
    for b in bounds[1:]:
        ax.axhline(b - 0.5, color="white", lw=0.6)
    ax.set_xlabel(f"code vector unit ({layer_label(layer)})")
    ax.set_ylabel("test images, sorted by true class")
    ax.set_title(f"{len(codes):,} code vectors sorted by class")
    fig.colorbar(im, ax=ax, label="activation")
    fig.tight_layout()
    return fig


def similarity_matrix(sim: np.ndarray, ratio: float) -> plt.Figure:
    """The classes × classes matrix of mean cosine similarity between code vectors of two classes."""
    fig, ax = plt.subplots(figsize=(7, 6))
    im = ax.imshow(sim, cmap="viridis", vmin=0, vmax=1)
    n = len(sim)
    for i in range(n):
        for j in range(n):
            ax.text(
                j,
                i,
                f"{sim[i, j]:.2f}",
                ha="center",
                va="center",
                fontsize=7,
                color="black" if sim[i, j] > 0.6 else "white",
            )
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    ax.set_xlabel("class")
    ax.set_ylabel("class")
    ax.set_title(f"mean cosine similarity of code vectors\nwithin / between classes = {ratio:.2f}")
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    return fig


def interpreter_bars(rows: list) -> plt.Figure:
    """Test accuracy of each interpreter row (ours) beside the study's figure, zoomed to 95-100%."""
    labels = [f"{r.interpreter}\n({r.features})" for r in rows]
    x = np.arange(len(rows))
    ours = [100 * r.test_acc for r in rows]
    study = [100 * r.study_acc if r.study_acc else np.nan for r in rows]
    fig, ax = plt.subplots(figsize=(max(7, 1.1 * len(rows)), 4.5))
    ax.bar(x - 0.2, ours, 0.4, label="mnist_probe")
    ax.bar(x + 0.2, study, 0.4, label="study (2019)", color="C7")
    for xi, v in zip(x, ours, strict=True):
        ax.text(xi - 0.2, v + 0.05, f"{v:.2f}", ha="center", fontsize=7, rotation=90)
    low = min(v for v in ours + study if not np.isnan(v))
    ax.set_ylim(max(0, min(95, low - 1)), 100)
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Interpreters on the CNN's code vectors (h=10) and on raw pixels")
    ax.legend(loc="lower left")
    fig.tight_layout()
    return fig


def probe_plot(rows: list) -> plt.Figure:
    """Linear-probe test accuracy (rows with h, layer, test_acc) against layer depth h."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    h = [r.h for r in rows]
    ax.plot(h, [100 * r.test_acc for r in rows], "o-")
    ax.set_xticks(h, [f"h={r.h} {r.layer}" for r in rows], fontsize=7, rotation=35, ha="right")
    ax.set_ylabel("linear probe test accuracy (%)")
    ax.set_title("Does linear separability grow with depth? (logistic regression per layer)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def metric_bars(rows: list, metric: str, title: str) -> plt.Figure:
    """One bar per model (rows with model and metric fields) for a dataset-scale shift metric."""
    fig, ax = plt.subplots(figsize=(7, 4))
    labels = [r.model for r in rows]
    values = [100 * getattr(r, metric) for r in rows]
    ax.bar(range(len(rows)), values, color=[f"C{i}" for i in range(len(rows))])
    for i, v in enumerate(values):
        ax.text(i, v + 1, f"{v:.1f}", ha="center", fontsize=8)
    ax.set_xticks(range(len(rows)), labels, fontsize=8, rotation=15)
    ax.set_ylim(0, 105)
    ax.set_ylabel(f"{metric} (%)")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def curves_plot(
    curves: dict[str, tuple[list, list]],
    xlabel: str,
    title: str,
    ylabel: str = "test accuracy (%)",
    scale: float = 100.0,
) -> plt.Figure:
    """Lines of (x, y) per label: e.g. CNN accuracy against test-time shift for each sweep job."""
    fig, ax = plt.subplots(figsize=(8, 4.8))
    for label, (x, y) in curves.items():
        ax.plot(x, scale * np.asarray(y), "o-", label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def reliability_diagram(
    before: dict, after: dict, temperature: float, ece: tuple[float, float]
) -> plt.Figure:
    """Accuracy against confidence per bin, before and after temperature scaling; the diagonal is
    perfect calibration. Most of MNIST sits in the last bin, so the bars show counts on a log axis."""
    fig, (ax, counts) = plt.subplots(
        2, 1, figsize=(6.5, 7), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    edges = np.asarray(before["edges"])
    mids, width = (edges[:-1] + edges[1:]) / 2, np.diff(edges)
    series = (
        (before, f"before (ECE {100 * ece[0]:.2f}%)", "C3", -0.25),
        (after, f"T = {temperature:.2f} (ECE {100 * ece[1]:.2f}%)", "C0", 0.25),
    )
    for bins, label, color, shift in series:
        ax.bar(mids + shift * width, bins["accuracy"], width * 0.5, label=label, color=color, alpha=0.8)
        counts.bar(mids + shift * width, bins["count"], width * 0.5, color=color, alpha=0.8)
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    ax.set_ylabel("accuracy in the bin")
    ax.set_title("Reliability of the CNN's probabilities (test set, 15 bins)")
    ax.legend(fontsize=8, loc="upper left")
    counts.set_yscale("log")
    counts.set_xlabel("confidence (top-1 probability)")
    counts.set_ylabel("images")
    fig.tight_layout()
    return fig


def spread_plot(headlines: list[dict[str, float]], study: dict[str, float], seeds: list) -> plt.Figure:
    """Every headline number, one dot per seed (fractions in %): the test accuracies beside the
    study's single figure (a red cross), and the shift metrics."""
    names = list(dict.fromkeys(k for h in headlines for k in h))
    panels = [
        ("test accuracy (%)", [n for n in names if n.endswith("_acc")]),
        ("shift metrics (%)", [n for n in names if "consistency" in n or "change" in n or "_dy" in n]),
    ]
    widths = [max(len(panel), 4) for _, panel in panels]  # a number's column as wide in both panels
    fig, axes = plt.subplots(
        1, 2, figsize=(max(12.0, 3 + 0.3 * sum(widths)), 4.8), gridspec_kw={"width_ratios": widths}
    )
    for ax, (ylabel, panel) in zip(axes, panels, strict=True):
        for i, name in enumerate(panel):
            values = [100 * h[name] for h in headlines if h.get(name) is not None]
            jitter = np.linspace(-0.15, 0.15, len(values)) if len(values) > 1 else [0.0]
            ax.scatter(
                i + np.asarray(jitter), values, s=18, color="C0", label="our seeds" if i == 0 else None
            )
            if name in study:
                first = "the study (one run)" not in ax.get_legend_handles_labels()[1]
                ax.scatter(
                    [i],
                    [100 * study[name]],
                    marker="x",
                    s=60,
                    color="C3",
                    label="the study (one run)" if first else None,
                )
        ax.set_xticks(
            range(len(panel)), [n.removesuffix("_acc") for n in panel], rotation=30, ha="right", fontsize=8
        )
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[1]:
            ax.legend(fontsize=8)
    fig.suptitle(f"Headline numbers over {len(headlines)} seeds ({', '.join(map(str, seeds))})")
    fig.tight_layout()
    return fig


def gap_plot(rows: list[GapRow]) -> plt.Figure:
    """Per epoch, the gap val_acc - train_acc (a line) and its four parts (stacked bars, in points)."""
    parts = GapRow.PARTS
    epochs = np.array([r.epoch for r in rows])
    fig, ax = plt.subplots(figsize=(7, 4))
    up, down = np.zeros(len(rows)), np.zeros(len(rows))
    for k, part in enumerate(parts):
        values = np.array([100 * getattr(r, part) for r in rows])
        base = np.where(values >= 0, up, down)
        ax.bar(epochs, values, bottom=base, width=0.6, color=f"C{k}", label=part)
        up, down = up + np.maximum(values, 0), down + np.minimum(values, 0)
    ax.plot(epochs, [100 * r.gap for r in rows], "k.-", label="gap: val_acc - train_acc")
    ax.axhline(0, color="gray", lw=0.6)
    ax.set_xticks(epochs)
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy points")
    ax.set_title("Why validation accuracy exceeds training accuracy")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def position_plot(rows: list) -> plt.Figure:
    """Per layer, in the network's order: how well linear probes read the shift (R² of (dx, dy), and
    accuracy over the shift classes) and the class."""
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(rows)), 4))
    k = np.arange(len(rows))
    ax.plot(k, [r.position_r2 for r in rows], "o-", label="position: R² of (dx, dy)")
    ax.plot(k, [r.position_acc for r in rows], "o--", color="C0", alpha=0.5, label="position: which shift")
    ax.plot(k, [r.class_acc for r in rows], "s-", color="C1", label="class: which digit")
    ax.axhline(rows[0].position_chance, color="C0", ls=":", lw=1, label="which shift: chance")
    ax.set_xticks(k, [r.layer for r in rows], rotation=45, ha="right", fontsize=8)
    ax.set_ylim(min(0.0, *(r.position_r2 for r in rows)) - 0.02, 1.02)  # R² < 0: worse than the mean
    ax.set_ylabel("R² / accuracy (held-out images)")
    ax.set_title("Where position is given up and class is built")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def position_curves(models: dict[str, list]) -> plt.Figure:
    """The position (R² of (dx, dy)) and class probe curves of several CNNs (name -> rows), side by
    side, on the layers of the first."""
    layers = [r.layer for r in next(iter(models.values()))]
    fig, axes = plt.subplots(1, 2, figsize=(max(9, 1.1 * len(layers)), 4), sharey=True)
    for ax, field, title in (
        (axes[0], "position_r2", "the shift (dx, dy), R²"),
        (axes[1], "class_acc", "which digit, accuracy"),
    ):
        for name, rows in models.items():
            at = {r.layer: getattr(r, field) for r in rows}
            ax.plot(range(len(layers)), [at.get(layer, np.nan) for layer in layers], "o-", label=name)
        ax.set_xticks(range(len(layers)), layers, rotation=45, ha="right", fontsize=8)
        ax.set_title(f"linear probe: {title}", fontsize=10)
    lowest = min(r.position_r2 for rows in models.values() for r in rows)
    axes[0].set_ylim(min(0.0, lowest) - 0.02, 1.02)  # shared with the class panel
    axes[0].set_ylabel("held-out images")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def cka_heatmap(matrix: np.ndarray, rows: list[str], cols: list[str], title: str) -> plt.Figure:
    """Linear CKA between every pair of layers (rows: one network, columns: the other)."""
    fig, ax = plt.subplots(figsize=(1 + 0.5 * len(cols), 1 + 0.45 * len(rows)))
    im = ax.imshow(matrix, vmin=0, vmax=1, cmap="magma")
    ax.set_xticks(range(len(cols)), cols, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(len(rows)), rows, fontsize=7)
    for i in range(len(rows)):
        for j in range(len(cols)):
            ax.text(
                j,
                i,
                f"{matrix[i, j]:.2f}",
                ha="center",
                va="center",
                fontsize=6,
                color="black" if matrix[i, j] > 0.5 else "white",
            )
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, label="linear CKA")
    fig.tight_layout()
    return fig
