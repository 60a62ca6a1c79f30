"""What each stage returns: frozen dataclasses with named fields, so that the report, the verdicts and
the sweep summary read a number by its name, never by a row's position or a key built elsewhere.
A run's results.json is the serialisation of its stage's result (`to_json`), with FORMAT beside it;
`from_json` reads one back (reports and tests from saved results)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mnist_probe.names import CODE_LAYER
from mnist_probe.rows import (  # noqa: F401 (the library's rows, re-exported: results hold them)
    Confidence,
    FaithfulnessRow,
    GapRow,
    LayerRow,
    PositionRow,
    ProbeRow,
    RandomisationRow,
    Scores,
    SeedSpread,
    TensorBoardRow,
    from_json,
    to_json,
)
from mnist_probe.specs import DIGITS

FORMAT = 2  # results.json's layout: bump when a field changes meaning or name


# ----------------------------------------------------------------------------- train
@dataclass(frozen=True)
class Calibration:
    temperature: float
    before: Scores
    after: Scores
    bins: int


@dataclass(frozen=True)
class TrainingPart:
    """One run's part of a training that was stopped and resumed: where, which epochs (1-based; an
    epoch split between two parts is in both), and how long. None: from before parts were kept."""

    machine: str | None
    first_epoch: int
    last_epoch: int
    seconds: float | None


@dataclass(frozen=True)
class TrainResult:
    """The CNN every stage opens up: its cache key, how it scores and, when trained here, how."""

    key: str
    test_acc: float
    test_images: int
    checkpoint: str
    cached: bool
    confidence: Confidence
    calibration: Calibration
    train_seconds: float | None = None  # None: a user's checkpoint, not trained here
    epochs: int | None = None
    val_acc: float | None = None
    gap: list[GapRow] | None = None  # per epoch; None: not trained here, or train.gap_images=0
    test_loss: float | None = None
    resumed_after_epochs: int = 0
    untimed_epochs: int = 0  # epochs whose time train_seconds lacks (trained before a clock was kept)
    precision: str | None = None
    device: str | None = None
    trained_on: str | None = None  # the machine that trained it (mnist_probe.machine.describe)
    parts: list[TrainingPart] = field(default_factory=list)  # one per run, where it was resumed
    strategy: str | None = None
    world_size: int = 1
    files: dict[str, str] = field(default_factory=dict)  # the cache entry's files and their sha256
    outputs: str = "logits"  # what the model outputs (model.OUTPUT_KINDS), read as log-probabilities
    data_files: dict[str, str] = field(default_factory=dict)  # sha256 of each data file it was scored on


# ----------------------------------------------------------------------------- activations
@dataclass(frozen=True)
class ActivationsResult:
    cnn_key: str
    cnn_test_acc: float
    indices: list[int]
    layers: list[str]
    feature_map_pngs: int
    n_codes: int
    within_class_cosine: float
    between_class_cosine: float
    within_between_ratio: float
    code_layer: str = CODE_LAYER
    code_dims: int = 256


# ----------------------------------------------------------------------------- interpreters
@dataclass(frozen=True)
class InterpreterRow:
    """One classifier's test accuracy, beside the study's figure for it."""

    interpreter: str
    features: str  # codes, pixels, or image (the CNN's own softmax)
    test_acc: float
    study_acc: float | None
    diff: float | None
    fit_seconds: float | None
    predict_seconds: float | None
    ci: list[float] | None = None  # test_acc's 95% bootstrap interval over the test images
    minus_cnn_ci: list[float] | None = None  # of test_acc - the CNN's, paired on the same images


@dataclass(frozen=True)
class InterpretersResult:
    cnn_key: str
    cnn: InterpreterRow  # the CNN's own softmax, the table's first row
    rows: list[InterpreterRow]  # the interpreters, in the order they ran
    probes: list[ProbeRow] | None = None

    def table(self) -> list[InterpreterRow]:
        """The study's accuracy table: the CNN, then every interpreter."""
        return [self.cnn, *self.rows]

    def accuracies(self, features: str) -> dict[str, float]:
        """Interpreter name -> test accuracy, of those fitted on features (codes or pixels)."""
        return {r.interpreter: r.test_acc for r in self.rows if r.features == features}


# ----------------------------------------------------------------------------- shift
@dataclass(frozen=True)
class Curve:
    """A model's test accuracy at each vertical shift dy (dx = 0)."""

    dys: list[int]
    accs: list[float]

    def at(self, dy: int) -> float | None:
        """The accuracy at dy, None where the curve has no such shift."""
        return self.accs[self.dys.index(dy)] if dy in self.dys else None


@dataclass(frozen=True)
class ShiftProb:
    """P(true class) of the study's digit under one shift, and the class that rose most."""

    model: str
    dx: int
    dy: int
    p_true: float
    top_other: int
    p_other: float


