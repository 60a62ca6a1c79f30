"""Shared fixtures: the real MNIST (MNIST_ROOT, ../shared/mnist or data/) and composed Hydra configs."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

# `make test` runs the suite in one pytest-xdist worker per core: each worker, and every process it
# starts, computes on one thread (set before torch is first imported), so the workers share the
# cores instead of contending for them.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"

import pytest  # noqa: E402 - after the thread count
from omegaconf import DictConfig  # noqa: E402

from mnist_probe.config import compose_config  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"


@pytest.fixture(scope="session", autouse=True)
def machine_cache(tmp_path_factory) -> Path:
    """The suite's own per-machine cache (the precision measurement), not the user's ~/.cache;
    subprocesses inherit it."""
    path = tmp_path_factory.mktemp("machine_cache")
    os.environ["MNIST_PROBE_MACHINE_CACHE"] = str(path)
    return path


def mnist_root() -> str:
    """Where the suite reads MNIST: MNIST_ROOT (the Makefile sets it, after `make mnist` downloaded
    it where missing), else ../shared/mnist, else data/ (where `make mnist` puts it)."""
    shared = REPO.parent / "shared" / "mnist"
    fallback = shared if (shared / "MNIST" / "raw").is_dir() else REPO / "data"
    root = os.environ.get("MNIST_ROOT") or str(fallback)
    if not (Path(root) / "MNIST" / "raw").is_dir():
        pytest.fail(f"the tests need real MNIST in {root}: `make test` downloads it there, or set MNIST_ROOT")
    return root


@pytest.fixture(scope="session", autouse=True)
def mnist_for_subprocesses() -> None:
    """The command lines the tests run read MNIST where the suite does."""
    os.environ["MNIST_ROOT"] = mnist_root()


def make_cfg(tmp: Path, *overrides: str, cache: Path | None = None) -> DictConfig:
    """Compose conf/config.yaml as the entry point would, pointed at tmp and the real MNIST."""
    base = [
        f"data.root={mnist_root()}",
        f"paths.output_dir={tmp / 'run'}",
        f"paths.cache={cache or tmp / 'cache'}",
        "trainer.progress_bar=false",
    ]
    return compose_config(*base, *overrides)


# A short training that still learns: the study's network with 16 filters a conv layer (its 12 layers
# and names, a tenth of the compute: 93% after this training, where 64 filters take ten times as
# long), the default recipe cut to 2,000 images, 4 one-cycle epochs of batch 64 with peak lr 0.004;
# 1,000 test images. 1,000 validation images, not 6,000, and the gap measured on 200 training
# images, not 1,000: each took half of such a training.
SMALL_FILTERS = 16
SMALL_TRAIN = (
    "train=default",
    "data.train_subset=2000",
    "data.test_subset=1000",
    "train.epochs=4",
    "train.batch_size=64",
    "data.val_size=1000",
    f"+model.filters={SMALL_FILTERS}",
    "train.scheduler.factory.max_lr=0.004",
    "train.gap_images=200",
)


@pytest.fixture(scope="session")
def small_run(tmp_path_factory) -> tuple[DictConfig, dict]:
    """Train the small CNN once for the whole session; (its config, run() results)."""
    from mnist_probe.run import run

    cfg = make_cfg(tmp_path_factory.mktemp("small"), "+experiment=train", *SMALL_TRAIN)
    return cfg, run(cfg)


def data_spec(cfg: DictConfig):
    """The config's data node as the library's DataSpec."""
    from mnist_probe.schema import typed

    return typed(cfg).data


def features(cfg: DictConfig, kind: str, split: str, cnn=None):
    """interpreters.features_of with the config's data and cache."""
    from mnist_probe.interpretation import features_of

    return features_of(kind, split, data_spec(cfg), cfg.paths.cache, cnn)


def fitted_interpreter(cfg: DictConfig, spec, cnn):
    """interpreters.fit_or_load_interpreter with the config's data and cache."""
    from mnist_probe.interpretation import fit_or_load_interpreter

    return fit_or_load_interpreter(spec, cnn, data_spec(cfg), cfg.paths.cache)


def key_of(cfg: DictConfig) -> str:
    """The cache key of the CNN that cfg trains."""
    from mnist_probe.schema import typed
    from mnist_probe.training import cnn_key

    c = typed(cfg)
    return cnn_key(c.data, c.train, c.seed, c.model, c.trainer)


# A CNN of a user's own, as a tests' temp module holds it: its own names, BatchNorm, global pooling
# and a two-layer head (tests/test_any_cnn.py runs it through every stage).
OWN_CNN = textwrap.dedent("""
    from torch import nn


    class OwnCNN(nn.Module):
        def __init__(self, width: int = 8):
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
            )
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.head = nn.Sequential(nn.Flatten(), nn.Linear(2 * width, 32), nn.GELU(), nn.Dropout(0.2),
                                      nn.Linear(32, 10))

        def forward(self, x):
            return self.head(self.pool(self.features(x)))
""")


@pytest.fixture
def own_module(tmp_path, monkeypatch):
    """OWN_CNN as own_cnn.py in a temp working directory (how a user's class is found)."""
    (tmp_path / "own_cnn.py").write_text(OWN_CNN)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path / "own_cnn.py"
    sys.modules.pop("own_cnn", None)
