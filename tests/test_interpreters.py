import dataclasses
import json
import logging
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra.utils import instantiate
from sklearn.base import clone
from sklearn.pipeline import make_pipeline
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier

from mnist_probe import UserError, probes
from mnist_probe import interpretation as interpreters
from mnist_probe.data import split_tensors
from mnist_probe.fast_svc import FastSVC
from mnist_probe.interpretation import CodeVectors, Pixels, fit_on_features, make_interpreter
from mnist_probe.pages.render import render
from mnist_probe.run import run
from mnist_probe.schema import typed
from mnist_probe.specs import DataSpec
from mnist_probe.stages.adapters import interpreter_spec, trained_cnn
from mnist_probe.stages.sweep import summarize_sweep
from tests.conftest import SMALL_TRAIN, data_spec, features, fitted_interpreter, make_cfg, mnist_root


def interpreter_names(cfg):
    return sorted(cfg.interpreters.catalog)


@pytest.fixture(scope="module")
def trained(small_run):
    cfg, _ = small_run
    return cfg, trained_cnn(cfg)


def test_feature_shapes(trained):
    cfg, cnn = trained
    codes, y = features(cfg, "codes", "train", cnn)
    assert codes.shape == (2000, 256) and y.shape == (2000,) and codes.min() >= 0
    pixels, y_test = features(cfg, "pixels", "test")
    assert pixels.shape == (10_000, 784) and pixels.max() == pytest.approx(1.0)
    assert features(cfg, "codes", "scored", cnn)[0].shape == (1000, 256)  # data.test_subset


def test_code_vectors_follow_scikit_learns_conventions(trained):
    cfg, cnn = trained
    images, labels = split_tensors(data_spec(cfg), "train")
    step = CodeVectors(cnn.model)
    assert step.get_params()["layer"] == "dense_1" and step.fit(images[:10]) is step
    codes = step.transform(images[:300])
    assert codes.shape == (300, 256) and codes.dtype == np.float32
    # the same vectors whatever the batching, and from uint8, float or flattened images
    small_batches = CodeVectors(cnn.model, batch_size=7).transform(images[:30])
    np.testing.assert_allclose(small_batches, codes[:30], atol=1e-5)
    np.testing.assert_allclose(
        step.transform(images[:30].float().div(255).flatten(1).numpy()), codes[:30], atol=1e-5
    )
    np.testing.assert_allclose(codes, features(cfg, "codes", "train", cnn)[0][:300], atol=1e-5)
    other = clone(step)
    assert other.get_params()["layer"] == "dense_1" and other is not step
    assert CodeVectors(cnn.model, layer=5).transform(images[:4]).shape == (4, 16 * 14 * 14)  # 16 filters
    with pytest.raises(UserError, match="h runs from 1 to 12"):
        CodeVectors(cnn.model, layer=13).fit(images[:4])


def test_a_pipeline_on_images_equals_the_cached_feature_fit(trained):
    cfg, cnn = trained
    images, labels = split_tensors(data_spec(cfg), "train")
    test_images, _ = split_tensors(data_spec(cfg), "test")
    for features_kind, first in (("codes", CodeVectors(cnn.model)), ("pixels", Pixels())):
        direct = make_pipeline(first, DecisionTreeClassifier(random_state=0)).fit(images, labels)
        x, y = features(cfg, features_kind, "train", cnn)
        cached = fit_on_features(
            make_interpreter(DecisionTreeClassifier(random_state=0), features_kind, cnn.model), x, y
        )
        assert np.array_equal(direct.predict(test_images[:500]), cached.predict(test_images[:500]))


