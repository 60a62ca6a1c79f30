"""The seeds stage's headline numbers and their spread over a sweep (seeds.md)."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from mnist_probe import study
from mnist_probe.intervals import seed_interval
from mnist_probe.pages.render import render
from mnist_probe.pages.sweep import read_seeds
from mnist_probe.stages.seeds import headline
from mnist_probe.stages.sweep import summarize_sweep
from mnist_probe.tables import spread
from tests.builders import interpreters_result, row, shift_result, train_result
from tests.conftest import REPO, mnist_root


def test_spread_is_each_numbers_mean_std_and_range():
    rng = np.random.default_rng(0)
    accs = rng.uniform(0.990, 0.996, size=5)
    rows = spread([{"cnn_test_acc": a, "x": 2 * a} for a in accs], {"cnn_test_acc": 0.993})
    acc = next(r for r in rows if r.metric == "cnn_test_acc")
    assert acc.n == 5 and acc.mean == pytest.approx(accs.mean())
    assert acc.std == pytest.approx(accs.std(ddof=1))
    assert (acc.min, acc.max) == (accs.min(), accs.max())
    half = 2.776 * accs.std(ddof=1) / np.sqrt(5)  # Student's t, 4 degrees of freedom, 97.5%
    assert (acc.ci_low, acc.ci_high) == pytest.approx((accs.mean() - half, accs.mean() + half), abs=1e-5)
    assert acc.study_minus_mean_in_std == pytest.approx((0.993 - accs.mean()) / accs.std(ddof=1))
    assert acc.study_inside_our_range == ("yes" if accs.min() <= 0.993 <= accs.max() else "no")
    x = next(r for r in rows if r.metric == "x")
    assert x.study is None and x.study_inside_our_range is None and x.mean == pytest.approx(2 * accs.mean())


def test_the_seed_interval_covers_the_true_mean_about_95_times_in_100():
    """Five seeds of a number spread N(0.993, 0.001): the interval of their mean covers 0.993 in
    about 95 of 100 simulated sweeps; a single seed gives none."""
    rng = np.random.default_rng(1)
    draws = (seed_interval(rng.normal(0.993, 0.001, 5)) for _ in range(400))
    covered = sum(lo <= 0.993 <= hi for lo, hi in draws)
    assert 360 <= covered <= 396  # 380 expected; about 2.2 standard deviations either side
    assert seed_interval(np.array([0.99])) is None


@pytest.mark.parametrize("ref, inside", [(0.9935, "yes"), (0.9990, "no"), (0.9900, "no")])
def test_the_study_figure_is_inside_or_outside_our_range(ref, inside):
    rows = spread([{"m": v} for v in (0.992, 0.994, 0.995)], {"m": ref})
    assert rows[0].study_inside_our_range == inside


def test_a_number_missing_from_some_seeds_counts_the_others():
    rows = spread([{"a": 1.0, "b": 2.0}, {"a": 3.0}], {})
    b = next(r for r in rows if r.metric == "b")
    assert b.n == 1 and b.mean == 2.0 and np.isnan(b.std)


def test_headline_takes_each_stage_s_numbers():
    trained = train_result(test_acc=0.99, cross_entropy=0.03, ece=0.004)
    interpreted = interpreters_result([row("svm", "codes", 0.98)], cnn_acc=0.99)
    shifted = shift_result(
        p_true=(1.0, 1.0, 0.99, 0.98, 0.2, 0.1), cnn_dy4=0.7, change=0.03, others=[("CNN+svm", 0.9)]
    )
    shifted.curves["CNN"].accs[0] = 0.5  # dy = -5
    h = headline(trained, interpreted, shifted)
    assert h == {
        "cnn_test_acc": 0.99,
        "cnn_cross_entropy": 0.03,
        "cnn_ece": 0.004,
        "svm@codes_acc": 0.98,
        "cnn_consistency": 0.9,
        "cnn_change_1px": 0.03,
        "cnn_acc_dy-3": 0.99,
        "cnn_acc_dy-4": 0.7,
        "cnn_acc_dy-5": 0.5,
        "cnn_digit_p_true_dy-3": 0.98,
        "cnn_digit_p_true_dy-4": 0.2,
        "cnn_digit_p_true_dy-5": 0.1,
        "CNN+svm_digit_p_true_dy-4": 0.9,
    }
    assert set(study.HEADLINE) >= {"cnn_test_acc", "svm@codes_acc", "cnn_digit_p_true_dy-4"}


def test_the_study_figures_of_every_shift_row_are_read_from_its_table():
    """The headline's references for the shift table are the table's own cells, as fractions."""
    assert study.HEADLINE["cnn_digit_p_true_dy-4"] == pytest.approx(0.0071)
    assert study.HEADLINE["cnn_digit_p_true_dy-5"] == pytest.approx(1.4e-6)
    assert study.HEADLINE["CNN+rf1000_digit_p_true_dy-3"] == pytest.approx(0.528)
    assert study.HEADLINE["svm (pixels)_digit_p_true_dy-2"] == pytest.approx(0.0085)
    assert study.SHIFT_JUMP == pytest.approx(0.994 - 0.0071)
    assert len([k for k in study.HEADLINE if "digit_p_true" in k]) == 6 * len(study.SHIFT_TABLE)


def seeds_sweep(tmp_path, comparable: dict) -> None:
    """Two seeds' results.json, as the seeds stage writes them, the study's figures `comparable`."""
    for job, (seed, acc) in enumerate([(1, 0.991), (2, 0.995)]):
        (tmp_path / str(job)).mkdir()
        (tmp_path / str(job) / "results.json").write_text(
            json.dumps(
                {
                    "stage": "seeds",
                    "seed": seed,
                    "headline": {"cnn_test_acc": acc, "cnn_consistency": 0.9},
                    "study": comparable,
                    "overrides": f"+experiment=seeds train=fast seed={seed}",
                }
            )
        )


def test_the_study_figures_a_run_can_be_set_beside():
    """None off MNIST; the shift table's only for the image the study shifted."""
    assert study.comparable(on_its_data=False, its_image=True) == {}
    mnist_other_image = study.comparable(on_its_data=True, its_image=False)
    assert mnist_other_image["cnn_test_acc"] == study.CNN_ACC
    assert not any("digit_p_true" in name for name in mnist_other_image)
    assert study.comparable(on_its_data=True, its_image=True) == study.HEADLINE


