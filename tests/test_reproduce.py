import json
import re
from pathlib import Path

import pytest

from mnist_probe.levers import levers
from mnist_probe.pages.page_results import AugmentRow
from mnist_probe.pages.render import render
from mnist_probe.pages.report import training_time
from mnist_probe.pages.verdicts import loss_verdict
from mnist_probe.run import run
from mnist_probe.stages.results import (
    ActivationsResult,
    InterpretersResult,
    ShiftResult,
    TrainingPart,
    TrainResult,
    from_json,
    to_json,
)
from mnist_probe.stages.sweep import summarize_sweep
from mnist_probe.study import SHIFT_TABLE, comparable
from tests.builders import curve, loss_row, train_result
from tests.conftest import make_cfg

SMALL = [
    "+experiment=reproduce",
    "data.train_subset=500",
    "data.test_subset=300",
    "data.val_size=500",
    "train.epochs=1",
    "+model.filters=16",
    "train.batch_size=64",
    "interpreters.models=[dt,dt@pixels]",
    "interpreters.probes.train_samples=300",
    "interpreters.probes.test_samples=100",
    "shift.models=[dt,dt@pixels]",
    "shift.dataset.samples=20",
    "reproduce.augment.shifts=[0.0]",
    "interpreters.probes.enabled=false",
    "beyond.images=100",
    "beyond.position_images=100",
    "beyond.attribution_samples=10",
    "beyond.randomisation_draws=2",
    "beyond.maximise_steps=5",
    "beyond.methods=[saliency,grad_cam]",
    "beyond.shuffled_images=100",
    "beyond.shuffled_epochs=2",
    "+reproduce.augment.train_overrides.epochs=2",
    "+reproduce.augment.train_overrides.batch_size=64",
    "+reproduce.augment.model_overrides.filters=16",
]


def seeds_sweep(sweep: Path) -> Path:
    """A seeds sweep's summary, from two jobs' headlines (what `make seeds` leaves)."""
    for job, acc in enumerate([0.9931, 0.9957]):
        (sweep / str(job)).mkdir(parents=True)
        (sweep / str(job) / "results.json").write_text(
            json.dumps(
                {
                    "seed": job,
                    "headline": {"cnn_test_acc": acc, "svm@codes_acc": 0.9950},
                    "overrides": f"+experiment=seeds seed={job}",
                    "study": comparable(True, True),
                }
            )
        )
    summarize_sweep(sweep)
    return sweep / "seeds.json"