@pytest.mark.parametrize("shape", ["ovr", "ovo"])
def test_fast_svc_decides_as_libsvm_does(shape):
    """FastSVC's BLAS decision function equals libsvm's on real pixels (every one-vs-one pair in
    libsvm's order, and the one-vs-rest transform of them), across more rows than one block."""
    images, labels = split_tensors(DataSpec(root=mnist_root()), "train")
    x, y = images[:600].flatten(1).numpy() / 255.0, labels[:600].numpy()
    unseen = images[600:2700].flatten(1).numpy() / 255.0  # 2,100 rows: two kernel blocks
    ours = FastSVC(decision_function_shape=shape).fit(x, y)
    theirs = SVC(decision_function_shape=shape).fit(x, y)
    assert np.array_equal(ours.support_, theirs.support_)
    mine, libsvm = ours.decision_function(unseen), theirs.decision_function(unseen)
    assert mine.shape == libsvm.shape == (2100, 10 if shape == "ovr" else 45)
    np.testing.assert_allclose(mine, libsvm, rtol=0, atol=1e-9)
    assert len(set(np.round(libsvm[:, 0], 3))) > 100  # the rows differ: not a constant compared
    # a kernel FastSVC leaves to libsvm still works
    linear, plain = FastSVC(kernel="linear").fit(x[:200], y[:200]), SVC(kernel="linear").fit(x[:200], y[:200])
    assert np.array_equal(linear.decision_function(unseen[:50]), plain.decision_function(unseen[:50]))


def test_a_parallel_fits_worker_unpickles_fast_svc_without_torch(tmp_path):
    """The workers of the calibrated SVM's parallel fit (n_jobs) unpickle FastSVC: doing so loads
    scikit-learn, not torch or Lightning (seconds of imports in each worker)."""
    x = np.random.default_rng(0).random((60, 4))
    fitted = FastSVC().fit(x, np.arange(60) % 3)
    (tmp_path / "svc.pkl").write_bytes(pickle.dumps(fitted))
    code = (
        "import pickle, sys; svc = pickle.load(open(sys.argv[1], 'rb')); "
        "print(svc.predict(pickle.load(open(sys.argv[2], 'rb'))).tolist(), "
        "sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'pytorch_lightning', 'sklearn'}))"
    )
    (tmp_path / "x.pkl").write_bytes(pickle.dumps(x[:10]))
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "svc.pkl"), str(tmp_path / "x.pkl")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == f"{fitted.predict(x[:10]).tolist()} ['sklearn']"


@pytest.mark.parametrize("name", ["nn", "svm", "rf", "rf1000", "gb", "dt", "knn", "logreg"])
def test_each_interpreter_fits_above_chance(trained, name):
    cfg, cnn = trained
    assert name in interpreter_names(cfg)
    x, y = features(cfg, "codes", "train", cnn)
    xt, yt = features(cfg, "codes", "scored", cnn)  # the first 1,000 test images
    estimator = instantiate(interpreter_spec(cfg, name).estimator)
    estimator.fit(x, y)
    acc = np.mean(estimator.predict(xt[:1000]) == yt[:1000])
    assert acc > 0.5, f"{name}: {acc:.3f}"  # chance is 0.1
    assert estimator.predict_proba(xt[:5]).shape == (5, 10)


def test_catalog_names_every_interpreter_once(trained):
    cfg, _ = trained
    assert interpreter_names(cfg) == ["dt", "gb", "knn", "logreg", "nn", "rf", "rf1000", "svm"]
    svm, svm_pixels = interpreter_spec(cfg, "svm"), interpreter_spec(cfg, "svm@pixels")
    assert (svm.features, svm.train_samples) == ("codes", None)
    assert (svm_pixels.features, svm_pixels.train_samples) == ("pixels", 10_000)
    # the code-vector forest grows each tree on half the data; the pixel forest keeps full samples
    rf, rf_pixels = interpreter_spec(cfg, "rf"), interpreter_spec(cfg, "rf@pixels")
    assert rf.estimator["max_samples"] == 0.5 and rf_pixels.estimator["max_samples"] is None
    assert instantiate(rf_pixels.estimator).get_params()["max_samples"] is None
    assert "label" not in cfg.interpreters.catalog.svm and "name" not in cfg.interpreters.catalog.svm
    # one override changes the interpreter for every stage that names it
    changed = make_cfg(Path(cfg.paths.output_dir), "interpreters.catalog.rf.estimator.n_estimators=7")
    assert interpreter_spec(changed, "rf@pixels").estimator["n_estimators"] == 7


def test_cache_returns_the_fitted_interpreter_without_refitting(trained, monkeypatch):
    cfg, cnn = trained
    settings = interpreter_spec(cfg, "dt")
    first, meta = fitted_interpreter(cfg, settings, cnn)
    monkeypatch.setattr(interpreters, "instantiate", lambda *a, **k: pytest.fail("refitted"))
    second, meta_again = fitted_interpreter(cfg, settings, cnn)
    assert meta_again["cached"] and meta_again["fit_seconds"] == meta["fit_seconds"]
    images, _ = split_tensors(data_spec(cfg), "test")
    assert np.array_equal(first.predict(images[:500]), second.predict(images[:500]))  # whole pipelines


