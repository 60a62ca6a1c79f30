import csv
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mnist_probe import UserError
from mnist_probe.run import run
from mnist_probe.translation import (
    change_1px,
    confusions,
    consistency,
    dataset_metrics,
    per_class_accuracy,
    shift_pairs,
    shifted_stack,
    study_cell,
    translate,
)
from tests.conftest import REPO, SMALL_TRAIN, make_cfg, mnist_root


def blob(cy: int = 14, cx: int = 14) -> torch.Tensor:
    """A hand-made 1×1×28×28 image: a 5×3 bar centred at (cy, cx)."""
    img = torch.zeros(1, 1, 28, 28)
    img[..., cy - 2 : cy + 3, cx - 1 : cx + 2] = 1.0
    return img


def centre_of_mass(img: torch.Tensor) -> tuple[float, float]:
    grid = torch.arange(28.0)
    m = img.squeeze()
    return float((m.sum(0) * grid).sum() / m.sum()), float((m.sum(1) * grid).sum() / m.sum())


def test_zero_shift_is_identity():
    x = torch.rand(3, 1, 28, 28)
    assert torch.equal(translate(x, 0, 0), x)


@pytest.mark.parametrize("dx, dy", [(3, -4), (-5, 0), (0, 7), (-2, 2)])
def test_shift_back_restores_pixels_that_stayed_inside(dx, dy):
    x = torch.rand(2, 1, 28, 28)
    back = translate(translate(x, dx, dy), -dx, -dy)
    stayed = translate(translate(torch.ones_like(x), dx, dy), -dx, -dy).bool()
    assert torch.equal(back[stayed], x[stayed])
    assert int((~stayed[0, 0]).sum()) == 28 * 28 - (28 - abs(dx)) * (28 - abs(dy))
    assert back[~stayed].abs().sum() == 0  # zero fill, no wrap-around


@pytest.mark.parametrize("dx, dy", [(3, -4), (-5, 0), (0, -5), (6, 6)])
def test_centre_of_mass_moves_by_the_shift(dx, dy):
    x0, y0 = centre_of_mass(blob())
    x1, y1 = centre_of_mass(translate(blob(), dx, dy))
    assert (x1 - x0, y1 - y0) == pytest.approx((dx, dy))  # dy < 0 moves the digit up


def test_too_large_or_empty_shifts_refused():
    with pytest.raises(UserError, match="28"):
        translate(blob(), 0, -28)
    for dxs, dys in (([0], [28]), ([-30], [0]), ([], [0])):
        with pytest.raises(UserError, match="shift"):
            shift_pairs(dxs, dys)


def test_shift_pairs_broadcast_zip_and_grid():
    assert shift_pairs([0], [0, -1, -2]) == [(0, 0), (0, -1), (0, -2)]
    assert shift_pairs([0], [-3]) == [(0, -3)]
    assert shift_pairs([1, 2], [3, 4]) == [(1, 3), (2, 4)]
    assert shift_pairs([1, 2], [3, 4], grid=True) == [(1, 3), (1, 4), (2, 3), (2, 4)]
    with pytest.raises(UserError, match="equal lengths"):
        shift_pairs([1, 2], [3, 4, 5])


def test_shifted_stack_is_shift_major():
    x = torch.rand(4, 1, 28, 28)
    stack = shifted_stack(x, [(0, 0), (1, 0)])
    assert stack.shape == (8, 1, 28, 28)
    assert torch.equal(stack[5], translate(x[1], 1, 0))


def test_study_cell_format():
    p = np.full(10, 0.0)
    p[1], p[7] = 0.0071, 0.9929
    assert study_cell(p, 1, 0.01) == "0.71% (7: 99.29%)"
    p[1], p[7] = 1.0, 0.0
    assert study_cell(p, 1, 0.01) == "100%"


