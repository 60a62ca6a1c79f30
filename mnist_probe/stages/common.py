"""From config to library: the config's nodes as the library's plain arguments, and the cached
artifacts every stage shares (the trained CNN, features, fitted interpreters)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from sklearn.pipeline import Pipeline
from torch.utils.tensorboard import SummaryWriter

from mnist_probe.cache import atomic_write, config_key, get_or_compute, write_json, write_npz
from mnist_probe.data import DataSpec, split_tensors
from mnist_probe.errors import UserError
from mnist_probe.interpreters import (
    CodeVectors,
    Pixels,
    fit_timed,
    make_interpreter,
    subsample,
)
from mnist_probe.names import FEATURES
from mnist_probe.train import Recipe, TrainedCNN, fit_or_load, from_checkpoint

log = logging.getLogger(__name__)


def plain(node) -> dict:
    """A config node as a plain dict, interpolations resolved."""
    return OmegaConf.to_container(node, resolve=True)


def data_spec(cfg: DictConfig) -> DataSpec:
    """cfg.data as the library's DataSpec."""
    return DataSpec(**plain(cfg.data))


def recipe(cfg: DictConfig) -> Recipe:
    """cfg.train as the library's Recipe."""
    return Recipe(**plain(cfg.train))


def trained_cnn(cfg: DictConfig, out_dir: Path | None = None) -> TrainedCNN:
    """The CNN every stage opens up: the user's checkpoint, or the recipe's CNN from the cache (trained
    now if missing, its curves into out_dir)."""
    if cfg.get("checkpoint"):
        return from_checkpoint(cfg.checkpoint, data_spec(cfg), cfg.paths.cache, plain(cfg.model))
    return fit_or_load(data_spec(cfg), recipe(cfg), cfg.seed, cfg.paths.cache, out_dir, plain(cfg.model))


def run_stages(cfg: DictConfig, out_dir: Path, stages: dict) -> dict:
    """Run stages (name -> run(cfg, out_dir)) in order, each into out_dir/name with its results.json."""
    results = {}
    for name, run_stage in stages.items():
        log.info("%s stage (%s)", name, out_dir / name)
        results[name] = run_stage(cfg, out_dir / name)
        write_json(out_dir / name / "results.json", results[name])
    return results


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


# ----------------------------------------------------------------------------- interpreters
def interpreter_names(cfg: DictConfig) -> list[str]:
    """Names in the interpreter catalog (cfg.interpreters.catalog)."""
    return sorted(cfg.interpreters.catalog)


def selected(cfg: DictConfig, models: list | None) -> list[str]:
    """The interpreter chosen on the command line (interpreter=SPEC), else the stage's list."""
    return [cfg.interpreter] if cfg.get("interpreter") else [str(m) for m in models or []]


def interpreter_settings(cfg: DictConfig, spec: str) -> dict:
    """A spec 'NAME' (on the CNN's code vectors) or 'NAME@pixels' as {name, features, estimator,
    train_samples}: the catalog's entry, with its `pixels:` settings merged in for raw pixels."""
    name, _, features = str(spec).partition("@")
    features = features or "codes"
    catalog = cfg.interpreters.catalog
    if name not in catalog:
        raise UserError(f"unknown interpreter {name!r}; valid: {', '.join(interpreter_names(cfg))}")
    if features not in FEATURES:
        raise UserError(f"interpreter {spec!r}: features must be one of {', '.join(FEATURES)} "
                        f"(NAME or NAME@pixels), got {features!r}")
    entry = catalog[name]
    if features == "pixels" and entry.get("pixels"):
        entry = OmegaConf.merge(entry, entry.pixels)
    return {"name": name, "features": features, "estimator": plain(entry.estimator),
            "train_samples": entry.get("train_samples")}  # fmt: skip


def label(settings: dict) -> str:
    """How tables name an interpreter: CNN+svm on code vectors, 'svm (pixels)' on pixels."""
    name = settings["name"]
    return f"CNN+{name}" if settings["features"] == "codes" else f"{name} (pixels)"


def features(
    cfg: DictConfig, kind: str, split: str, cnn: TrainedCNN | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(X, y) of a split, as a pipeline's first step makes them: the CNN's code vectors (computed
    once per CNN and split, cached) or the raw pixels."""
    data = data_spec(cfg)
    if kind == "pixels":
        images, labels = split_tensors(data, split)
        return Pixels().transform(images), labels.numpy()
    key = config_key(cnn.key, data.content(), split)

    def compute(staging: Path) -> dict:
        images, labels = split_tensors(data, split)
        log.info("computing %s code vectors for %d images", split, len(images))
        codes = CodeVectors(cnn.model, progress=True).transform(images)
        write_npz(staging / "codes.npz", codes=codes, labels=labels.numpy())
        return {"cnn": cnn.key, "split": split, "images": len(labels)}

    def load(entry: Path, meta: dict) -> tuple[np.ndarray, np.ndarray]:
        with np.load(entry / "codes.npz") as z:
            return z["codes"], z["labels"]

    return get_or_compute(Path(cfg.paths.cache) / f"codes-{key}", compute, load)[0]


# scikit-learn internals that skops does not trust by default but our interpreters hold (the MLP's
# optimiser, the calibrated SVM's parts, trees). Any other type in an estimator file is refused.
TRUSTED = [
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.tree._tree.Tree",
    "mnist_probe.interpreters.FastSVC",
]


# skops and xgboost are imported where an estimator is saved or loaded: skops's import alone takes
# ~1.1 s (it lists every scikit-learn type), paid by every process that imports this module.
def _save(estimator, staging: Path) -> None:
    # Neither format runs code on load: xgboost's own JSON, and skops for scikit-learn estimators
    # (it rebuilds only allowed types, where a pickle could run anything).
    import skops.io as sio
    from xgboost import XGBModel

    if isinstance(estimator, XGBModel):
        atomic_write(staging / "model.json", lambda tmp: estimator.save_model(str(tmp)))
    else:
        atomic_write(staging / "estimator.skops", lambda tmp: sio.dump(estimator, tmp))


def _load(settings: dict):
    def load(entry: Path, meta: dict):
        import skops.io as sio

        if (entry / "model.json").is_file():
            estimator = instantiate(settings["estimator"])
            estimator.load_model(str(entry / "model.json"))
            return estimator
        return sio.load(entry / "estimator.skops", trusted=TRUSTED)  # other types: refused

    return load


def fitted_interpreter(cfg: DictConfig, settings: dict, cnn: TrainedCNN) -> tuple[Pipeline, dict]:
    """The interpreter pipeline of settings, its estimator fitted on the training split (from the
    cache, or fitted now once); keyed by its features' source, the data split and the estimator."""
    data = data_spec(cfg)
    source = cnn.key if settings["features"] == "codes" else "pixels"
    key = config_key(source, data.content(), settings["features"], settings["estimator"],
                     settings["train_samples"])  # fmt: skip

    def compute(staging: Path) -> dict:
        x, y = subsample(*features(cfg, settings["features"], "train", cnn), settings["train_samples"])
        estimator = instantiate(settings["estimator"])
        log.info("fitting %s on %d %s", settings["name"], len(y), settings["features"])
        seconds = fit_timed(estimator, x, y)
        _save(estimator, staging)
        return {"fit_seconds": seconds, "train_samples": len(y)}

    entry = Path(cfg.paths.cache) / f"interp-{settings['name']}-{key}"
    estimator, meta, cached = get_or_compute(entry, compute, _load(settings))
    pipe = make_interpreter(estimator, settings["features"], cnn.model)
    return pipe, {**meta, "key": key, "cached": cached}