@dataclass(frozen=True)
class DatasetRow:
    """One model's shift metrics over many test images."""

    model: str
    acc_unshifted: float
    acc_grid_mean: float
    consistency: float
    change_1px: float
    consistency_ci: list[float] | None = None  # 95% bootstrap intervals over the test images
    change_1px_ci: list[float] | None = None

    COLUMNS = ("model", "acc_unshifted", "acc_grid_mean", "consistency", "change_1px")  # the table's


@dataclass(frozen=True)
class PerClass:
    dys: list[int]
    accuracy: list[list[float]]  # digit × dy


@dataclass(frozen=True)
class ShiftResult:
    cnn_key: str
    cnn_test_acc: float
    models: list[str]
    index: int  # the study's digit: its test-set index and class
    digit: int
    pairs: list[tuple[int, int]]  # the (dx, dy) of the table's columns
    columns: list[str]  # the table's column labels, one a pair
    table: list[dict[str, str]]  # the study's table: {model, column: cell}, as the study wrote cells
    rows: list[ShiftProb]
    cosines: dict[str, list[float]]  # layer -> cosine to the unshifted activations, one a pair
    code_layer: str
    every_digit: list[dict[str, Any]]
    dataset: list[DatasetRow] = field(default_factory=list)
    curves: dict[str, Curve] = field(default_factory=dict)
    samples: int = 0
    per_class: PerClass | None = None
    confusions: list[dict[str, Any]] = field(default_factory=list)
    classes: list[str] = field(default_factory=lambda: list(DIGITS))  # the data set's, class k's name
    item: str = "digit"  # what one image shows (data.item)

    @property
    def target(self) -> str:
        """The class of the study's test image, by name."""
        return self.classes[self.digit]

    def dataset_row(self, model: str) -> DatasetRow | None:
        return next((r for r in self.dataset if r.model == model), None)

    def p_true(self, model: str) -> dict[tuple[int, int], float]:
        """P(true class) of the study's digit per (dx, dy), for one model."""
        return {(r.dx, r.dy): r.p_true for r in self.rows if r.model == model}


# ----------------------------------------------------------------------------- seeds
@dataclass(frozen=True)
class SeedsResult:
    cnn_key: str
    headline: dict[str, float]  # name -> value: what the sweep summary spreads over the seeds
    study: dict[str, float] = field(default_factory=dict)  # the study's figures it can be set beside


@dataclass(frozen=True)
class SeedsSummary:
    """A seeds sweep's seeds.json (stages/sweep.py): every headline number over the seeds."""

    seeds: list[int]
    overrides: str  # what every job ran with but its seed
    rows: list[SeedSpread]
    per_seed: list[dict[str, float]] = field(default_factory=list)  # each job's headline
    path: str = ""  # where it was read from (reproduce.seeds), as a page cites it


# ----------------------------------------------------------------------------- reproduce


@dataclass(frozen=True)
class AttributionCurve:
    """One attribution method's consistency under the shifts (mnist_probe.attribution)."""

    method: str
    dys: list[int]
    consistency: list[float]  # mean corr(attribution of the shifted image, shifted attribution)
    ci: list[list[float]] | None = None  # each mean's 95% bootstrap interval over the images


@dataclass(frozen=True)
class BeyondResult:
    cnn_key: str
    code_layer: str
    attributions: list[AttributionCurve]
    positions: list[PositionRow]
    filter_layers: list[str]
    cka_layers: list[str]
    shift_cka: list[list[float]]  # per dy (cka_dys), per layer: CKA(unshifted, shifted)
    cka_dys: list[int]
    cka_other: str | None = None  # the second CNN's cache key, when beyond.cka_seed was set
    cka: list[list[float]] | None = None  # this CNN's layers × the other's
    sanity: list[RandomisationRow] = field(default_factory=list)  # the model-randomisation test, cascading
    faithfulness: list[FaithfulnessRow] = field(default_factory=list)  # deletion and insertion areas
    data_randomisation: list[RandomisationRow] = field(default_factory=list)  # against shuffled labels
    memorised_images: int | None = None  # the training images whose labels that network memorised
    memorised_accuracy: float | None = None  # its accuracy on them, against their shuffled labels
    shift_cka_ci: list[list[list[float]]] | None = None  # per dy, per layer: shift_cka's 95% interval

    def shift_cka_at(self, layer: str) -> list[float]:
        """One layer's CKA between unshifted and shifted images, along the dys."""
        k = self.cka_layers.index(layer)
        return [row[k] for row in self.shift_cka]

    def shift_cka_ci_at(self, layer: str) -> list[list[float] | None]:
        """That CKA's 95% intervals along the dys (None each where none was kept)."""
        k = self.cka_layers.index(layer)
        return [row[k] for row in self.shift_cka_ci] if self.shift_cka_ci else [None] * len(self.cka_dys)


@dataclass(frozen=True)
class LayersResult:
    """What the tool found in a model: its layers, which it draws, and where its code vector is."""

    model: str
    parameters: int
    code_layer: str | None  # None: no linear layer to find it by, and code_layer= not set
    feature_layers: list[str]
    shift_layers: list[str]
    layers: list[LayerRow]
