"""What the library's measurements return: frozen dataclasses with named fields, one per kind of row,
so that a stage, a table and a verdict read a number by its name. Torch-free: a page or a test reads
them back from JSON without torch (`from_json`).

Each is returned by the function named in its docstring; stages/results.py builds the stages' results
from them and adds only what a stage adds."""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Confidence:
    """How sure the CNN is, beyond accuracy (mnist_probe.scoring.confidence)."""

    cross_entropy: float
    errors: int
    error_share_of_loss: float
    mean_loss_on_errors: float
    max_abs_logit: float
    # errors whose true class gets P < KERAS_EPSILON: the clipped loss gives them no gradient at all, so a
    # training with it cannot correct them (None: a results file written before they were counted)
    errors_below_epsilon: int | None = None


@dataclass(frozen=True)
class Scores:
    """Calibration scores of one set of logits (mnist_probe.calibration.scores)."""

    ece: float
    nll: float
    brier: float
    accuracy: float


@dataclass(frozen=True)
class GapRow:
    """One epoch of mnist_probe.gap.GapProbe: five accuracies on the same training images and on
    validation, and the gap val - running split into its PARTS (they add up to it)."""

    PARTS: typing.ClassVar[tuple[str, ...]] = ("lag", "dropout", "augmentation", "generalisation")

    epoch: int
    running: float
    train: float
    eval: float
    clean: float
    val: float
    gap: float
    lag: float
    dropout: float
    augmentation: float
    generalisation: float
    ci: dict[str, list[float]] | None = None  # each part's 95% bootstrap interval over the training images

    def parts(self) -> dict[str, float]:
        """The gap's four parts by name."""
        return {p: getattr(self, p) for p in self.PARTS}


@dataclass(frozen=True)
class ProbeRow:
    """A linear probe on one layer (mnist_probe.probes.linear_probes)."""

    h: int
    layer: str
    dims: int
    test_acc: float
    fit_seconds: float
    ci: list[float] | None = None  # test_acc's 95% bootstrap interval over the test images


@dataclass(frozen=True)
class PositionRow:
    """One layer's position and class probes (mnist_probe.position.position_probes): R² of (dx, dy),
    accuracy over the shift classes (and its chance), accuracy over the classes."""

    layer: str
    dims: int
    position_r2: float
    position_acc: float
    class_acc: float
    position_chance: float
    position_r2_ci: list[float] | None = None  # 95% bootstrap interval over the held-out images


@dataclass(frozen=True)
class LayerRow:
    """One call of a module in a model's layer table (mnist_probe.model_layers.layer_table)."""

    layer: str
    type: str
    output: str
    params: int
    leaf: bool


@dataclass(frozen=True)
class RandomisationRow:
    """One step of the model-randomisation test (mnist_probe.sanity): a method's maps on the network
    with `layer` randomised (cascading: it and every layer after it), against its trained maps."""

    method: str
    mode: str  # cascading or independent
    step: int
    layer: str
    spearman: float  # mean over the draws of each draw's mean Spearman of |map| over the images
    ssim: float  # the same of SSIM, each map scaled to its largest |value|
    spearman_ci: list[float] | None = None  # 95% interval over the draws and the images together
    draw_means: list[float] = field(default_factory=list)  # each draw's mean Spearman: their spread
    images: int = 0  # images each draw compared
    constant_trained: int = 0  # images whose map on the trained network is constant (ranks nothing)
    constant_randomised: int = 0  # maps constant after randomising, over all draws
    left_out: int = 0  # (draw, image) pairs left out of the means: either map constant

    @property
    def left_out_share(self) -> float:
        """The share of (draw, image) pairs with no score: a constant map on either side."""
        pairs = max(len(self.draw_means), 1) * self.images
        return self.left_out / pairs if pairs else 0.0


@dataclass(frozen=True)
class FaithfulnessRow:
    """Deletion or insertion along one map's pixel order (mnist_probe.sanity.faithfulness): the area
    under P(target) as the pixels go (deletion: small is faithful) or come (insertion: large is)."""

    method: str
    kind: str  # deletion or insertion
    area: float  # mean over the images of the curve's mean
    ci: list[float] | None  # 95% bootstrap interval over the images
    curve: list[float]  # mean P(target) after each step
    images: int = 0  # images whose curves were measured
    constant: int = 0  # of them, those whose map is constant (orders nothing): left out of the means

    @property
    def left_out_share(self) -> float:
        """The share of images left out: their map is constant."""
        return self.constant / self.images if self.images else 0.0


@dataclass(frozen=True)
class SeedSpread:
    """One headline number over the seeds of a sweep (tables.spread), beside the study's figure where
    it can stand there."""

    metric: str
    n: int
    mean: float
    std: float  # ddof 1 (NaN below two seeds)
    ci_low: float  # the mean's 95% interval, Student's t over the seeds (NaN below two)
    ci_high: float
    min: float
    max: float
    study: float | None = None  # the study's figure
    study_minus_mean_in_std: float | None = None
    study_inside_our_range: str | None = None  # "yes" where our seeds span it ([min, max]), else "no"


@dataclass(frozen=True)
class TensorBoardRow:
    """One tag group a run logged to TensorBoard (logged.tensorboard_rows), as its event files hold it."""

    group: str  # the tags' first part
    kind: str  # images or scalars
    tags: int
    entries: int
    steps: str  # 'first..last', or the one step
    where: str  # the folder of its event file, in the run dir


# ----------------------------------------------------------------------------- (de)serialisation
def to_json(result: Any) -> dict:
    """A row or a result as JSON holds it: its fields, tuples as lists."""
    return dataclasses.asdict(result)


def from_json(cls: type, data: Any) -> Any:
    """A row or a result read back from its serialisation: nested dataclasses, lists, dicts and tuples
    rebuilt from the field types; keys the type lacks (format, stage, versions, ...) are left out."""
    hints = typing.get_type_hints(cls)
    return cls(
        **{f.name: _build(hints[f.name], data[f.name]) for f in dataclasses.fields(cls) if f.name in data}
    )


def _build(tp: Any, value: Any) -> Any:
    if value is None:
        return None
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return _build(next(a for a in args if a is not type(None)), value)
    if dataclasses.is_dataclass(tp):
        return from_json(tp, value)
    if origin is list:
        return [_build(args[0], v) for v in value]
    if origin is tuple:
        return tuple(_build(a, v) for a, v in zip(args, value, strict=True))
    if origin is dict:
        return {k: _build(args[1], v) for k, v in value.items()}
    return value
