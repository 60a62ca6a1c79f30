"""One page builder for report.md (+experiment=report) and docs/RESULTS.md (+experiment=reproduce):
the sections of one CNN's page (pages/sections.py), what only the study's reproduction has
(pages/results_page.py) where the results hold it, and the conclusions checked. Figures are linked
through `Figures`, the one place that decides whether a page links a stage's file in place or copies
it beside the page."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from mnist_probe import study
from mnist_probe.cache import atomic_write
from mnist_probe.names import LAYER_NAMES, file_name, layer_h
from mnist_probe.pages.page_results import Conclusion, PageResults
from mnist_probe.pages.results_page import augment_gap, augment_section, keras_file_section, loss_section
from mnist_probe.pages.sections import beyond_section, cnn_rows, every_digit_section, gap_section
from mnist_probe.stages.results import DatasetRow
from mnist_probe.tables import markdown_table


@dataclass(frozen=True)
class Figures:
    """How a page links a run's figures: in place, relative to the page (report.md beside the stages'
    folders), or, with `into`, copied (atomically) into that folder beside the page under a flat name
    (docs/figures/ for RESULTS.md). A page rendered again where the run is gone links the copies it
    made then."""

    run_dir: Path
    page_dir: Path
    into: str | None = None

    def link(self, src: str | Path, caption: str, name: str | None = None) -> str:
        """A markdown image of run_dir/src (src may be absolute), '' when no stage drew it."""
        path = self.run_dir / src
        if self.into is None:  # e.g. probes.png with interpreters.probes.enabled=false: no line
            return f"![{caption}]({os.path.relpath(path, self.page_dir)})" if path.is_file() else ""
        target = self.page_dir / self.into / (name or path.name)
        if path.is_file():
            atomic_write(target, lambda tmp: shutil.copyfile(path, tmp))
        return f"![{caption}]({self.into}/{target.name})" if target.is_file() else ""

    def feature_map(self, layer: str, index: int, item: str) -> str:
        """One layer's feature-map sheet of test image #index (the activations stage names it by class)."""
        sheets = self.run_dir / "activations" / "feature_maps"
        found = next(sheets.glob(f"{file_name(layer)}_{item}*_test{index}.png"), None)
        return self.link(found or sheets / "missing", layer, f"feature_maps_{file_name(layer)}.png")


def which(layers: list[str]) -> str:
    """Layers as a heading names them: by h for the study's CNN, else by name."""
    if all(name in LAYER_NAMES for name in layers):
        return "h = " + ", ".join(str(layer_h(name)) for name in layers)
    return ", ".join(layers)


def write_page(
    path: Path,
    head: list[str],
    results: PageResults,
    conclusions: list[Conclusion],
    figs: Figures,
    gap_recipe: str = "",
    tail: list[str] = (),
) -> Path:
    """The page at path, from the results alone: head, then the CNN, the study's three approaches, the
    reproduction's sweeps where results hold them, beyond, tail, and the conclusions."""
    train, act, shift, setting = results.train, results.activations, results.shift, results.setting
    probes = results.interpreters.probes or []
    first = act.indices[0]
    # the study's table beside ours only on its data and image, each cell under the shift it was taken at
    beside = setting.study and study.its_image(setting.shift_index, shift.digit)
    study_rows = [
        {"model": k, **dict(zip(shift.columns, v, strict=True))}
        for k, v in study.table_cells(shift.pairs).items()
    ]
    md = [
        *head,
        "## The CNN",
        "",
        markdown_table(cnn_rows(setting, train)),
        figs.link("train/calibration.png", "calibration"),
        *gap_section(train.gap, figs.link("train/gap.png", "gap"), gap_recipe),
        *augment_gap(results.augment, figs),
        *loss_section(results.losses, figs, train.calibration.bins),
        *keras_file_section(results.keras_file),
        f"## 1. Activations: feature maps ({which(act.layers)}) and code vectors ({which([act.code_layer])})",
        "",
        f"Test image #{first}; every map of each layer.",
        "",
        *[figs.feature_map(layer, first, setting.item) for layer in act.layers],
        "",
        f"Code vectors ({act.code_dims}-d, {which([act.code_layer])}) of one test image per "
        f"{setting.item}, and of {act.n_codes:,} test images sorted by class; the class-by-class cosine "
        "similarity:",
        "",
        figs.link("activations/code_vectors.png", "code vectors"),
        figs.link("activations/code_heatmap.png", "code heatmap"),
        figs.link("activations/class_similarity.png", "class similarity"),
        "",
        "## 2. Interpreters on the code vectors",
        "",
        markdown_table(
            results.interpreters.table(),
            ["interpreter", "features", "test_acc", "study_acc", "diff", "fit_seconds"],
        ),
        figs.link("interpreters/interpreters.png", "interpreters"),
        "",
        "Beyond the study, a linear probe (logistic regression) on every layer: how linearly separable "
        "the classes are at each depth."
        if probes
        else "",
        "",
        markdown_table(probes, ["h", "layer", "dims", "test_acc"]) if probes else "",
        figs.link("interpreters/probes.png", "probes"),
        "",
        f"## 3. Translation: test #{shift.index} (a {shift.target}) shifted up",
        "",
        "P(true class) per model and shift; in brackets the class that took over, when it got at least "
        f"{setting.min_other:.0%}. Ours:",
        "",
        markdown_table(shift.table),
        *(["The study's:", "", markdown_table(study_rows)] if beside else []),
        figs.link("shift/shift_strip.png", "shifted inputs"),
        figs.link("shift/shift_probability.png", "P(true) against shift"),
        figs.link("shift/shift_deformation.png", "code-vector deformation"),
        "",
        *dataset_scale(results, figs),
        *every_digit_section(shift, figs),
        *(augment_section(results.augment, figs, results.setting.shape[2]) if results.augment else []),
        *beyond_section(results.beyond, figs, setting.item),
        *tail,
        "## The study's conclusions, checked",
        "",
    ]
    for k, c in enumerate(conclusions, 1):
        md += [f"**{k}. {c.claim}** — *{c.verdict}.* {c.text}", ""]
    text = "\n".join(md).replace("\n\n\n", "\n\n")
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def dataset_scale(results: PageResults, figs: Figures) -> list[str]:
    """The shift metrics over many test images (none with shift.dataset.enabled=false)."""
    shift = results.shift
    if not shift.dataset:
        return []
    return [
        f"### At dataset scale: {shift.samples} test images, every shift in ±{results.setting.radius} px",
        "",
        "consistency: the top-1 class agrees at two random shifts; change_1px: P(top-1 changes) under a "
        "1-pixel shift.",
        "",
        markdown_table(shift.dataset, list(DatasetRow.COLUMNS)),
        figs.link("shift/shift_heatmap.png", "accuracy heatmaps"),
        figs.link("shift/shift_accuracy_dy.png", "accuracy against dy"),
        figs.link("shift/shift_change_1px.png", "1-px change rate"),
        "",
    ]