def test_unknown_interpreter_lists_valid_ones(trained):
    cfg, _ = trained
    with pytest.raises(UserError, match="an interpreter of the catalog: .*svm"):
        interpreter_spec(cfg, "xgb9")
    with pytest.raises(UserError, match="features are codes or pixels"):
        interpreter_spec(cfg, "dt@voxels")


def test_interpreters_stage_table_and_probes(small_run, tmp_path, caplog):
    trained_cfg, _ = small_run
    cfg = make_cfg(
        tmp_path,
        "+experiment=interpreters",
        *SMALL_TRAIN,
        "interpreters.models=[dt,dt@pixels]",
        "interpreters.probes.train_samples=200",
        "interpreters.probes.test_samples=200",
        cache=Path(trained_cfg.paths.cache),
    )
    results = run(cfg)
    out = Path(cfg.paths.output_dir)
    rows = [results["cnn"], *results["rows"]]
    assert [(r["interpreter"], r["features"]) for r in rows] == [
        ("CNN softmax (dense_2)", "image"),
        ("dt", "codes"),
        ("dt", "pixels"),
    ]
    cnn, codes, pixels = (r["test_acc"] for r in rows)
    # a CNN trained on 2,000 images: its code vectors carry the classes (a tree on them is far above
    # chance and close to the CNN), and they beat the same tree on raw pixels
    assert cnn > 0.9 and codes > 0.8 and codes > pixels > 0.5
    assert rows[1]["study_acc"] == 0.9846 and rows[1]["diff"] == pytest.approx(codes - 0.9846)
    assert (out / "interpreters.md").read_text().count("\n") == 2 + len(rows)
    assert [p["h"] for p in results["probes"]] == list(range(1, 13))
    probe_accs = [p["test_acc"] for p in results["probes"]]
    assert (
        probe_accs[-1] > 0.8 and probe_accs[9] > probe_accs[0]
    )  # the code vector is more separable than conv2d_1
    assert probe_accs[2] == probe_accs[3]  # dropout in eval mode changes nothing
    assert (out / "probes.png").is_file() and (out / "interpreters.png").is_file()
    # the probes are cached per CNN and samples: a second run reads them, the same numbers
    with caplog.at_level(logging.INFO, logger="mnist_probe"):
        again = run(
            make_cfg(
                tmp_path / "again",
                "+experiment=interpreters",
                *SMALL_TRAIN,
                "interpreters.models=[dt]",
                "interpreters.probes.train_samples=200",
                "interpreters.probes.test_samples=200",
                cache=Path(trained_cfg.paths.cache),
            )
        )
    assert again["probes"] == results["probes"]
    assert "linear probes from the cache" in caplog.text


def test_sweep_summary_collects_every_job(tmp_path):
    for job in range(3):
        (tmp_path / str(job)).mkdir()
        rows = [{"model": "CNN", "p_true": 0.5 + job / 10}, {"model": "rf", "p_true": 0.1}]
        (tmp_path / str(job) / "results.json").write_text(
            json.dumps({"overrides": f"shift.dy={-job}", "rows": rows})
        )
    rows = summarize_sweep(tmp_path)
    assert len(rows) == 6 and {r["overrides"] for r in rows} == {"shift.dy=0", "shift.dy=-1", "shift.dy=-2"}
    page = (tmp_path / "summary.md").read_text()
    assert page.count("shift.dy=-2") == 2 and "the 3 jobs' results" in page
    assert "| 2 | shift.dy=-2 | rf | 0.1 |" in page
    (tmp_path / "summary.md").unlink()  # the page is its results file rendered, and nothing else
    assert render(tmp_path / "summary.json").read_text() == page


