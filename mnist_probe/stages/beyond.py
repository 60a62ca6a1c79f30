"""The beyond stage (+experiment=beyond, part of +experiment=report): where the network looks and
whether that moves with the digit, what each filter wants, how much position each layer keeps, and
what translations (and a second training) change in each layer's representation."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import torch
from omegaconf import DictConfig
from tqdm import tqdm

from mnist_probe.attribution import attribute, shift_consistency
from mnist_probe.cka import cka_between, shift_cka
from mnist_probe.data import first_of_each_class, split_tensors, to_float
from mnist_probe.filters import what_filters_want
from mnist_probe.intervals import bootstrap_mean
from mnist_probe.layer_names import resolve_layers
from mnist_probe.model_layers import conv_layers, spread
from mnist_probe.names import file_name
from mnist_probe.outputs import top1_accuracy
from mnist_probe.pages.trust import (
    data_randomisation_sentence,
    faithful_sentence,
    sanity_sentence,
    standing_sentence,
)
from mnist_probe.pages.verdicts import attribution_sentence, position_sentence, shift_cka_sentence
from mnist_probe.plots import cka_heatmap, curves_plot, position_plot, save
from mnist_probe.position import position_probes
from mnist_probe.sanity import (
    EDGE_CONTROL,
    data_randomisation,
    edge_map,
    faithfulness,
    memorising,
    model_randomisation,
    randomisation_sequence,
)
from mnist_probe.schema import BeyondConfig, typed
from mnist_probe.scoring import logits_of
from mnist_probe.stages.adapters import step, trained_cnn, writer
from mnist_probe.stages.results import AttributionCurve, BeyondResult, PositionRow
from mnist_probe.tables import write_table
from mnist_probe.training import OpenedModel, fit_or_load
from mnist_probe.translation import pick_image, shifted_stack
from mnist_probe.viz import attribution_sheet, attribution_strip, filter_sheet, randomisation_sheet

log = logging.getLogger(__name__)


def probed_layers(cnn: OpenedModel, bcfg: BeyondConfig, most: int | None) -> list[str]:
    """The layers the probes and CKA read: the configured ones, else the conv layers (at most `most`,
    spread over the depth) and the code layer."""
    if bcfg.layers:
        return resolve_layers(cnn.model, list(bcfg.layers))
    return list(dict.fromkeys([*spread(conv_layers(cnn.model), most), cnn.code_layer]))


def position_rows(
    cnn: OpenedModel,
    test_images: torch.Tensor,
    test_labels: torch.Tensor,
    bcfg: BeyondConfig,
    seed: int,
    most: int | None,
) -> list[PositionRow]:
    """The position and class probes of the probed layers, on the first bcfg.position_images test
    images (the beyond stage's, and each CNN's of the reproduce stage's sweep)."""
    n, layers = bcfg.position_images, probed_layers(cnn, bcfg, most)
    return position_probes(cnn.model, test_images[:n], test_labels[:n], bcfg.radius, layers, seed)


def run(cfg: DictConfig, out_dir: Path) -> BeyondResult:
    c = typed(cfg)
    b = c.beyond
    cnn = trained_cnn(cfg, out_dir)
    model = cnn.model
    test_images, test_labels = split_tensors(c.data, "test")
    images, labels = test_images[: b.images], test_labels[: b.images]
    tb = writer(out_dir, "beyond")
    layers = probed_layers(cnn, b, c.max_layers)
    pairs = [(0, dy) for dy in b.dy]

    # 1. where it looks: a digit × method sheet, the attribution strip along the shifts, consistency
    with step("beyond", "attributions (each class, along the shifts)"):
        first = first_of_each_class(labels, c.data.num_classes)
        attrs = {m: attribute(model, images[first], labels[first], m) for m in b.methods}
        figures = {"attributions": attribution_sheet(to_float(images[first]), attrs, labels[first].tolist())}
        idx = pick_image(labels, c.shift.index, c.shift_target())
        strip = shifted_stack(to_float(images[idx : idx + 1]), pairs)
        figures["attribution_strip"] = attribution_strip(
            strip,
            {m: attribute(model, strip, [int(labels[idx])] * len(pairs), m) for m in b.methods},
            b.dy,
            c.data.item,
        )
        sample = slice(0, b.attribution_samples)
        x, y = images[sample], labels[sample]
        curves = []
        for m in b.methods:
            per_image = shift_consistency(model, x, y, pairs, m, per_image=True)
            curves.append(
                AttributionCurve(
                    m,
                    list(b.dy),
                    [float(r.mean()) for r in per_image],
                    [list(bootstrap_mean(r, seed=c.seed)) for r in per_image],
                )
            )
        figures["attribution_consistency"] = curves_plot(
            {a.method: (a.dys, a.consistency) for a in curves},
            "dy (px)",
            f"Does the attribution move with the {c.data.item}?",
            f"corr(attribution of the shifted {c.data.item}, shifted attribution)",
            scale=1.0,
        )

    # 1b. do the attributions depend on the model at all? (the model-randomisation test)
    with step("beyond", "model randomisation"):
        maps = {m: attribute(model, x, y, m) for m in b.methods} | {
            EDGE_CONTROL: edge_map(model, to_float(x), y)
        }
        sanity = model_randomisation(
            model,
            x,
            y,
            list(b.methods),
            "cascading",
            c.seed,
            trained=maps,
            most=c.max_layers,
            draws=b.randomisation_draws,
        )
        write_table(sanity, out_dir / "sanity")
        figures["sanity"] = curves_plot(
            {
                m: ([r.step for r in sanity if r.method == m], [r.spearman for r in sanity if r.method == m])
                for m in dict.fromkeys(r.method for r in sanity)
            },
            "layers randomised (cascading, from the output down)",
            "Do the attributions depend on the model?",
            "Spearman(|trained map|, |randomised map|)",
            scale=1.0,
        )
        columns, sequence = randomisation_sequence(
            model, images[idx], int(labels[idx]), list(b.methods), c.seed, most=c.max_layers
        )
        figures["sanity_sequence"] = randomisation_sheet(
            to_float(images[idx : idx + 1])[0], columns, sequence
        )

    shuffled, memorised_acc = [], None
    if b.shuffled_images and not c.checkpoint:  # the data-randomisation test: trains the same network
        with step("beyond", "data randomisation"):
            data, recipe = memorising(c.data, c.train, b.shuffled_images, b.shuffled_epochs)
            memorised = fit_or_load(data, recipe, c.seed, c.paths.cache, None, c.model, c.trainer).model
            seen, shuffled_labels = split_tensors(data, "train")
            memorised_acc = top1_accuracy(logits_of(memorised, to_float(seen)), shuffled_labels)
            shuffled = data_randomisation(model, memorised, x, y, list(b.methods), trained=maps)
            write_table(shuffled, out_dir / "sanity_data")

    with step("beyond", "faithfulness"):
        faithful = faithfulness(model, x, y, maps, seed=c.seed)
        write_table(
            [{k: v for k, v in dataclasses.asdict(r).items() if k != "curve"} for r in faithful],
            out_dir / "faithfulness",
        )

    # 2. what each filter wants: every conv layer, or those of beyond.layers where it names some
    with step("beyond", "what each filter wants"):
        convs = (
            [name for name in layers if name in conv_layers(model)]
            if b.layers
            else spread(conv_layers(model), c.max_layers)
        )
        for layer in tqdm(convs, desc="filters by layer", unit="layer", leave=False):
            patches, wanted = what_filters_want(
                model, layer, images, b.top_k, b.maximise_steps, c.seed, b.max_filters
            )
            figures[f"filters_{file_name(layer)}"] = filter_sheet(patches, wanted, layer)

    # 3. how much position each layer keeps
    with step("beyond", "position probes"):
        positions = position_rows(cnn, test_images, test_labels, b, c.seed, c.max_layers)
        write_table(positions, out_dir / "positions")
        figures["positions"] = position_plot(positions)

    # 4. what a translation, and another training, change: CKA
    with step("beyond", "CKA under shifts"):
        names, curve, curve_ci = shift_cka(model, images, pairs, layers, seed=c.seed)
        figures["shift_cka"] = curves_plot(
            {n: (list(b.dy), curve[:, k].tolist()) for k, n in enumerate(names)},
            "dy (px)",
            "What a translation changes, layer by layer",
            "CKA(unshifted, shifted)",
            scale=1.0,
        )
        other, between = None, None
        if b.cka_seed is not None:
            twin = fit_or_load(c.data, c.train, b.cka_seed, c.paths.cache, None, c.model, c.trainer)
            twin = dataclasses.replace(twin, code_layer=cnn.code_layer)
            rows, cols, matrix, _ = cka_between(
                model, twin.model, images, layers, probed_layers(twin, b, c.max_layers)
            )
            title = f"CKA: seed {c.seed} (rows) vs seed {b.cka_seed}"
            figures["cka_seeds"] = cka_heatmap(matrix, rows, cols, title)
            other, between = twin.key, matrix.tolist()

    for name, fig in figures.items():
        save(fig, out_dir / f"{name}.png", tb, f"beyond/{name}")
    result = BeyondResult(
        cnn.key,
        cnn.code_layer,
        curves,
        positions,
        convs,
        names,
        curve.tolist(),
        list(b.dy),
        other,
        between,
        sanity,
        faithful,
        shuffled,
        b.shuffled_images,
        memorised_acc,
        None if curve_ci is None else curve_ci.tolist(),
    )
    for sentence in (
        attribution_sentence(curves, c.data.item),
        sanity_sentence(sanity),
        data_randomisation_sentence(shuffled, memorised_acc, b.shuffled_images),
        faithful_sentence(faithful),
        position_sentence(positions, cnn.code_layer),
        shift_cka_sentence(result),
        standing_sentence(result),
    ):
        tb.add_text("beyond/verdicts", sentence)
        log.info("%s", sentence)
    tb.close()
    write_table(
        [
            {"dy": dy, **{n: round(float(v), 4) for n, v in zip(names, row, strict=True)}}
            for dy, row in zip(b.dy, curve, strict=True)
        ],
        out_dir / "shift_cka",
    )
    return result