def test_dataset_metrics_on_known_predictions():
    pairs = [(dx, dy) for dx in (-1, 0, 1) for dy in (-1, 0, 1)]
    labels = np.array([0, 1, 2, 3])
    preds = np.tile(labels, (9, 1))
    preds[pairs.index((1, 1))] = 9  # every image wrong at (1, 1) only
    m = dataset_metrics(pairs, preds, labels)
    assert m["accuracy"][pairs.index((0, 0))] == 1 and m["accuracy"][pairs.index((1, 1))] == 0
    # (1, 1) has 2 of the grid's 12 one-pixel neighbour pairs
    assert m["change_1px"] == pytest.approx(2 / 12)
    assert 0.6 < m["consistency"] < 0.9  # ideal 1 - 2·(8/81)
    assert m["consistency"] == consistency(preds) and m["change_1px"] == change_1px(pairs, preds)
    assert consistency(np.tile(labels, (9, 1))) == 1.0 and change_1px(pairs, np.tile(labels, (9, 1))) == 0.0


def test_per_class_accuracy_and_confusions_on_known_predictions():
    pairs = [(0, 0), (0, -1)]
    labels = np.array([7, 7, 7, 1, 1, 4])
    preds = np.array(
        [
            [7, 7, 7, 1, 1, 4],  # unshifted: all right
            [1, 1, 7, 1, 7, 9],
        ]
    )  # 1 px up: two 7s read as 1, a 1 as 7, the 4 as 9
    acc = per_class_accuracy(pairs, preds, labels, [(0, 0), (0, -1)])
    assert acc.shape == (10, 2) and np.isnan(acc[0, 0])  # no 0 in the sample
    assert acc[7].tolist() == [1.0, 1 / 3] and acc[1].tolist() == [1.0, 0.5] and acc[4].tolist() == [1.0, 0.0]
    assert confusions(pairs, preds, labels, (0, -1)) == [(7, 1, 2), (1, 7, 1), (4, 9, 1)]  # most first
    assert confusions(pairs, preds, labels, (0, 0)) == []


def test_shift_stage_table_has_a_row_per_model_and_a_column_per_shift(small_run, tmp_path):
    trained_cfg, _ = small_run
    cfg = make_cfg(
        tmp_path,
        "+experiment=shift",
        *SMALL_TRAIN,
        "shift.models=[dt,dt@pixels]",
        "shift.dy=[0,-2,-4]",
        "shift.dataset.samples=40",
        "shift.dataset.radius=2",
        cache=Path(trained_cfg.paths.cache),
    )
    results = run(cfg)
    out = Path(cfg.paths.output_dir)
    with open(out / "shift_table.csv") as f:
        table = list(csv.DictReader(f))
    assert [r["model"] for r in table] == ["CNN", "CNN+dt", "dt (pixels)"]
    assert list(table[0]) == ["model", "dy=0", "dy=-2", "dy=-4"]
    assert results["digit"] == 1 and results["code_layer"] == "dense_1"
    assert results["cosines"]["dense_1"][0] == pytest.approx(1.0, abs=1e-5)  # the unshifted image
    dataset = {r["model"]: r for r in results["dataset"]}
    assert list(dataset) == ["CNN", "CNN+dt", "dt (pixels)"]
    # what the study found, on 40 images and ±2 px: the CNN is more shift-consistent than a tree on
    # raw pixels, changes its mind less under 1-px shifts, and is near its test accuracy unshifted
    assert dataset["CNN"]["consistency"] > dataset["dt (pixels)"]["consistency"] + 0.1
    assert dataset["CNN"]["change_1px"] < dataset["dt (pixels)"]["change_1px"]
    assert dataset["CNN"]["acc_unshifted"] > 0.85
    table_p = [float(c.split("%")[0]) for c in list(table[0].values())[1:]]
    probs = [r["p_true"] for r in results["rows"] if r["model"] == "CNN"]
    assert table_p == pytest.approx([100 * p for p in probs], rel=1e-3)  # the table shows P(true)
    # every digit, not one: the first test image of each, and per-class accuracy over the sample
    assert [r["digit"] for r in results["every_digit"]] == [str(d) for d in range(10)]
    assert [r["test index"] for r in results["every_digit"]][:2] == [3, 2]  # test #3 is the first 0
    assert list(results["every_digit"][0])[2:] == ["dy=0", "dy=-2", "dy=-4"]  # the run's shifts, as above
    per_class = np.array(results["per_class"]["accuracy"])
    assert per_class.shape == (10, 5) and results["per_class"]["dys"] == [2, 1, 0, -1, -2]
    assert np.nanmean(per_class[:, 2]) > 0.8  # unshifted, most digits right
    assert [r["dy"] for r in results["confusions"]] == [2, 1, 0, -1, -2]
    # TensorBoard's step slider scrubs the translation: one image per shift, for the input and each layer
    events = EventAccumulator(str(out / "tb" / "shift"), size_guidance={"images": 0})
    events.Reload()
    for tag in ("shift_scrub/input", "shift_scrub/conv2d_2", "shift_scrub/dropout_2"):
        assert [e.step for e in events.Images(tag)] == [0, 1, 2], tag
    figures = (
        "shift_every_digit",
        "shift_per_class",
        "shift_probability",
        "shift_strip",
        "shift_deformation",
        "shift_heatmap",
    )
    for name in figures:
        assert (out / f"{name}.png").is_file()