def test_xgboost_is_cached_as_json_not_pickle(trained):
    cfg, cnn = trained
    gb = interpreter_spec(cfg, "gb")
    settings = dataclasses.replace(gb, estimator={**gb.estimator, "n_estimators": 5}, train_samples=1000)
    first, meta = fitted_interpreter(cfg, settings, cnn)
    entry = Path(cfg.paths.cache) / f"interp-gb-{meta['key']}"
    assert sorted(p.name for p in entry.iterdir()) == ["meta.json", "model.json"]
    assert "learner" in json.loads((entry / "model.json").read_text())  # xgboost's own format
    second, meta = fitted_interpreter(cfg, settings, cnn)
    assert meta["cached"]
    xt, _ = features(cfg, "codes", "scored", cnn)
    assert np.allclose(first[-1].predict_proba(xt[:200]), second[-1].predict_proba(xt[:200]))


def test_a_forest_fitted_with_a_progress_bar_is_the_forest_fitted_at_once():
    from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier

    from mnist_probe.interpretation import fit_timed

    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 12))
    y = (x[:, 0] + 0.5 * rng.normal(size=400) > 0).astype(int)
    for kind in (RandomForestClassifier, ExtraTreesClassifier):
        once = kind(n_estimators=37, random_state=0).fit(x, y)
        chunked = kind(n_estimators=37, random_state=0)
        fit_timed(chunked, x, y)  # 20 chunks of 2 trees, warm-started, behind a tqdm bar
        assert chunked.n_estimators == 37 and chunked.warm_start is False  # the user's params back
        assert len(chunked.estimators_) == 37
        assert all(
            np.array_equal(a.tree_.threshold, b.tree_.threshold)
            for a, b in zip(once.estimators_, chunked.estimators_, strict=True)
        )
        assert np.array_equal(once.predict_proba(x), chunked.predict_proba(x))


def test_a_kernel_svm_sees_as_many_images_as_its_budget_allows_at_the_share_kept_as_support_vectors(tmp_path):
    """Separable codes keep few support vectors and are fitted whole; codes with no class structure
    (a model early in training) keep most, and the budget cuts the images to what it pays for."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 6000)
    separable = np.eye(10)[labels] * 10 + rng.normal(size=(6000, 10)) * 0.1
    noise = rng.normal(size=(6000, 10))
    cfg = make_cfg(tmp_path, "+experiment=interpreters")
    calibrated = instantiate(cfg.interpreters.catalog.svm.estimator)
    budget = 5e7
    n, share = interpreters.images_within_budget(calibrated, separable, labels, budget)
    assert n == 6000 and share < 0.1
    n, share = interpreters.images_within_budget(calibrated, noise, labels, budget)
    assert share > 0.8 and n == int((budget / (share * 10)) ** 0.5) < 6000
    assert interpreters.images_within_budget(calibrated, noise, labels, None) == (6000, None)
    forest = DecisionTreeClassifier()
    assert interpreters.images_within_budget(forest, noise, labels, budget) == (6000, None)
    assert interpreter_spec(cfg, "svm").budget == cfg.interpreters.catalog.svm.budget > 0
    with pytest.raises(UserError, match=r"^interpreters\.catalog\.svm\.budget=-1 is not allowed"):
        typed(make_cfg(tmp_path, "interpreters.catalog.svm.budget=-1"))


def test_probes_record_layers_in_groups_that_fit_the_memory_and_give_the_same_numbers(monkeypatch):
    import torch

    from mnist_probe.keras_cnn import KerasCNN

    torch.manual_seed(0)
    model = KerasCNN(filters=4).eval()
    images, labels = split_tensors(DataSpec(root=mnist_root(), test_subset=300), "scored")
    x, y = images.float()[:, None] / 255, labels.numpy()
    names = interpreters.resolve_layers(model, "all")
    limit = 300 * 4 * 4 * 28 * 28  # conv2d_1's activations of the 300 images: it fills a group alone
    groups = probes.layer_groups(model, x, names, limit)
    assert [n for g in groups for n in g] == names and groups[0] == ["conv2d_1"] and len(groups) < len(names)
    sizes = {n: a[0].numel() * 4 * len(x) for n, a in probes.record(model, x[:1], names).items()}
    assert all(sum(sizes[n] for n in g) <= limit or len(g) == 1 for g in groups)
    together = probes.linear_probes(model, x[:200], y[:200], x[200:], y[200:])
    monkeypatch.setattr(probes, "PROBE_BYTES", 1)  # every layer a group of its own
    alone = probes.linear_probes(model, x[:200], y[:200], x[200:], y[200:])
    assert [(r.layer, r.dims, r.test_acc) for r in together] == [(r.layer, r.dims, r.test_acc) for r in alone]