@pytest.mark.slow  # the whole study, shrunk, with its sweeps: a minute and a half; report.md's tests stay
def test_reproduce_writes_a_report_from_its_own_results(tmp_path):
    seeds = seeds_sweep(tmp_path / "seeds")
    cfg = make_cfg(
        tmp_path,
        *SMALL,
        f"reproduce.docs={tmp_path / 'docs'}",
        f"reproduce.seeds={seeds}",
    )
    assert cfg.train.epochs == 1 and cfg.train.scheduler.monitor == "val_acc"  # the study's recipe
    results = run(cfg)
    report = (tmp_path / "docs" / "RESULTS.md").read_text()
    # the page renders again from the results file beside it alone: the same page
    assert render(tmp_path / "docs" / "RESULTS.json") == tmp_path / "docs" / "RESULTS.md"
    assert (tmp_path / "docs" / "RESULTS.md").read_text() == report
    out = Path(cfg.paths.output_dir)
    train = json.loads((out / "train" / "results.json").read_text())
    assert (
        f"| test accuracy ({train['test_images']:,} MNIST test images) | {100 * train['test_acc']:.2f}% |"
        in report
    )
    sure = train["confidence"]  # cross-entropy of the same test images, and the CNN's largest logit
    assert sure["cross_entropy"] == pytest.approx(train["test_loss"], rel=1e-4)  # the same test images
    assert f"| {sure['cross_entropy']:.3f} ({100 * sure['error_share_of_loss']:.2f}% from " in report
    # every figure the report shows exists; the five feature-map layers are among them
    links = re.findall(r"\]\((figures/[^)]+)\)", report)
    assert len(links) >= 15 and all((tmp_path / "docs" / link).is_file() for link in links)
    for layer in ("conv2d_1", "conv2d_2", "conv2d_3", "conv2d_4", "dropout_2"):
        assert f"figures/feature_maps_{layer}.png" in links
    # the study's shift table beside ours, the costs' page linked (not copied), four checked conclusions
    assert SHIFT_TABLE["CNN+svm"][4] in report and "[PERFORMANCE.md](PERFORMANCE.md)" in report
    assert "| hook overhead |" not in report
    verdicts = re.findall(r"^\*\*\d\. .*\*\* — \*(.+?)\.\*", report, flags=re.M)
    assert verdicts == [c["verdict"] for c in results["conclusions"]]  # each logic: test_conclusions.py
    assert len(verdicts) == 4
    assert "nan" not in report.lower().replace("nanmean", "") and "None" not in report
    # the seeds sweep's spread beside the study's figures, and its figure
    assert "## Seeds: 2 seeds (0, 1)" in report and "figures/seeds.png" in links
    assert "(`python -m mnist_probe.run +experiment=seeds seed=0,1`)" in report
    # mean, std, the t interval of the mean over two seeds (wide: one degree of freedom), min, max
    row = "| cnn_test_acc | 2 | 0.9944 | 0.001838 | 0.9779 | 1.011 | 0.9931 | 0.9957 | 0.993 | no |"
    assert row in report
    assert "outside: cnn_test_acc, svm@codes_acc." in report
    # the study's recipe trains with the clipped Keras loss; again with PyTorch's cross-entropy: its
    # own CNN, in the loss table after the main one
    other = json.loads((out / "losses" / "loss=cross_entropy" / "results.json").read_text())
    assert other["key"] != train["key"] and not (out / "losses" / "loss=clipped").exists()
    assert "### Does the loss decide how sure it gets?" in report
    rows = [line for line in report.splitlines() if line.startswith(("| clipped |", "| cross_entropy |"))]
    assert rows[0].startswith("| clipped |") and rows[1].startswith("| cross_entropy |")
    assert f"| cross_entropy | {other['test_acc']:.4g} | {other['confidence']['errors']} |" in report
    assert "figures/calibration_loss=cross_entropy.png" in links
    # the CNN through a Keras 2 weights file and back, as checkpoint=model.h5 would read it
    assert "### Your own Keras weights" in report and (out / "keras" / "model.h5").is_file()
    n = train["test_images"]
    assert f"the same top-1 class on {n:,} of {n:,} test images" in report
    # what TensorBoard holds, read back from the run's event files: the shift scrub among it
    scrub = r"^\| shift_scrub \| images \| \d+ \| \d+ \| shift/tb/shift \| 0\.\.5 \|$"
    assert re.search(scrub, report, flags=re.M)
    # every digit: the study's test on each digit's first image, per-class accuracy, confusions
    assert "### Every digit, not one" in report and "figures/shift_every_digit.png" in links
    assert "figures/shift_per_class.png" in links and "most frequent (true → predicted: images)" in report
    # architecture vs augmentation: one CNN per model, each through the shift stage
    for model in ("keras_cnn", "keras_cnn_aa"):
        aug = json.loads((out / "augment" / f"model={model}.shift=0.0" / "results.json").read_text())
        assert aug["models"] == ["CNN"]
    assert "| model keras_cnn → keras_cnn_aa | shift 0.0 |" in report
    # each sweep CNN's position and class probes; the reference (keras_cnn at the one shift) against
    # the same recipe with another seed and against anti-aliased pooling; its train/val gap
    assert "#### How much position each layer keeps, by architecture and augmentation" in report
    assert re.search(r"^\| keras_cnn_aa, shift 0\.0 \| 0\.\d{3} \|", report, flags=re.M)
    assert "figures/augment_positions.png" in links and "figures/augment_cka_vs_keras_cnn_aa.png" in links
    assert "CKA between the same layer of keras_cnn, seed 42 and seed 43: conv2d_1 " in report
    assert "CKA between the same layer of keras_cnn, shift 0.0 and keras_cnn_aa: conv2d_1 " in report
    gap = "### Why validation accuracy exceeds training accuracy:"
    assert f"{gap} the default recipe (keras_cnn, shift 0.0)" in report
    assert f"{gap} the study's recipe" in report
    assert "figures/gap_default.png" in links
    # every stage's results.json reads back into its type, field for field
    for stage, cls in (
        ("train", TrainResult),
        ("activations", ActivationsResult),
        ("interpreters", InterpretersResult),
        ("shift", ShiftResult),
    ):
        saved = json.loads((out / stage / "results.json").read_text())
        typed = from_json(cls, saved)
        assert json.loads(json.dumps(to_json(typed))) == {k: saved[k] for k in to_json(typed)}
    assert from_json(ShiftResult, saved).curves["CNN"].at(0) == saved["curves"]["CNN"]["accs"][5]