def test_sweep_over_shifts_and_interpreters_trains_the_cnn_once(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "mnist_probe.run",
        "-m",
        "+experiment=shift",
        "shift.dy=0,-2",
        "interpreter=dt,knn",
        f"data.root={mnist_root()}",
        "data.train_subset=500",
        "data.test_subset=200",
        "train.epochs=1",
        "train.batch_size=50",
        "data.val_size=500",
        "+model.filters=16",
        "trainer.progress_bar=false",
        "shift.dataset.samples=20",
        "shift.dataset.radius=1",
        f"paths.cache={tmp_path / 'cache'}",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
    ]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    log = proc.stdout + proc.stderr
    assert log.count("training CNN") == 1
    assert len(list((tmp_path / "cache").glob("cnn-*/model.pt"))) == 1
    summary = (tmp_path / "sweep" / "summary.md").read_text()
    for job in ("shift.dy=0 interpreter=dt", "shift.dy=-2 interpreter=knn"):
        assert job in summary
    assert summary.count("CNN+knn") == 2 and summary.count("| CNN |") == 4
    # each job on TensorBoard's HParams dashboard: its overrides and headline metrics
    for job in (tmp_path / "sweep").glob("[0-9]*"):
        events = EventAccumulator(str(job / "tb" / "hparams"))
        events.Reload()
        content = b"".join(events.PluginTagToContent("hparams").values())
        assert b"shift.dy" in content and b"interpreter" in content, job
        assert b"hparam/CNN/consistency" in content


def test_the_shift_stage_names_classes_as_the_data_set_does(small_run, tmp_path):
    """The same images under other class names (the CNN's key does not change: the names are not its
    data): every table names classes by data.classes, and shift.target picks the image by name."""
    trained_cfg, _ = small_run
    names = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    cfg = make_cfg(
        tmp_path,
        "+experiment=shift",
        *SMALL_TRAIN,
        "shift.models=[]",
        f"data.classes=[{','.join(names)}]",
        "data.item=numeral",
        "shift.target=seven",
        "shift.min_other=0",
        "shift.dy=[0,-3]",
        "shift.dataset.samples=20",
        "shift.dataset.radius=1",
        cache=Path(trained_cfg.paths.cache),
    )
    results = run(cfg)
    out = Path(cfg.paths.output_dir)
    assert results["digit"] == 7 and results["classes"] == names
    with open(out / "shift_table.csv") as f:
        cells = [c for row in csv.DictReader(f) for k, c in row.items() if k != "model"]
    # min_other 0: every cell names the class that rose most, by its name
    others = "|".join(n for n in names if n != "seven")
    assert cells and all(re.search(rf"\(({others}): ", c) for c in cells), cells
    assert [r["numeral"] for r in results["every_digit"]] == names
    with open(out / "shift_per_class.csv") as f:
        assert [r["numeral"] for r in csv.DictReader(f)] == names
    confusions = " ".join(r["most frequent (true → predicted: images)"] for r in results["confusions"])
    assert not re.search(r"\b\d → \d\b", confusions)  # names, not indices
