"""Interpreters: scikit-learn pipelines whose first step turns images into features (the CNN's code
vectors, or raw pixels) and whose last step is any scikit-learn / xgboost classifier.

    make_pipeline(CodeVectors(cnn), SVC())   # the study's CNN+SVM
    make_pipeline(Pixels(), SVC())           # its SVM on raw pixels

Both feature steps are stateless, so a pipeline's last step may also be fitted on features
computed once (fit_on_features): how the stages share one pass of the CNN over 54k images among
every interpreter. fit_or_load_interpreter caches both, as train.fit_or_load caches the CNN: the
code vectors once per CNN and split, the fitted estimator once per features, data and spec.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.ensemble._forest import BaseForest
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.svm import SVC
from torch import nn
from tqdm import tqdm

from mnist_probe.cache import atomic_write, config_key, get_or_compute, write_npz
from mnist_probe.data import split_tensors, to_float
from mnist_probe.hooks import ActivationRecorder
from mnist_probe.layer_names import resolve_layers
from mnist_probe.model import CODE_LAYER, device_of
from mnist_probe.names import FEATURES
from mnist_probe.specs import INFERENCE_BATCH, DataSpec
from mnist_probe.training import OpenedModel

log = logging.getLogger(__name__)


def as_images(x) -> torch.Tensor:
    """Images as float N×1×H×W in [0, 1], from uint8 or float, N×H×W, N×1×H×W or N×H·W (square)."""
    x = torch.as_tensor(np.asarray(x)) if not isinstance(x, torch.Tensor) else x
    if x.dim() == 2:  # flattened square images, as a pixel pipeline gets them
        side = int(round(x.shape[1] ** 0.5))
        x = x.reshape(len(x), side, side)
    return to_float(x)


class _Stateless(TransformerMixin, BaseEstimator):
    """A transformer with nothing to learn: fit returns self, and it counts as fitted."""

    def fit(self, X=None, y=None):  # noqa: N803 - scikit-learn's names
        return self

    def __sklearn_is_fitted__(self) -> bool:
        return True


class Pixels(_Stateless):
    """Images -> their raw pixels in [0, 1], one row each (N×784 for MNIST)."""

    def transform(self, X) -> np.ndarray:  # noqa: N803
        return as_images(X).flatten(1).numpy()


class CodeVectors(_Stateless):
    """Images -> the activations of one layer of `model` (default: the KerasCNN's 256-d code vector,
    dense_1, h = 10), recorded with a forward hook in batches, in eval mode, on the model's device."""

    def __init__(
        self,
        model: nn.Module | None = None,
        layer: str | int = CODE_LAYER,
        batch_size: int = INFERENCE_BATCH,
        progress: bool = False,
    ) -> None:
        self.model, self.layer, self.batch_size, self.progress = model, layer, batch_size, progress

    def fit(self, X=None, y=None):  # noqa: N803
        resolve_layers(self.model, self.layer)  # an unknown layer fails at fit, not later
        return self

    @torch.no_grad()
    def transform(self, X) -> np.ndarray:  # noqa: N803
        images = as_images(X)
        device = device_of(self.model)
        starts = range(0, len(images), self.batch_size)
        with ActivationRecorder(self.model, self.layer) as rec:
            for start in tqdm(starts, desc="code vectors", leave=False, disable=not self.progress):
                self.model(images[start : start + self.batch_size].to(device))
        return rec[self.layer].flatten(1).numpy()


def make_interpreter(
    estimator, features: str = "codes", model: nn.Module | None = None, layer: str | int = CODE_LAYER
) -> Pipeline:
    """The pipeline of an interpreter: CodeVectors(model, layer) or Pixels(), then the estimator."""
    if features not in FEATURES:
        raise ValueError(f"features must be one of {FEATURES}, got {features!r}")
    return make_pipeline(CodeVectors(model, layer) if features == "codes" else Pixels(), estimator)


