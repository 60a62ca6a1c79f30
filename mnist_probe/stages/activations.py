"""The activations stage (+experiment=activations): feature-map sheets, code vectors and class
similarity of the trained CNN, as PNGs and in TensorBoard (images and the Projector)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig
from tqdm import tqdm

from mnist_probe.cache import atomic_write
from mnist_probe.data import first_of_each_class, split_tensors, to_float
from mnist_probe.errors import UserError
from mnist_probe.hooks import class_similarity, record_with_output
from mnist_probe.layer_names import resolve_layers
from mnist_probe.model_layers import feature_layers
from mnist_probe.names import file_name
from mnist_probe.plots import code_heatmap, save, similarity_matrix
from mnist_probe.schema import typed
from mnist_probe.stages.adapters import trained_cnn, writer
from mnist_probe.stages.results import ActivationsResult
from mnist_probe.viz import code_vector_panel, feature_map_sheet

log = logging.getLogger(__name__)


def run(cfg: DictConfig, out_dir: Path) -> ActivationsResult:
    """Feature-map sheets, code-vector figures and class similarity; copies in TensorBoard."""
    acfg = cfg.activations
    cnn = trained_cnn(cfg, out_dir)
    model = cnn.model
    images_u8, labels = split_tensors(typed(cfg).data, "test")
    indices = list(acfg.indices) if acfg.indices else first_of_each_class(labels, typed(cfg).data.num_classes)
    bad = [i for i in indices if not 0 <= i < len(labels)]
    if bad:
        raise UserError(f"activations.indices {bad} outside 0..{len(labels) - 1} (the test set)")
    layers = (
        resolve_layers(model, list(acfg.layers))
        if acfg.layers
        else feature_layers(model, typed(cfg).max_layers)
    )
    code = cnn.code_layer
    images = to_float(images_u8[indices])
    acts, logits = record_with_output(model, images, [*layers, code])
    tb = writer(out_dir, "activations")
    maps_dir = out_dir / "feature_maps"
    written = []
    item, classes = cfg.data.item, typed(cfg).data.classes
    for layer in tqdm(layers, desc="feature-map sheets by layer", unit="layer", leave=False):
        for row, idx in enumerate(indices):
            k = int(labels[idx])  # named by class index: a class name may hold a '/'
            fig = feature_map_sheet(images[row], acts[layer][row], layer, f"test #{idx}, {item} {classes[k]}")
            name = f"{file_name(layer)}_{item}{k}_test{idx}"
            tag = f"feature_maps/{file_name(layer)}/{item}_{k}_test{idx}"
            written.append(save(fig, maps_dir / f"{name}.png", tb, tag))
    probs = torch.softmax(logits, 1).numpy()
    fig = code_vector_panel(images, acts[code].flatten(1).numpy(), probs, labels[indices].tolist(), code)
    save(fig, out_dir / "code_vectors.png", tb, "code_vectors/examples")

    # Many images: is the code vector consistent within a class and different between classes?
    n = min(acfg.n_codes, len(labels))
    many, many_logits = record_with_output(model, images_u8[:n], code)
    codes, y = many[code].flatten(1).numpy(), labels[:n].numpy()
    sim, ratio = class_similarity(codes, y)
    for name, fig in (
        ("code_heatmap", code_heatmap(codes, y, code)),
        ("class_similarity", similarity_matrix(sim, ratio)),
    ):
        save(fig, out_dir / f"{name}.png", tb, f"code_vectors/{name}")
    atomic_write(out_dir / "class_similarity.csv", lambda tmp: np.savetxt(tmp, sim, "%.4f", ","))
    preds = many_logits.argmax(1).tolist()
    tb.add_embedding(
        codes,
        metadata=[[str(a), str(b)] for a, b in zip(y.tolist(), preds, strict=True)],
        metadata_header=["label", "predicted"],
        label_img=to_float(images_u8[:n]),
        tag="code_vectors",
    )
    tb.close()
    off = sim[~np.eye(len(sim), dtype=bool)]
    results = ActivationsResult(
        cnn_key=cnn.key,
        cnn_test_acc=cnn.test_acc,
        indices=indices,
        layers=layers,
        feature_map_pngs=len(written),
        n_codes=n,
        within_class_cosine=float(np.diag(sim).mean()),
        between_class_cosine=float(off.mean()),
        within_between_ratio=ratio,
        code_layer=code,
        code_dims=codes.shape[1],
    )
    log.info(
        "code vectors: within-class cosine %.3f, between %.3f, ratio %.2f; figures in %s",
        results.within_class_cosine,
        results.between_class_cosine,
        results.within_between_ratio,
        out_dir,
    )
    return results
