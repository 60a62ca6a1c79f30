"""Interpreters: scikit-learn / xgboost estimators fitted on code vectors (h=10) or raw pixels."""

from __future__ import annotations

import json
import logging
import pickle
import time
from pathlib import Path

import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from mnist_probe import CONF, UserError
from mnist_probe.cache import atomic_write, config_key, locked, write_json
from mnist_probe.probe import code_vectors

log = logging.getLogger(__name__)

CONF_DIR = CONF / "interpreter"
FEATURES = ("codes", "pixels")
# The study's raw-pixel baselines (its translation table): RF 96.6%, SVM 96.1%.
PIXEL_STUDY = {"rf": 0.966, "svm": 0.961}


def available() -> list[str]:
    """Names of the interpreter configs in conf/interpreter/."""
    return sorted(p.stem for p in CONF_DIR.glob("*.yaml"))


def selected(cfg: DictConfig) -> list:
    """The interpreter chosen on the command line (interpreter=NAME), else the stage's list."""
    if cfg.get("interpreter"):
        return [cfg.interpreter]
    return list(cfg.interpreters.models)


def interpreter_config(spec: str | DictConfig) -> DictConfig:
    """An interpreter config from its name, 'name@pixels' for raw pixels, or a config node."""
    if isinstance(spec, DictConfig):
        icfg = spec
    else:
        name, _, features = str(spec).partition("@")
        if name not in available():
            raise UserError(f"unknown interpreter {name!r}; valid: {', '.join(available())}")
        icfg = OmegaConf.load(CONF_DIR / f"{name}.yaml")
        if features:
            icfg.features = features
    if icfg.features == "pixels" and "pixels" in icfg:
        icfg = OmegaConf.merge(icfg, icfg.pixels)  # the config's own settings for raw pixels
    if icfg.features not in FEATURES:
        raise UserError(
            f"interpreter.features must be one of {', '.join(FEATURES)}, got {icfg.features!r}"
        )
    return icfg


