"""The layers stage (+experiment=layers): what the tool finds in a model, before any training: its
layer table, the layers drawn by default, and where its code vector is taken."""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from mnist_probe.inputs import how_read
from mnist_probe.layer_names import resolve_layers
from mnist_probe.model_layers import code_layer_or_none, feature_layers, layer_table, shift_layers
from mnist_probe.schema import typed
from mnist_probe.stages.adapters import check_layers, opened_model
from mnist_probe.stages.results import LayersResult
from mnist_probe.tables import write_table

log = logging.getLogger(__name__)


def run(cfg: DictConfig, out_dir: Path) -> LayersResult:
    """The layer table of the model (checkpoint= if given, else a fresh model._target_) as layers.md
    and .csv, and in the log, with the layer it takes code vectors from, or why it finds none."""
    c = typed(cfg)
    model, name = opened_model(c)
    check_layers(c, model)
    rows = layer_table(model)
    code = resolve_layers(model, c.code_layer)[0] if c.code_layer else code_layer_or_none(model)
    result = LayersResult(
        name,
        sum(p.numel() for p in model.parameters()),
        code,
        feature_layers(model, c.max_layers),
        shift_layers(model, c.max_layers),
        rows,
    )
    md = write_table(rows, out_dir / "layers")
    where = (
        f"code vectors from {code}"
        if code
        else "no linear layer to take code vectors before: set code_layer= to one of the layers above"
    )
    log.info(
        "%s: %s parameters, outputs %s\n%s\nfeature maps of %s; shift deformation of %s; %s "
        "(set activations.layers, shift.layers, code_layer to change them)",
        name,
        f"{result.parameters:,}",
        how_read(model),
        md,
        ", ".join(result.feature_layers),
        ", ".join(result.shift_layers),
        where,
    )
    return result
