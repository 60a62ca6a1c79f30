"""What a page is written from: every stage's result of one CNN (PageResults: report.md, RESULTS.md),
the augmentation sweep and the losses of make reproduce, the Keras file's round trip, the conclusions
checked, and what the report and reproduce stages return."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mnist_probe import study
from mnist_probe.levers import Lever
from mnist_probe.rows import GapRow, PositionRow, TensorBoardRow
from mnist_probe.specs import KERAS_EPSILON
from mnist_probe.stages.results import (
    ActivationsResult,
    BeyondResult,
    Curve,
    InterpretersResult,
    SeedsSummary,
    ShiftResult,
    TrainResult,
)


@dataclass(frozen=True)
class AugmentRow:
    """One CNN of the architecture × augmentation sweep, through the shift stage."""

    model: str
    shift: float  # train.augment.shift
    test_acc: float
    curve: Curve
    acc_grid_mean: float
    consistency: float
    change_1px: float
    positions: list[PositionRow] = field(default_factory=list)  # its position and class probes per layer

    def label(self) -> str:
        return f"{self.model}, shift {self.shift}"

    def table_row(self, side: int, dys: tuple[int, ...] = study.TURNING_DY) -> dict[str, Any]:
        """As the report's table shows it (images `side` px wide): the accuracy at the shifts where the
        study's table turns."""
        return {
            "model": self.model,
            "train.augment.shift": self.shift,
            "max shift (px)": round(side * float(self.shift), 1),
            "test_acc": self.test_acc,
            **{f"acc_dy{dy}": self.curve.at(dy) for dy in dys if dy in self.curve.dys},
            "acc_grid_mean": self.acc_grid_mean,
            "consistency": self.consistency,
            "change_1px": self.change_1px,
        }


@dataclass(frozen=True)
class CkaPair:
    """Linear CKA between every layer of two CNNs (mnist_probe.cka.cka_between): rows are the first's."""

    name: str  # what the pair compares (seeds, pooling): its figure is cka_NAME.png
    first: str
    second: str
    rows: list[str]
    cols: list[str]
    matrix: list[list[float]]
    ci: list[list[list[float]]] | None = None  # each CKA's 95% interval (minibatches resampled)

    def same_layers(self) -> dict[str, float]:
        """CKA between the layers the two networks both have, by name, in the first's order."""
        return {r: self.matrix[i][self.cols.index(r)] for i, r in enumerate(self.rows) if r in self.cols}

    def same_layers_ci(self) -> dict[str, list[float] | None]:
        """Their 95% intervals, by name (None each where none was kept)."""
        return {
            r: self.ci[i][self.cols.index(r)] if self.ci else None
            for i, r in enumerate(self.rows)
            if r in self.cols
        }


@dataclass(frozen=True)
class AugmentResult:
    recipe: str
    rows: list[AugmentRow]
    levers: list[Lever]
    reference: AugmentRow | None = None  # the first model at the recipe's own augmentation
    gap: list[GapRow] | None = None  # the reference CNN's train/val gap per epoch
    cka: list[CkaPair] = field(default_factory=list)  # the reference against another seed, other pooling

    def unaugmented(self) -> AugmentRow | None:
        """The first CNN trained without shift augmentation."""
        return next((r for r in self.rows if r.shift == 0.0), None)

    def like_for_like(self) -> tuple[AugmentRow, AugmentRow] | None:
        """The first model of the sweep trained without random shifts and with the largest: the same
        network and recipe, only the augmentation differs (None where the sweep lacks either)."""
        without = self.unaugmented()
        if without is None:
            return None
        shifted = [r for r in self.rows if r.model == without.model and r.shift > 0]
        return (without, max(shifted, key=lambda r: r.shift)) if shifted else None


@dataclass(frozen=True)
class LossRow:
    """The study's recipe trained with one loss: how sure the CNN gets."""

    loss: str
    test_acc: float
    errors: int
    errors_below_epsilon: int | None  # Confidence's: errors the clipped loss gives no gradient
    cross_entropy: float
    max_abs_logit: float
    ece: float
    ece_after: float
    temperature: float
    epochs: int | None
    key: str

    def table_row(self) -> dict[str, Any]:
        return {
            "train.loss": self.loss,
            "test_acc": self.test_acc,
            "errors": self.errors,
            f"errors with P(true) < {KERAS_EPSILON:g}": self.errors_below_epsilon,
            "test cross-entropy": self.cross_entropy,
            "largest logit size": self.max_abs_logit,
            "ECE": self.ece,
            "ECE after T": self.ece_after,
            "T": self.temperature,
            "epochs": self.epochs,
        }


@dataclass(frozen=True)
class KerasRoundTrip:
    """The CNN through a Keras 2 weights file and back."""

    file: str
    megabytes: float
    images: int
    test_acc: float
    test_acc_from_keras_file: float
    same_top1: int
    max_abs_logit_diff: float


@dataclass(frozen=True)
class Conclusion:
    claim: str
    verdict: str
    text: str


@dataclass(frozen=True)
class Setting:
    """How the run was set up, as a page says it beside the results: taken from the config once, when
    the run saves its results (stages.adapters.page_setting), so that a page renders from results alone."""

    data: str  # the data set's name
    item: str  # what one image shows (a digit, a garment)
    study: bool  # the study's data and CNN (schema.Config.beside_study): its figures stand beside ours
    references: dict[str, float]  # the data set's reference CNNs' test accuracies
    shape: list[int]  # an image's channels, height, width
    recipe: str  # the training recipe in one line
    trained_shift_px: float  # the largest random shift in training, in pixels (0: none)
    shift_index: int | None  # shift.index as set (None: the first test image of the class shifted)
    min_other: float  # shift.min_other: another class is named when it gets this much
    radius: int  # shift.dataset.radius: the grid of shifts is ±radius px
    model: str = ""  # what was opened up, as a title names it: a checkpoint, else the class
    command: str = ""  # the command line that wrote the page
    date: str = ""  # the day it ran
    machine: str = ""  # where it ran (mnist_probe.machine.describe)
    recipe_name: str = ""  # the recipe's name in conf/train (train=NAME)


@dataclass(frozen=True)
class PageResults:
    """Everything the study's report is written from."""

    train: TrainResult
    activations: ActivationsResult
    interpreters: InterpretersResult
    shift: ShiftResult
    augment: AugmentResult | None  # None: a report on one CNN, no augmentation sweep
    losses: list[LossRow]
    keras_file: KerasRoundTrip | None
    seeds: SeedsSummary | None  # a seeds sweep's seeds.json (reproduce.seeds), with its path
    seconds: float
    beyond: BeyondResult | None = None
    stage_seconds: dict[str, float] | None = None  # what each stage of the run took, in its order
    sizes: dict[str, int | None] | None = None  # a report's smaller sizes (report.yaml), by what they count
    setting: Setting | None = None  # how the run was set up (None: results saved before it was kept)
    compared: PageResults | None = None  # report.compare's run, read back: what changes from it
    compared_data: str | None = None  # its data set's name
    tensorboard: list[TensorBoardRow] = field(default_factory=list)  # what the run logged, by tag group
    run_dir: str = ""  # where the run wrote (RESULTS.md points TensorBoard there)


@dataclass(frozen=True)
class ReproduceResult:
    report: str
    cnn_key: str
    cnn_test_acc: float
    conclusions: list[Conclusion]


@dataclass(frozen=True)
class ReportResult:
    """`+experiment=report`: report.md on one CNN, and the study's four conclusions checked on it."""

    report: str
    cnn_key: str
    cnn_test_acc: float
    code_layer: str
    conclusions: list[Conclusion]