def fit_on_features(pipe: Pipeline, x: np.ndarray, y: np.ndarray) -> Pipeline:
    """Fit the pipeline's last step on x, the output of its (stateless) feature step: the same fit
    as pipe.fit(images, y), when the features were computed once and cached."""
    pipe[:-1].fit(None)
    pipe[-1].fit(x, y)
    return pipe


def fit_forest_with_progress(forest: BaseForest, x: np.ndarray, y: np.ndarray, chunks: int = 20) -> None:
    """Fit a scikit-learn forest in chunks of trees (warm_start), with a progress bar and its ETA:
    the same trees as one fit (each new tree's seed comes from the same random stream)."""
    total, warm = forest.n_estimators, forest.warm_start
    step = max(1, -(-total // chunks))
    try:
        with tqdm(total=total, desc=f"{type(forest).__name__}", unit="tree", leave=False) as bar:
            for n in range(step, total + step, step):
                forest.set_params(n_estimators=min(n, total), warm_start=True)
                forest.fit(x, y)
                bar.update(forest.n_estimators - bar.n)
    finally:
        forest.set_params(n_estimators=total, warm_start=warm)


def fit_timed(estimator, x: np.ndarray, y: np.ndarray, progress: bool = True) -> float:
    """Fit estimator on (x, y) and return the seconds it took; a forest shows a progress bar."""
    start = time.perf_counter()
    if progress and isinstance(estimator, BaseForest) and not estimator.warm_start:
        fit_forest_with_progress(estimator, x, y)
    else:
        estimator.fit(x, y)
    return round(time.perf_counter() - start, 2)


def sample_rows(total: int, n: int | None, seed: int = 0) -> np.ndarray | None:
    """The rows a seeded random subset of n of `total` keeps (None: all, n None or at least total)."""
    if not n or n >= total:
        return None
    return np.random.default_rng(seed).permutation(total)[:n]


def subsample(x: np.ndarray, y: np.ndarray, n: int | None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random subset of n rows (all of them when n is None or at least len(y))."""
    keep = sample_rows(len(y), n, seed)
    return (x, y) if keep is None else (x[keep], y[keep])


# A kernel SVM's fit costs about (images) × (support vectors) × (dims) kernel terms, and the code
# vectors of a weak model keep most images as support vectors (minutes where a good model's take
# seconds). A budget bounds that product: a pilot fit on PILOT_IMAGES images measures the share kept
# as support vectors, and the fit sees as many images as the budget allows at that share.
PILOT_IMAGES = 2000


def kernel_svm(estimator) -> SVC | None:
    """The kernel SVM an estimator is or wraps (a calibrated SVM's base estimator), else None."""
    for candidate in (estimator, getattr(estimator, "estimator", None)):
        if isinstance(candidate, SVC) and candidate.kernel != "linear":
            return candidate
    return None


def images_within_budget(
    estimator, x: np.ndarray, y: np.ndarray, budget: float | None
) -> tuple[int, float | None]:
    """How many of the rows of (x, y) a kernel SVM's fit may see within `budget` (images × support
    vectors × dims), and the share of a pilot fit's images kept as support vectors; (all rows, None)
    for another estimator or no budget."""
    svm = kernel_svm(estimator)
    if svm is None or budget is None:
        return len(y), None
    px, py = subsample(x, y, PILOT_IMAGES)
    share = len(clone(svm).fit(px, py).support_) / len(py)
    return min(len(y), int((budget / (share * x.shape[1])) ** 0.5)), share


# ----------------------------------------------------------------------------- the cache
@dataclass(frozen=True)
class InterpreterSpec:
    """One interpreter: its catalog name, what it is fitted on (codes or pixels), its estimator as a
    `_target_` spec, how many training images it sees (None: all) and, for a kernel SVM, the budget
    that may see it fitted on fewer (None: none)."""

    name: str
    features: str = "codes"
    estimator: dict | None = None
    train_samples: int | None = None
    budget: float | None = None  # a kernel SVM's images × support vectors × dims (images_within_budget)

    @property
    def label(self) -> str:
        """How tables name it: CNN+svm on code vectors, 'svm (pixels)' on pixels."""
        return f"CNN+{self.name}" if self.features == "codes" else f"{self.name} (pixels)"


def features_of(
    kind: str,
    split: str,
    data: DataSpec,
    cache_dir: str | Path,
    cnn: OpenedModel | None = None,
    samples: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(X, y) of a split, or of `samples` of its images (subsample's), as a pipeline's first step makes
    them: the CNN's code vectors (computed once per CNN, split and sample, cached) or the raw pixels."""
    if kind == "pixels":
        images, labels = split_tensors(data, split)
        return subsample(Pixels().transform(images), labels.numpy(), samples)
    sample = [] if samples is None else [samples]  # the whole split: the key it had before samples
    key = config_key(cnn.key, cnn.code_layer, data.content(), split, *sample)

    def compute(staging: Path) -> dict:
        images, labels = split_tensors(data, split)  # read where the codes are computed, not on a hit
        keep = sample_rows(len(labels), samples)
        x, y = (images, labels) if keep is None else (images[keep], labels[keep])
        log.info("computing %s code vectors (%s) for %d images", split, cnn.code_layer, len(x))
        codes = CodeVectors(cnn.model, cnn.code_layer, progress=True).transform(x)
        write_npz(staging / "codes.npz", codes=codes, labels=y.numpy())
        return {"cnn": cnn.key, "split": split, "images": len(y)}

    def load(entry: Path, meta: dict) -> tuple[np.ndarray, np.ndarray]:
        with np.load(entry / "codes.npz") as z:
            return z["codes"], z["labels"]

    return get_or_compute(Path(cache_dir) / f"codes-{key}", compute, load)[0]


# scikit-learn internals that skops does not trust by default but our interpreters hold (the MLP's
# optimiser, the calibrated SVM's parts, trees). Any other type in an estimator file is refused.
TRUSTED = [
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.tree._tree.Tree",
    "mnist_probe.fast_svc.FastSVC",
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


def _load(spec: InterpreterSpec):
    def load(entry: Path, meta: dict):
        import skops.io as sio

        if (entry / "model.json").is_file():
            estimator = instantiate(spec.estimator)
            estimator.load_model(str(entry / "model.json"))
            return estimator
        return sio.load(entry / "estimator.skops", trusted=TRUSTED)  # other types: refused

    return load


def fit_or_load_interpreter(
    spec: InterpreterSpec, cnn: OpenedModel, data: DataSpec, cache_dir: str | Path
) -> tuple[Pipeline, dict]:
    """The interpreter pipeline of spec, its estimator fitted on the training split (from the cache,
    or fitted now once); keyed by its features' source, the data split and the estimator."""
    source = [cnn.key, cnn.code_layer] if spec.features == "codes" else "pixels"
    budget = [] if spec.budget is None else [spec.budget]  # no budget: the key it had before budgets
    key = config_key(source, data.content(), spec.features, spec.estimator, spec.train_samples, *budget)

    def compute(staging: Path) -> dict:
        x, y = features_of(spec.features, "train", data, cache_dir, cnn, spec.train_samples)
        estimator = instantiate(spec.estimator)
        n, share = images_within_budget(estimator, x, y, spec.budget)
        if n < len(y):
            log.info(
                "%s: fitted on %d of %d %s, its budget (a pilot fit on %d kept %.0f%% as support "
                "vectors; interpreters.catalog.%s.budget)",
                spec.name,
                n,
                len(y),
                spec.features,
                PILOT_IMAGES,
                100 * share,
                spec.name,
            )
            x, y = subsample(x, y, n)
        log.info("fitting %s on %d %s", spec.name, len(y), spec.features)
        seconds = fit_timed(estimator, x, y)
        _save(estimator, staging)
        return {
            "fit_seconds": seconds,
            "train_samples": len(y),
            "features": spec.features,
            "support_share": share,
        }

    entry = Path(cache_dir) / f"interp-{spec.name}-{key}"
    estimator, meta, cached = get_or_compute(entry, compute, _load(spec))
    pipe = make_interpreter(estimator, spec.features, cnn.model, cnn.code_layer)
    return pipe, {**meta, "key": key, "cached": cached}
