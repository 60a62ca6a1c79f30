"""Damaged cache files are recovered: every kind of artifact is damaged on disk, then asked for again.
Each time: one log line, the entry moved aside, the artifact recomputed; never a wrong file reused."""

import json
import logging
import multiprocessing
import os
from pathlib import Path

import numpy as np
import pytest
import skops.io as sio
import torch

from mnist_probe import UserError
from mnist_probe import cache as cache_module
from mnist_probe.cache import get_or_compute, locked, sha256
from mnist_probe.data import split_tensors, to_float
from mnist_probe.stages.adapters import interpreter_spec, trained_cnn
from mnist_probe.translation import cached_grids
from tests.conftest import SMALL_FILTERS, data_spec, features, fitted_interpreter, key_of, make_cfg

TINY = (
    "+experiment=shift",
    "data.train_subset=640",
    "data.test_subset=200",
    "data.val_size=500",
    "train.epochs=1",
    "train.batch_size=64",
    "+model.filters=16",
    "shift.dataset.samples=10",
    "shift.dataset.radius=1",
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    cfg = make_cfg(tmp_path_factory.mktemp("tiny"), *TINY)
    return cfg, trained_cnn(cfg)


def damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    flipped = data[:100] + bytes([data[100] ^ 1]) + data[101:]
    path.write_bytes(data[: len(data) // 2] if how == "truncate" else flipped)


def recovered(caplog, cache: Path, kind: str, aside_before: int = 0) -> None:
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "damaged" in warnings[0] and "\n" not in warnings[0], warnings
    assert len(list(cache.glob(f"{kind}-*.damaged-*"))) == aside_before + 1


@pytest.mark.parametrize("how", ["flip"])  # truncation: tests/test_cache.py
def test_damaged_model_is_retrained_not_loaded(tiny, caplog, how):
    cfg, cnn = tiny
    cache = Path(cfg.paths.cache)
    damage(cache / f"cnn-{cnn.key}" / "model.pt", how)
    with caplog.at_level(logging.WARNING):
        again = trained_cnn(cfg)
    recovered(caplog, cache, "cnn")
    assert not again.meta["cached"] and again.key == cnn.key
    assert all(
        torch.equal(a, b)
        for a, b in zip(again.model.state_dict().values(), cnn.model.state_dict().values(), strict=True)
    )
    for aside in cache.glob("cnn-*.damaged-*"):  # leave the next parametrisation a clean cache
        os.rename(aside, cache / f"gone-{aside.name}-{how}")


@pytest.mark.parametrize("kind", ["codes", "interp", "shiftgrid", "meta"])
def test_each_damaged_artifact_is_recomputed(tiny, caplog, kind):
    cfg, cnn = tiny
    cache = Path(cfg.paths.cache)
    settings = interpreter_spec(cfg, "dt")
    images = to_float(split_tensors(data_spec(cfg), "test")[0][:10])
    models = {"CNN": None}

    def ask():
        if kind in ("codes", "meta"):
            return features(cfg, "codes", "train", cnn)[0]
        if kind == "interp":
            return fitted_interpreter(cfg, settings, cnn)[0].predict(images)
        return cached_grids(
            cfg.paths.cache, cnn, models, {}, images, cfg.shift.dataset.radius, seed=cfg.seed
        )["CNN"][1]

    first = ask()
    (entry,) = [
        p
        for p in cache.glob(f"{'codes' if kind == 'meta' else kind}-*")
        if p.is_dir() and ".damaged" not in p.name and not p.name.endswith(".partial")
    ]
    files = [p for p in entry.iterdir() if p.name != "meta.json"]
    target = entry / "meta.json" if kind == "meta" else files[0]
    target.write_text("{not json") if kind == "meta" else damage(target, "flip")
    owner = "codes" if kind == "meta" else kind
    before = len(list(cache.glob(f"{owner}-*.damaged-*")))
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        again = ask()
    recovered(caplog, cache, owner, before)
    assert np.array_equal(first, again)


def test_a_tampered_estimator_file_is_refused_even_with_a_matching_hash(tiny, caplog):
    """A skops file that would build an arbitrary callable (os.system), its hash updated to match,
    is refused by skops's type check: logged, moved aside, refitted; the payload never runs."""
    cfg, cnn = tiny
    settings = interpreter_spec(cfg, "dt")
    pipe, meta = fitted_interpreter(cfg, settings, cnn)
    entry = Path(cfg.paths.cache) / f"interp-dt-{meta['key']}"
    sio.dump({"payload": os.system}, entry / "estimator.skops")
    record = json.loads((entry / "meta.json").read_text())
    record["files"]["estimator.skops"] = sha256(entry / "estimator.skops")
    (entry / "meta.json").write_text(json.dumps(record))
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        again, meta_again = fitted_interpreter(cfg, settings, cnn)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "Untrusted" in warnings[0]
    assert meta_again["cached"] is False and hasattr(again[-1], "tree_")


def test_damaged_last_checkpoint_restarts_training(tmp_path, caplog):
    cfg = make_cfg(tmp_path, *TINY)
    key = key_of(cfg)
    work = Path(cfg.paths.cache) / f"cnn-{key}.partial" / "work"
    work.mkdir(parents=True)
    (work / "last.ckpt").write_bytes(b"PK\x03\x04 half a checkpoint")
    with caplog.at_level(logging.WARNING):
        cnn = trained_cnn(cfg)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("last.ckpt is damaged" in w and "training from the start" in w for w in warnings), warnings
    assert cnn.meta["resumed_after_epochs"] == 0 and cnn.meta["epochs"] == 1


def test_a_waiting_process_says_what_it_waits_for_and_gives_up_clearly(tmp_path, caplog):
    ready, release = multiprocessing.Event(), multiprocessing.Event()
    fork = multiprocessing.get_context("fork")
    holder = fork.Process(target=_hold, args=(tmp_path / "entry", ready, release))
    holder.start()
    try:
        assert ready.wait(30)
        with caplog.at_level(logging.INFO, logger="mnist_probe.cache"), pytest.raises(UserError) as err:
            with locked(tmp_path / "entry", timeout=0.5):
                pass
        waits = [r.getMessage() for r in caplog.records if "waiting for" in r.getMessage()]
        assert len(waits) == 1 and "entry" in waits[0] and "another process" in waits[0]
        assert "gave up after 0 s" in str(err.value) and "entry.lock" in str(err.value)
    finally:
        release.set()
        holder.join(30)


def _hold(path, ready, release):
    with locked(path):
        ready.set()
        release.wait(60)


def test_a_read_only_cache_still_serves_hits(tmp_path, monkeypatch):
    """A cache this process may not write (a shared, read-only copy): hits load without a lock;
    a damaged entry there is a clear error, not a traceback. (Simulated: CI runs as root.)"""

    def compute(staging):
        (staging / "x.txt").write_text("x")
        return {}

    def load(entry, meta):
        return (entry / "x.txt").read_text()

    get_or_compute(tmp_path / "entry", compute, load)
    monkeypatch.setattr(cache_module.os, "access", lambda path, mode: False)
    no_lock = lambda *a, **k: pytest.fail("took a lock in a read-only cache")  # noqa: E731
    monkeypatch.setattr(cache_module, "locked", no_lock)
    assert get_or_compute(tmp_path / "entry", compute, load)[::2] == ("x", True)
    (tmp_path / "entry" / "x.txt").write_text("y")
    with pytest.raises(UserError, match="damaged .* read-only"):
        get_or_compute(tmp_path / "entry", compute, load)


def test_published_files_have_the_users_normal_mode(tmp_path):
    get_or_compute(tmp_path / "entry", lambda s: (s / "x.txt").write_text("x") and {}, lambda e, m: None)
    mode = (tmp_path / "entry" / "meta.json").stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask  # not mkstemp's 0600


def entries(cache: Path, kind: str) -> set[str]:
    return {p.name for p in cache.glob(f"{kind}-*") if p.is_dir() and "." not in p.name}


def test_every_input_that_changes_an_artifact_is_in_its_key(small_run, tmp_path):
    """With checkpoint=PATH, the score, code vectors and fitted interpreters follow the data split;
    an input that changes nothing (where MNIST lives, the progress bar) reuses them."""
    ckpt = small_run[1]["checkpoint"]
    base = (
        "+experiment=train",
        f"checkpoint={ckpt}",
        f"+model.filters={SMALL_FILTERS}",
        "data.train_subset=300",
        "data.test_subset=100",
    )
    cache = tmp_path / "cache"

    def artifacts(*changes: str) -> tuple[str, np.ndarray]:
        cfg = make_cfg(tmp_path, *base, *changes, cache=cache)
        cnn = trained_cnn(cfg)
        fitted_interpreter(cfg, interpreter_spec(cfg, "dt"), cnn)
        return cnn.key, features(cfg, "codes", "train", cnn)[1]

    key, labels = artifacts()
    seen = {k: entries(cache, k) for k in ("cnn", "codes", "interp")}
    for change in ("data.train_subset=200", "data.split_seed=1", "data.val_size=5000", "data.test_subset=50"):
        new_key, new_labels = artifacts(change)
        assert new_key != key, change
        for kind in ("cnn", "codes", "interp"):
            now = entries(cache, kind)
            assert len(now - seen[kind]) == 1, (change, kind)  # recomputed, not reused
            seen[kind] = now
    assert len(artifacts("data.train_subset=200")[1]) == 200  # and the right images
    assert not np.array_equal(artifacts("data.split_seed=1")[1], labels)
    before = {k: entries(cache, k) for k in ("cnn", "codes", "interp")}
    assert artifacts("trainer.progress_bar=true")[0] == key
    assert {k: entries(cache, k) for k in ("cnn", "codes", "interp")} == before  # all reused
    cfg = make_cfg(tmp_path, *base, "+interpreters.catalog.dt.estimator.max_depth=3", cache=cache)
    fitted_interpreter(cfg, interpreter_spec(cfg, "dt"), trained_cnn(cfg))
    assert len(entries(cache, "interp") - before["interp"]) == 1  # another estimator: refitted
