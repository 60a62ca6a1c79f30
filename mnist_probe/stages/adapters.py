"""From config to library: the composed config as the library's typed specs (schema.typed), the CNN
every stage opens up, the interpreters a stage names, and what each stage writes besides its files
(results.json of chained stages, TensorBoard writers, a sweep job's HParams)."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from datetime import date
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.utils.tensorboard import SummaryWriter

from mnist_probe.cache import write_json
from mnist_probe.config import job_choice, job_overrides
from mnist_probe.data import split_tensors
from mnist_probe.errors import UserError
from mnist_probe.inputs import how_read, unsaid_normalisation
from mnist_probe.interpretation import InterpreterSpec
from mnist_probe.layer_names import resolve_layers
from mnist_probe.machine import describe
from mnist_probe.model import open_model
from mnist_probe.pages.page_results import Setting
from mnist_probe.schema import Config, typed
from mnist_probe.specs import is_onnx
from mnist_probe.stages.results import to_json
from mnist_probe.tables import duration
from mnist_probe.training import OpenedModel, fit_or_load, from_checkpoint

log = logging.getLogger(__name__)


def named_layers(c: Config) -> dict[str, list]:
    """The layers the config names, by key (those left to the model's choice left out)."""
    named = {
        "code_layer": [c.code_layer] if c.code_layer else None,
        "activations.layers": c.activations.layers,
        "shift.layers": c.shift.layers,
        "beyond.layers": c.beyond.layers,
    }
    return {key: list(layers) for key, layers in named.items() if layers}


def check_layers(c: Config, model) -> None:
    """Every layer the config names is one of the model's (a module that runs several times named with
    its call), or a one-line UserError naming the key: before anything is trained or computed."""
    for key, layers in named_layers(c).items():
        try:
            resolve_layers(model, layers)
        except UserError as err:
            raise UserError(f"{key}: {err}") from None


def opened_model(c: Config) -> tuple[nn.Module, str]:
    """The model the config opens, built or loaded but not trained (what its layer names refer to),
    and what to call it: an ONNX file, a class with checkpoint='s weights, or a fresh class."""
    name = f"ONNX {c.checkpoint}" if c.checkpoint and is_onnx(c.checkpoint) else c.model._target_
    return open_model(c.model, c.checkpoint, c.data.shape, c.data.num_classes), name


def trained_cnn(cfg: DictConfig, out_dir: Path | None = None) -> OpenedModel:
    """The CNN every stage opens up: the user's checkpoint, or the recipe's CNN from the cache (trained
    now if missing, its curves into out_dir). The layers the config names are checked first."""
    c: Config = typed(cfg)
    if c.data.download:  # the files' digests key every cache entry: they must be here first
        split_tensors(c.data, "test")
    if named_layers(c):
        check_layers(c, opened_model(c)[0])
    if c.checkpoint:
        cnn, how = from_checkpoint(c.checkpoint, c.data, c.paths.cache, c.model), "your checkpoint"
        if settings := unsaid_normalisation(cnn.model):
            log.warning(
                "the model's timm pretrained_cfg says its weights read normalised images, and this "
                "run feeds it pixels in [0, 1]: if they were trained on normalised images, set %s",
                settings,
            )
    else:
        cnn = fit_or_load(c.data, c.train, c.seed, c.paths.cache, out_dir, c.model, c.trainer)
        how = "from the cache" if cnn.meta["cached"] else f"trained in {cnn.meta['train_seconds']:.0f} s"
    if c.code_layer:
        cnn = dataclasses.replace(cnn, code_layer=c.code_layer)
    log.info(
        "CNN test accuracy %.2f%% on %d test images (%s; %s); outputs read as %s; code vectors from %s",
        100 * cnn.test_acc,
        cnn.meta["test_images"],
        how,
        cnn.meta["checkpoint"],
        how_read(cnn.model),
        cnn.code_layer,
    )
    return cnn


def selected(cfg: DictConfig, models: list | None) -> list[str]:
    """The interpreter chosen on the command line (interpreter=SPEC), else the stage's list."""
    return [cfg.interpreter] if cfg.get("interpreter") else [str(m) for m in models or []]


def interpreter_spec(cfg: DictConfig, spec: str) -> InterpreterSpec:
    """A spec 'NAME' (on the CNN's code vectors) or 'NAME@pixels' as the library's InterpreterSpec:
    the catalog's entry, with its `pixels:` settings merged in for raw pixels."""
    typed(cfg).interpreters.check("interpreter", spec)  # the schema's refusal: one message for a bad name
    name, _, features = str(spec).partition("@")
    features = features or "codes"
    entry = cfg.interpreters.catalog[name]
    if features == "pixels" and entry.get("pixels"):
        entry = OmegaConf.merge(entry, entry.pixels)
    return InterpreterSpec(
        name,
        features,
        OmegaConf.to_container(entry.estimator, resolve=True),
        entry.get("train_samples"),
        entry.get("budget"),
    )


def run_stages(
    cfg: DictConfig, out_dir: Path, stages: dict, seconds: dict[str, float] | None = None
) -> dict[str, Any]:
    """Run stages (name -> run(cfg, out_dir)) in order, each into out_dir/name with its results.json;
    return their results by name, and put the seconds each took into `seconds` (where given)."""
    results = {}
    for name, run_stage in stages.items():
        log.info("%s stage (%s)", name, out_dir / name)
        start = time.perf_counter()
        results[name] = run_stage(cfg, out_dir / name)
        write_json(out_dir / name / "results.json", to_json(results[name]))
        took = round(time.perf_counter() - start, 1)
        log.info("%s stage done in %s", name, duration(took))
        if seconds is not None:
            seconds[name] = took
    return results


@contextlib.contextmanager
def step(stage: str, what: str):
    """One step of a long stage, said when it starts and with what it cost when it ends."""
    log.info("%s: %s ...", stage, what)
    start = time.perf_counter()
    yield
    log.info("%s: %s took %s", stage, what, duration(time.perf_counter() - start))


def log_hparams(out_dir: Path, metrics: dict[str, float | None]) -> None:
    """In a multirun sweep: this job's overrides and headline metrics on TensorBoard's HParams
    dashboard (tb/hparams), so that `make tensorboard` compares a sweep's jobs in one table."""
    try:
        hydra = HydraConfig.get()
    except ValueError:  # outside a Hydra app (tests, notebooks)
        return
    if hydra.mode != RunMode.MULTIRUN:
        return
    params = {}
    for override in hydra.overrides.task:
        key, _, value = override.lstrip("+~").partition("=")
        params[key] = value
    tb = SummaryWriter(str(out_dir / "tb" / "hparams"))
    values = {f"hparam/{k}": float(v) for k, v in metrics.items() if v is not None}
    tb.add_hparams(params, values, run_name=".")
    tb.close()


def writer(out_dir: Path, name: str) -> SummaryWriter:
    """A TensorBoard writer for this stage's events, under out_dir/tb/name."""
    return SummaryWriter(str(out_dir / "tb" / name))


def recipe_line(cfg: DictConfig) -> str:
    """The recipe in one line: epochs, batch, optimiser, schedule, augmentation."""
    t, a = cfg.train, cfg.train.augment
    scheduler = (OmegaConf.select(cfg, "train.scheduler.factory._target_") or "none").split(".")[-1]
    epochs = f"{t.epochs} epochs" + (f" of {t.epoch_images:,} images" if t.epoch_images else "")
    loss = f", loss {t.loss}" if t.loss != "cross_entropy" else ""
    augment = (
        f"augmentation rotation {a.rotation}°, zoom {a.zoom}, shift {a.shift}"
        if a.enabled and (a.rotation or a.zoom or a.shift)
        else "no augmentation"
    )
    optimizer = t.optimizer._target_.split(".")[-1]
    return f"{epochs}, batch {t.batch_size}, {optimizer}, {scheduler}{loss}, {augment}"


def page_setting(cfg: DictConfig) -> Setting:
    """How the run was set up, as its page says it (kept in page.json beside the results)."""
    c = typed(cfg)
    augment = c.train.augment
    shift = c.data.shape[2] * float(augment.shift) if augment.enabled and augment.shift else 0.0
    model = f"checkpoint `{c.checkpoint}`" if c.checkpoint else f"`{c.model._target_}`"
    return Setting(
        data=c.data.name,
        item=c.data.item,
        study=c.beside_study,
        references=dict(c.data.references),
        shape=list(c.data.shape),
        recipe=recipe_line(cfg),
        trained_shift_px=shift,
        shift_index=c.shift.index,
        min_other=c.shift.min_other,
        radius=c.shift.dataset.radius,
        model=model,
        command=f"python -m mnist_probe.run {job_overrides() or '+experiment=' + c.stage}",
        date=date.today().isoformat(),
        machine=describe(),
        recipe_name=job_choice("train", ""),
    )
