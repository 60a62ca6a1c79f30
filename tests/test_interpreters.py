import json
from pathlib import Path

import numpy as np
import pytest
from hydra.utils import instantiate

from mnist_probe import UserError
from mnist_probe import interpreters as interp
from mnist_probe.interpreters import available, features, fit_or_load, interpreter_config
from mnist_probe.report import summarize_sweep
from mnist_probe.run import run
from mnist_probe.train import cnn_key
from mnist_probe.train import fit_or_load as fit_cnn
from tests.conftest import SMALL_TRAIN, make_cfg


@pytest.fixture(scope="module")
def trained(small_run):
    cfg, _ = small_run
    model, _ = fit_cnn(cfg)
    return cfg, model, cnn_key(cfg)


def test_feature_shapes(trained):
    cfg, model, key = trained
    codes, y = features(cfg, "codes", "train", model, key)
    assert codes.shape == (2000, 256) and y.shape == (2000,) and codes.min() >= 0
    pixels, y_test = features(cfg, "pixels", "test")
    assert pixels.shape == (10_000, 784) and pixels.max() == pytest.approx(1.0)
    assert features(cfg, "codes", "test", model, key)[0].shape == (10_000, 256)


@pytest.mark.parametrize("name", available())
def test_each_interpreter_fits_above_chance(trained, name):
    cfg, model, key = trained
    x, y = features(cfg, "codes", "train", model, key)
    xt, yt = features(cfg, "codes", "test", model, key)
    estimator = instantiate(interpreter_config(name).estimator)
    estimator.fit(x, y)
    acc = np.mean(estimator.predict(xt[:1000]) == yt[:1000])
    assert acc > 0.5, f"{name}: {acc:.3f}"  # chance is 0.1
    assert estimator.predict_proba(xt[:5]).shape == (5, 10)


def test_cache_returns_the_fitted_interpreter_without_refitting(trained, monkeypatch):
    cfg, model, key = trained
    icfg = interpreter_config("dt")
    first, meta = fit_or_load(cfg, icfg, model, key)
    monkeypatch.setattr(interp, "instantiate", lambda *a, **k: pytest.fail("refitted"))
    second, meta2 = fit_or_load(cfg, icfg, model, key)
    assert meta2["cached"] and meta2["fit_seconds"] == meta["fit_seconds"]
    xt, _ = features(cfg, "codes", "test", model, key)
    assert np.array_equal(first.predict(xt), second.predict(xt))


def test_unknown_interpreter_lists_valid_ones():
    with pytest.raises(UserError, match="valid: .*svm"):
        interpreter_config("xgb9")
    with pytest.raises(UserError, match="features"):
        interpreter_config("dt@voxels")


def test_interpreters_stage_table_and_probes(small_run, tmp_path):
    trained_cfg, _ = small_run
    cfg = make_cfg(
        tmp_path, "+experiment=interpreters", *SMALL_TRAIN, "interpreters.models=[dt,dt@pixels]",
        "interpreters.probes.train_samples=300", "interpreters.probes.test_samples=300",
        cache=Path(trained_cfg.paths.cache),
    )  # fmt: skip
    results = run(cfg)
    out = Path(cfg.paths.output_dir)
    rows = results["rows"]
    assert [(r["interpreter"], r["features"]) for r in rows] == [
        ("CNN softmax (dense_2)", "image"), ("dt", "codes"), ("dt", "pixels")]  # fmt: skip
    assert all(0 <= r["test_acc"] <= 1 for r in rows)
    assert (out / "interpreters.md").read_text().count("\n") == 2 + len(rows)
    assert [p["h"] for p in results["probes"]] == list(range(1, 13))
    assert results["probes"][-1]["test_acc"] > 0.5  # the logits are linearly separable
    assert (out / "probes.png").is_file() and (out / "interpreters.png").is_file()


def test_sweep_summary_collects_every_job(tmp_path):
    for job in range(3):
        (tmp_path / str(job)).mkdir()
        rows = [{"model": "CNN", "p_true": 0.5 + job / 10}, {"model": "rf", "p_true": 0.1}]
        (tmp_path / str(job) / "results.json").write_text(
            json.dumps({"overrides": f"shift.dy={-job}", "rows": rows})
        )
    rows = summarize_sweep(tmp_path)
    assert len(rows) == 6 and {r["overrides"] for r in rows} == {"shift.dy=0", "shift.dy=-1", "shift.dy=-2"}
    assert (tmp_path / "summary.md").read_text().count("shift.dy=-2") == 2


def test_xgboost_is_cached_as_json_not_pickle(trained):
    cfg, model, key = trained
    icfg = interpreter_config("gb")
    icfg.estimator.n_estimators, icfg.train_samples = 5, 1000
    first, _ = fit_or_load(cfg, icfg, model, key)
    entry = next(p for p in (Path(cfg.paths.cache) / f"cnn-{key}").glob("interp-gb-*") if p.is_dir())
    assert sorted(p.name for p in entry.iterdir()) == ["meta.json", "model.json"]
    assert "learner" in json.loads((entry / "model.json").read_text())  # xgboost's own format
    second, meta = fit_or_load(cfg, icfg, model, key)
    assert meta["cached"]
    xt, _ = features(cfg, "codes", "test", model, key)
    assert np.allclose(first.predict_proba(xt[:200]), second.predict_proba(xt[:200]))