def features(
    cfg: DictConfig, kind: str, split: str, model=None, model_key: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(X, y) of a split: 256-d code vectors, or the 784 raw pixels scaled to [0, 1]."""
    if kind == "codes":
        return code_vectors(cfg, model, model_key, split)
    from mnist_probe.train import split_tensors

    images, labels = split_tensors(cfg, split)
    return images.reshape(len(images), -1).numpy().astype(np.float32) / 255.0, labels.numpy()


def _subsample(x: np.ndarray, y: np.ndarray, n: int | None) -> tuple[np.ndarray, np.ndarray]:
    if not n or n >= len(y):
        return x, y
    keep = np.random.default_rng(0).permutation(len(y))[:n]
    return x[keep], y[keep]


def _save(estimator, entry: Path) -> None:
    from xgboost import XGBModel

    if isinstance(estimator, XGBModel):
        atomic_write(entry / "model.json", lambda tmp: estimator.save_model(str(tmp)))
    else:
        atomic_write(entry / "estimator.pkl", lambda tmp: tmp.write_bytes(pickle.dumps(estimator)))


def _load(icfg: DictConfig, entry: Path):
    if (entry / "model.json").is_file():
        estimator = instantiate(icfg.estimator)
        estimator.load_model(str(entry / "model.json"))
        return estimator
    with open(entry / "estimator.pkl", "rb") as f:
        return pickle.load(f)  # noqa: S301 - our own cache only


def fit_or_load(
    cfg: DictConfig, icfg: DictConfig, model=None, model_key: str | None = None
) -> tuple[object, dict]:
    """The fitted estimator for icfg, from the cache or fitted now (once, under a lock).

    Keyed by the CNN (for code vectors) or the data split (for pixels) plus the interpreter's own
    config. xgboost models are stored in xgboost's JSON format (loading runs no code); scikit-learn
    estimators can only be pickled, so only files this project wrote to its cache are ever loaded.
    """
    from mnist_probe.train import split_key

    owner = f"cnn-{model_key}" if icfg.features == "codes" else "pixels"
    base = model_key if icfg.features == "codes" else split_key(cfg)
    key = config_key(base, icfg.estimator, icfg.train_samples)
    entry = Path(cfg.paths.cache) / owner / f"interp-{icfg.name}-{key}"
    with locked(entry):
        if (entry / "meta.json").is_file():  # written last: the entry is complete
            meta = json.loads((entry / "meta.json").read_text())
            return _load(icfg, entry), {**meta, "key": key, "cached": True}
        x, y = _subsample(*features(cfg, icfg.features, "train", model, model_key), icfg.train_samples)
        estimator = instantiate(icfg.estimator)
        log.info("fitting %s on %d %s", icfg.name, len(y), icfg.features)
        start = time.perf_counter()
        estimator.fit(x, y)
        meta = {"fit_seconds": round(time.perf_counter() - start, 2), "train_samples": len(y)}
        _save(estimator, entry)
        write_json(entry / "meta.json", meta)
        return estimator, {**meta, "key": key, "cached": False}


def score(
    cfg: DictConfig, icfg: DictConfig, estimator, model=None, model_key: str | None = None
) -> dict:
    """Test accuracy and predict time of a fitted interpreter on the 10k test set."""
    x, y = features(cfg, icfg.features, "test", model, model_key)
    start = time.perf_counter()
    pred = estimator.predict(x)
    seconds = time.perf_counter() - start
    return {"test_acc": float(np.mean(pred == y)), "predict_seconds": round(seconds, 2)}


def linear_probes(
    cfg: DictConfig, model, train_samples: int, test_samples: int | None
) -> list[dict]:
    """A logistic regression on each layer's flattened activations (h = 1..12), scored on test.

    Alain & Bengio's question asked of this network: does linear separability grow with depth?
    """
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from mnist_probe.data import to_float
    from mnist_probe.model import LAYER_NAMES
    from mnist_probe.probe import record
    from mnist_probe.train import split_tensors

    x_train, y_train = split_tensors(cfg, "train")
    keep = np.random.default_rng(0).permutation(len(y_train))[:train_samples]
    x_train, y_train = to_float(x_train[keep]), y_train[keep].numpy()
    x_test, y_test = split_tensors(cfg, "test")
    if test_samples:
        x_test, y_test = x_test[:test_samples], y_test[:test_samples]
    x_test, y_test = to_float(x_test), y_test.numpy()
    rows = []
    for h, name in enumerate(LAYER_NAMES, start=1):
        # One layer at a time: h=1 alone is 50,176 values an image.
        a_train = record(model, x_train, name)[name].flatten(1).numpy()
        a_test = record(model, x_test, name)[name].flatten(1).numpy()
        probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=100, C=0.1))
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            probe.fit(a_train, y_train)
        acc = float(np.mean(probe.predict(a_test) == y_test))
        rows.append({"h": h, "layer": name, "dims": a_train.shape[1], "test_acc": acc,
                     "fit_seconds": round(time.perf_counter() - start, 1)})  # fmt: skip
        log.info("linear probe h=%d %s (%d dims): %.4f", h, name, a_train.shape[1], acc)
    return rows


def interpreters_stage(cfg: DictConfig, out_dir: Path) -> dict:
    """Fit interpreters on code vectors / pixels; table, bar chart, probes by layer, TensorBoard."""
    from torch.utils.tensorboard import SummaryWriter

    from mnist_probe.report import write_table
    from mnist_probe.train import cnn_key
    from mnist_probe.train import fit_or_load as fit_cnn
    from mnist_probe.viz import interpreter_bars, probe_plot, save

    model, meta = fit_cnn(cfg, out_dir)  # if it must train, its curves go to this run
    key = cnn_key(cfg)
    rows = [{
        "interpreter": "CNN softmax (dense_2)", "features": "image", "test_acc": meta["test_acc"],
        "study_acc": 0.993, "diff": meta["test_acc"] - 0.993, "fit_seconds": meta.get("train_seconds"),
        "predict_seconds": None,
    }]  # fmt: skip
    for spec in selected(cfg):
        icfg = interpreter_config(spec)
        estimator, fit_meta = fit_or_load(cfg, icfg, model, key)
        scores = score(cfg, icfg, estimator, model, key)
        study = icfg.study_acc if icfg.features == "codes" else PIXEL_STUDY.get(icfg.name)
        rows.append({
            "interpreter": icfg.name, "features": icfg.features, "test_acc": scores["test_acc"],
            "study_acc": study, "diff": None if study is None else scores["test_acc"] - study,
            "fit_seconds": fit_meta["fit_seconds"], "predict_seconds": scores["predict_seconds"],
        })  # fmt: skip
        log.info("%s on %s: %.4f (study %s)", icfg.name, icfg.features, scores["test_acc"], study)
    md = write_table(rows, out_dir / "interpreters")
    writer = SummaryWriter(str(out_dir / "tb" / "interpreters"))
    writer.add_text("interpreters/table", md)
    fig = interpreter_bars(rows)
    writer.add_figure("interpreters/accuracy", fig, close=False)
    save(fig, out_dir / "interpreters.png")
    results: dict = {"cnn_key": key, "rows": rows}
    pcfg = cfg.interpreters.probes
    if pcfg.enabled and not cfg.get("interpreter"):  # not in every job of an interpreter sweep
        probes = linear_probes(cfg, model, pcfg.train_samples, pcfg.test_samples)
        writer.add_text("interpreters/probes", write_table(probes, out_dir / "probes"))
        fig = probe_plot(probes)
        writer.add_figure("interpreters/probes", fig, close=False)
        save(fig, out_dir / "probes.png")
        results["probes"] = probes
    writer.close()
    return results
