"""Typed stage results with every number chosen by the test (the rest plausible defaults): what the
verdict, headline and report tests are fed instead of a training."""

from __future__ import annotations

from mnist_probe.pages.page_results import AugmentResult, AugmentRow, LossRow, PageResults, Setting
from mnist_probe.stages.results import (
    ActivationsResult,
    AttributionCurve,
    BeyondResult,
    Calibration,
    Confidence,
    Curve,
    DatasetRow,
    GapRow,
    InterpreterRow,
    InterpretersResult,
    PositionRow,
    Scores,
    ShiftProb,
    ShiftResult,
    TrainResult,
)

DYS = list(range(-5, 6))


def train_result(test_acc=0.99, cross_entropy=0.03, ece=0.004, **fields) -> TrainResult:
    scores = Scores(ece=ece, nll=cross_entropy, brier=0.02, accuracy=test_acc)
    return TrainResult(
        **{
            "key": "k",
            "test_acc": test_acc,
            "test_images": 10_000,
            "checkpoint": "model.pt",
            "cached": False,
            "confidence": Confidence(cross_entropy, 100, 0.5, 2.0, 30.0),
            "calibration": Calibration(1.5, scores, scores, 15),
            "train_seconds": 60.0,
            "epochs": 3,
            **fields,
        }
    )


def row(name: str, features: str, acc: float) -> InterpreterRow:
    return InterpreterRow(name, features, acc, None, None, 1.0, 0.1)


def interpreters_result(rows: list[InterpreterRow], cnn_acc: float = 0.99) -> InterpretersResult:
    return InterpretersResult("k", row("CNN softmax (dense_2)", "image", cnn_acc), rows)


def curve(at: dict[int, float], rest: float = 0.99) -> Curve:
    return Curve(DYS, [at.get(d, rest) for d in DYS])


def shift_result(
    p_true=(1.0, 1.0, 0.99, 0.98, 0.01, 0.0),
    cnn_dy4=0.6,
    change=0.08,
    cos_code=0.9,
    cos_maps=0.4,
    consistency=0.9,
    others=(),
) -> ShiftResult:
    """The study's digit shifted dy = 0..-5 with P(true) p_true; the CNN's curve and grid metrics;
    others: (model, p_true at dy=-4) rows of interpreters."""
    pairs = [(0, -k) for k in range(6)]
    rows = [ShiftProb("CNN", dx, dy, p, 3, 1 - p) for (dx, dy), p in zip(pairs, p_true, strict=True)]
    rows += [ShiftProb(model, 0, -4, p, 3, 1 - p) for model, p in others]
    return ShiftResult(
        cnn_key="k",
        cnn_test_acc=0.99,
        models=["CNN", *(m for m, _ in others)],
        index=2,
        digit=1,
        pairs=pairs,
        columns=[f"(0, {dy})" for _, dy in pairs],
        table=[],
        rows=rows,
        cosines={"conv2d_2": [1.0] + [cos_maps] * 5, "dense_1": [1.0] + [cos_code] * 5},
        code_layer="dense_1",
        every_digit=[],
        dataset=[DatasetRow("CNN", 0.99, 0.9, consistency, change)],
        curves={"CNN": curve({-4: cnn_dy4})},
        samples=1000,
    )


def augment_result(unaug_dy4=0.5, unaug_change=0.15, aug_dy4=0.6, aug_change=0.02) -> AugmentResult:
    """The sweep's first model trained without random shifts and with them (the like-for-like pair)."""
    unaug = AugmentRow("keras_cnn", 0.0, 0.99, curve({-4: unaug_dy4}), 0.6, 0.5, unaug_change)
    aug = AugmentRow("keras_cnn", 0.1, 0.99, curve({-4: aug_dy4}), 0.8, 0.7, aug_change)
    return AugmentResult("default", [unaug, aug], [])


# The study's CNN on MNIST, as make reproduce's page says it (tests that need the config's own: page_setting).
STUDY_SETTING = Setting("MNIST", "digit", True, {}, [1, 28, 28], "the study's recipe", 2.8, None, 0.1, 2)


def study_results(
    codes=0.99,
    pixels=0.96,
    cnn=0.99,
    cnn_dy4=0.6,
    unaug_dy4=0.5,
    change=0.08,
    unaug_change=0.15,
    aug_dy4=0.6,
    aug_change=0.02,
    p_true=(1.0, 1.0, 0.99, 0.98, 0.01, 0.0),
    cos_code=0.9,
    cos_maps=0.4,
    setting: Setting | None = None,
) -> PageResults:
    """A reproduce run's results, every number the verdicts read chosen by the caller."""
    return PageResults(
        train=train_result(test_acc=cnn),
        activations=ActivationsResult("k", cnn, [3], ["conv2d_1"], 1, 1000, 0.88, 0.34, 2.6),
        interpreters=interpreters_result(
            [row("svm", "codes", codes), row("dt", "codes", codes - 0.005), row("rf", "pixels", pixels)], cnn
        ),
        shift=shift_result(p_true, cnn_dy4, change, cos_code, cos_maps),
        augment=augment_result(unaug_dy4, unaug_change, aug_dy4, aug_change),
        losses=[],
        keras_file=None,
        seeds=None,
        seconds=1.0,
        setting=setting or STUDY_SETTING,
    )


def loss_row(loss: str, logit: float, ce: float, acc: float = 0.993, stuck: int | None = 3) -> LossRow:
    return LossRow(loss, acc, 7, stuck, ce, logit, 0.01, 0.005, 1.2, 30, "k")


def gap_row(epoch: int, running: float, train: float, eval_: float, clean: float, val: float) -> GapRow:
    return GapRow(
        epoch,
        running,
        train,
        eval_,
        clean,
        val,
        val - running,
        train - running,
        eval_ - train,
        clean - eval_,
        val - clean,
    )


def beyond_result(
    consistency_last=0.9, code_position=0.05, first_position=0.9, code_cka=0.95, conv_cka=0.6
) -> BeyondResult:
    """Attributions that move with the digit (or not), position probes from conv2d_1 to dense_1, and
    CKA under the study's shifts with the code layer's and a conv layer's last values chosen."""
    dys = [0, -1, -2, -3, -4, -5]
    attributions = [AttributionCurve("saliency", dys, [1.0, 0.97, 0.95, 0.93, 0.91, consistency_last])]
    positions = [
        PositionRow("conv2d_1", 50176, first_position, 0.3, 0.9, 1 / 25),
        PositionRow("dense_1", 256, code_position, 0.05, 0.99, 1 / 25),
    ]
    steps = [[1.0, 1.0]] + [[1 - k * (1 - conv_cka) / 5, 1 - k * (1 - code_cka) / 5] for k in range(1, 6)]
    layers = ["conv2d_2", "dense_1"]
    return BeyondResult("key", "dense_1", attributions, positions, ["conv2d_1"], layers, steps, dys)