def test_levers_are_differences_of_the_sweep_rows():
    def row(model, shift, consistency, flips, acc):
        return AugmentRow(model, shift, 0.99, curve({}), acc, consistency, flips)

    rows = [
        row("max", 0.0, 0.30, 0.20, 0.45),
        row("max", 0.1, 0.70, 0.10, 0.80),
        row("aa", 0.0, 0.35, 0.17, 0.50),
        row("aa", 0.1, 0.72, 0.08, 0.81),
    ]
    got = {(r.lever, r.held_fixed): r for r in levers(rows)}
    assert set(got) == {
        ("model max → aa", "shift 0.0"),
        ("model max → aa", "shift 0.1"),
        ("augment.shift 0 → 0.1", "model max"),
        ("augment.shift 0 → 0.1", "model aa"),
    }
    assert got["model max → aa", "shift 0.0"].consistency == 5.0
    assert got["model max → aa", "shift 0.1"].change_1px == -2.0
    assert got["augment.shift 0 → 0.1", "model max"].acc_grid_mean == 35.0
    assert {r.kind for r in got.values()} == {"model", "augment"}
    assert levers(rows[:2]) == [got["augment.shift 0 → 0.1", "model max"]]  # one model: no architecture row


def test_the_loss_verdict_follows_the_numbers():
    assert loss_verdict([loss_row("cross_entropy", 8268, 0.352), loss_row("clipped", 40, 0.03)]).startswith(
        "The clipped loss keeps the CNN less sure: largest logit size 8,268 with cross_entropy against 40"
    )
    assert loss_verdict([loss_row("cross_entropy", 30, 0.023), loss_row("clipped", 26, 0.028)]).startswith(
        "The loss makes little difference"
    )
    assert "it is the surer one" in loss_verdict(
        [loss_row("cross_entropy", 20, 0.02), loss_row("clipped", 90, 0.05)]
    )
    assert loss_verdict([loss_row("cross_entropy", 30, 0.02)]) == ""
    said = loss_verdict(
        [loss_row("cross_entropy", 8268, 0.352, stuck=0), loss_row("clipped", 40, 0.03, stuck=5)]
    )
    assert said.endswith("where the clipped loss gives no gradient, 0 of 7 against 5 of 7.")
    unknown = loss_verdict([loss_row("cross_entropy", 30, 0.02, stuck=None), loss_row("clipped", 26, 0.03)])
    assert "no gradient" not in unknown  # a results file from before the count says nothing of it


def test_training_time_says_what_a_resumed_run_did_not_time():
    whole = training_time(train_result(train_seconds=474.0, epochs=3, cached=False))
    assert whole == "; training the CNN took 7.9 min (in this run)"
    timed = training_time(train_result(train_seconds=600.0, epochs=30, resumed_after_epochs=4))
    assert "10.0 min" in timed and "interruption after epoch 4" in timed
    text = training_time(
        train_result(train_seconds=600.0, epochs=30, resumed_after_epochs=13, untimed_epochs=13, cached=True)
    )
    assert "10.0 min" in text and "epochs 14-30 only" in text and "first 13" in text and "cached" in text
    assert training_time(train_result(train_seconds=None, epochs=30)) == ""  # a user's checkpoint


def test_training_time_names_each_run_of_a_resumed_training_and_its_machine():
    parts = [
        TrainingPart(None, 1, 7, 2400.0),
        TrainingPart("cpu: CPU A (2 cores)", 7, 23, 6000.0),
        TrainingPart("cuda: GPU B", 24, 30, 120.0),
    ]
    resumed = train_result(train_seconds=8520.0, epochs=30, resumed_after_epochs=23, cached=True, parts=parts)
    text = training_time(resumed)
    assert training_time(from_json(TrainResult, to_json(resumed))) == text  # as RESULTS.json renders it
    assert text.startswith("; training the CNN took 142.0 min (cached from an earlier run), in 3 runs: ")
    said = text.split("in 3 runs: ")[1].split("; ")
    assert said == [
        "epochs 1-7 on a machine not recorded (40.0 min)",
        "epochs 7-23 on CPU A (2 cores) (100.0 min)",
        "epochs 24-30 on GPU B (2.0 min)",
    ]
    one = training_time(train_result(train_seconds=60.0, cached=True, trained_on="cuda: X", parts=parts[2:]))
    assert one == "; training the CNN took 1.0 min (cached from an earlier run, on X)"