def test_the_study_s_table_sits_under_the_shifts_it_was_taken_at():
    """Another table's columns get the study's cell where it shifted by the same (dx, dy), else ''."""
    cells = study.table_cells([(0, 0), (0, -2), (1, -4), (0, -6), (0, -4)])
    assert cells["CNN"] == ["100%", "99.99%", "", "", "0.71% (7: 99.29%)"]
    assert set(cells) == set(study.SHIFT_TABLE)
    assert study.its_image(None, study.SHIFT_DIGIT) and not study.its_image(5, study.SHIFT_DIGIT)
    assert not study.its_image(None, 7)


def test_a_seeds_sweep_off_the_study_s_data_sets_no_study_figure_beside_it(tmp_path):
    seeds_sweep(tmp_path, study.comparable(on_its_data=False, its_image=True))
    summarize_sweep(tmp_path)
    rows = read_seeds(tmp_path / "seeds.json").rows
    assert [r.metric for r in rows] == ["cnn_test_acc", "cnn_consistency"]
    assert all(r.study is None and r.study_inside_our_range is None for r in rows)


def test_the_sweep_summary_of_a_seeds_sweep(tmp_path):
    seeds_sweep(tmp_path, study.comparable(on_its_data=True, its_image=True))
    summarize_sweep(tmp_path)
    saved = read_seeds(tmp_path / "seeds.json")
    assert saved.seeds == [1, 2] and len(saved.per_seed) == 2
    assert saved.overrides == "+experiment=seeds train=fast"  # what the spread belongs to, seed apart
    row = saved.rows[0]
    assert row.metric == "cnn_test_acc" and row.mean == pytest.approx(0.993)
    assert row.study == study.CNN_ACC and row.study_inside_our_range == "yes"
    page = (tmp_path / "seeds.md").read_text()
    assert "| cnn_test_acc | 2 |" in page and "Inside what our seeds span: cnn_test_acc" in page
    assert "![seeds](seeds.png)" in page and (tmp_path / "seeds.png").stat().st_size > 10_000
    (tmp_path / "seeds.md").unlink()  # the page is its results file rendered, and nothing else
    assert render(tmp_path / "seeds.json").read_text() == page


@pytest.mark.slow
def test_make_seeds_end_to_end_two_tiny_seeds(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "mnist_probe.run",
        "+experiment=seeds",
        "seed=1,2",
        "train.epochs=1",
        "data.train_subset=1000",
        "train.batch_size=32",
        "data.test_subset=300",
        "shift.dataset.samples=20",
        "trainer.progress_bar=false",
        f"data.root={mnist_root()}",
        f"paths.cache={tmp_path / 'cache'}",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
    ]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    saved = read_seeds(tmp_path / "sweep" / "seeds.json")
    assert saved.seeds == [1, 2]
    assert len(saved.per_seed) == 2
    names = {r.metric for r in saved.rows}
    assert {
        "cnn_test_acc",
        "nn@codes_acc",
        "svm@codes_acc",
        "rf@codes_acc",
        "gb@codes_acc",
        "dt@codes_acc",
        "cnn_consistency",
        "cnn_change_1px",
        "cnn_acc_dy-4",
    } <= names
    weights = [torch.load(p, weights_only=True) for p in sorted((tmp_path / "cache").glob("cnn-*/model.pt"))]
    assert len(weights) == 2  # two seeds, two CNNs, other weights (one epoch may score the same)
    assert any(not torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
