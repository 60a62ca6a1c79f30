"""The typed config: one dataclass per config group, stored in Hydra's ConfigStore as the schema that
conf/config.yaml composes onto. The data, model, recipe and hardware nodes are the library's own
specs (mnist_probe.specs); the stages' settings are defined here. One mechanism checks every value:

- types, by OmegaConf while the config is composed (1.5 where an integer is meant is refused, never
  rounded; 'abc' where a number is meant is refused);
- ranges and names, by each dataclass's __post_init__ when validate() turns the composed config
  into these objects (counts >= 1, fractions in [0, 1), shifts inside the image, known layers and
  interpreters, a finite learning rate > 0, a precision and accelerator this machine can run).

Every refusal is a UserError of one line: the key, the value, what is allowed. Nothing here
imports torch, so `mnist-probe` answers a bad command line in about a second.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from mnist_probe.checks import count, fraction, one_of, positive, refuse
from mnist_probe.errors import UserError
from mnist_probe.model_spec import MODELS, STUDY_MODEL, ModelInput, ModelSpec
from mnist_probe.named_files import check_files
from mnist_probe.names import COUNTS, FEATURES, METHODS, SIZE, STAGES, layer_name
from mnist_probe.specs import LOSSES, ONECYCLE, PLATEAU, DataSpec, Hardware, Recipe, Scheduler, is_onnx

RECIPES = ("default", "fashion", "fast", "study")  # conf/train/*.yaml (tests/test_schema.py checks)


def layer(key: str, value: Any, study: bool = True) -> None:
    """Of the study's CNN: an h index 1..12 or a Keras layer name (names.layer_name decides); of any
    other model a module path, checked against the model once it is built (mnist_probe.model_layers)."""
    if not study:
        if not isinstance(value, str) or not value:
            refuse(key, value, "a module path of the model (+experiment=layers lists them)")
        return
    try:
        layer_name(value.removesuffix(":input") if isinstance(value, str) else value)
    except UserError as err:
        refuse(key, value, str(err))


def shifts(key: str, value: Any) -> list[int]:
    """One whole-pixel shift or a non-empty list of them, each inside the image."""
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if not values:
        refuse(key, value, "at least one shift, e.g. shift.dy=[0,-1]")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or abs(v) >= SIZE:
            refuse(key, value, f"whole pixels with |shift| < {SIZE} (the image is {SIZE}×{SIZE})")
    return values


# The stages' settings: types and checks only. Their values are written once, in conf/<stage>/default.yaml
# (with why each is what it is) and conf/experiment/*.yaml; a composed config leaves none unset.
@dataclass
class ActivationsConfig:
    indices: list[int] | None = MISSING
    layers: list[Any] | None = MISSING
    n_codes: int = MISSING

    def __post_init__(self) -> None:
        for i in self.indices or []:
            count("activations.indices", i, 0, COUNTS["test"] - 1)
        if self.layers is not None and not self.layers:
            refuse("activations.layers", self.layers, "at least one layer, or null for the model's")
        count("activations.n_codes", self.n_codes, 2, COUNTS["test"])


@dataclass
class ProbesConfig:
    enabled: bool = MISSING
    train_samples: int = MISSING
    test_samples: int | None = MISSING

    def __post_init__(self) -> None:
        count("interpreters.probes.train_samples", self.train_samples, 10)
        if self.test_samples is not None:
            count("interpreters.probes.test_samples", self.test_samples, 1, COUNTS["test"])


@dataclass
class InterpretersConfig:
    models: list[str] = MISSING
    probes: ProbesConfig = MISSING
    catalog: dict[str, Any] = MISSING

    def __post_init__(self) -> None:
        for name, entry in self.catalog.items():
            if not isinstance(entry, dict) or "_target_" not in (entry.get("estimator") or {}):
                refuse(f"interpreters.catalog.{name}", entry, "{estimator: {_target_: ...}, ...}")
            if entry.get("train_samples") is not None:
                count(f"interpreters.catalog.{name}.train_samples", entry["train_samples"], 10)
            if entry.get("budget") is not None and not positive(entry["budget"]):
                refuse(f"interpreters.catalog.{name}.budget", entry["budget"], "a number > 0, or null")
        for spec in self.models:
            self.check("interpreters.models", spec)

    def check(self, key: str, spec: Any) -> None:
        """An interpreter spec: NAME or NAME@pixels, NAME in the catalog."""
        name, _, features = str(spec).partition("@")
        if name not in self.catalog:
            refuse(
                key,
                spec,
                f"an interpreter of the catalog: {', '.join(sorted(self.catalog))} "
                "(NAME@pixels for raw pixels)",
            )
        if features and features not in FEATURES:
            refuse(key, spec, f"NAME or NAME@pixels; features are {' or '.join(FEATURES)}")


@dataclass
class ShiftDatasetConfig:
    enabled: bool = MISSING
    samples: int = MISSING
    radius: int = MISSING
    batch_size: int = MISSING

    def __post_init__(self) -> None:
        count("shift.dataset.samples", self.samples, 1, COUNTS["test"])
        count("shift.dataset.radius", self.radius, 1, SIZE - 1)
        count("shift.dataset.batch_size", self.batch_size)


@dataclass
class ShiftConfig:
    index: int | None = MISSING
    target: Any = MISSING
    digit: int = MISSING
    dx: Any = MISSING
    dy: Any = MISSING
    grid: bool = MISSING
    models: list[str] = MISSING
    layers: list[Any] | None = MISSING
    min_other: float = MISSING
    dataset: ShiftDatasetConfig = MISSING

    def __post_init__(self) -> None:
        if self.index is not None:
            count("shift.index", self.index, 0, COUNTS["test"] - 1)
        count("shift.digit", self.digit, 0, 9)
        dxs, dys = shifts("shift.dx", self.dx), shifts("shift.dy", self.dy)
        if not self.grid and len(dxs) > 1 and len(dys) > 1 and len(dxs) != len(dys):
            refuse("shift.dy", self.dy, f"as many values as shift.dx ({len(dxs)}), one, or shift.grid=true")
        fraction("shift.min_other", self.min_other, closed=True)


@dataclass
class BeyondConfig:
    """Where the network looks, what each filter wants, how much position each layer keeps, what two
    networks share (the beyond stage, also part of the report)."""

    layers: list[Any] | None = MISSING
    images: int = MISSING
    position_images: int = MISSING
    methods: list[str] = MISSING
    attribution_samples: int = MISSING
    dy: list[int] = MISSING
    top_k: int = MISSING
    maximise_steps: int = MISSING
    max_filters: int | None = MISSING
    radius: int = MISSING
    cka_seed: int | None = MISSING
    shuffled_images: int | None = MISSING
    shuffled_epochs: int = MISSING
    randomisation_draws: int = MISSING

    def __post_init__(self) -> None:
        count("beyond.images", self.images, 8, COUNTS["test"])
        if self.shuffled_images is not None:
            count("beyond.shuffled_images", self.shuffled_images, 1, COUNTS["train"])
        count("beyond.shuffled_epochs", self.shuffled_epochs)
        count("beyond.randomisation_draws", self.randomisation_draws)
        count("beyond.position_images", self.position_images, 8, COUNTS["test"])
        count("beyond.attribution_samples", self.attribution_samples, 1, COUNTS["test"])
        for method in self.methods:
            one_of("beyond.methods", method, METHODS)
        shifts("beyond.dy", self.dy)
        count("beyond.top_k", self.top_k, 1, 100)
        count("beyond.maximise_steps", self.maximise_steps, 0)
        if self.max_filters is not None:
            count("beyond.max_filters", self.max_filters, 1)
        count("beyond.radius", self.radius, 1, 5)
        if self.cka_seed is not None:
            count("beyond.cka_seed", self.cka_seed, 0, 2**32 - 1)


@dataclass
class ReproduceAugmentConfig:
    recipe: str = MISSING
    models: list[str] = MISSING
    shifts: list[float] = MISSING
    train_overrides: dict[str, Any] = MISSING
    model_overrides: dict[str, Any] = MISSING
    probes: bool = MISSING
    cka_seed: int | None = MISSING

    def __post_init__(self) -> None:
        one_of("reproduce.augment.recipe", self.recipe, RECIPES)
        if self.cka_seed is not None:
            count("reproduce.augment.cka_seed", self.cka_seed, 0, 2**32 - 1)
        for model in self.models:
            if model not in MODELS:
                refuse("reproduce.augment.models", model, "a list of " + ", ".join(MODELS))
        for value in self.shifts:
            fraction("reproduce.augment.shifts", value)


@dataclass
class ReproduceConfig:
    docs: str = MISSING
    seeds: str | None = MISSING
    losses: list[str] = MISSING
    augment: ReproduceAugmentConfig = MISSING

    def __post_init__(self) -> None:
        for loss in self.losses:
            if loss not in LOSSES:
                refuse("reproduce.losses", loss, "a list of " + ", ".join(LOSSES))


@dataclass
class ReportConfig:
    page: str | None = MISSING
    compare: str | None = MISSING
    train_samples: int | None = MISSING

    def __post_init__(self) -> None:
        if self.page is not None and not self.page.endswith(".md"):
            refuse("report.page", self.page, "a markdown file's path ending in .md")
        if self.train_samples is not None:
            count("report.train_samples", self.train_samples)


@dataclass
class PathsConfig:
    cache: str = MISSING
    output_dir: str = MISSING


@dataclass
class Config:
    data: DataSpec = field(default_factory=DataSpec)
    # An open node (any class takes its own arguments); a ModelSpec once typed.
    model: Any = field(default_factory=lambda: {"_target_": STUDY_MODEL})
    train: Recipe = field(default_factory=Recipe)
    trainer: Hardware = field(default_factory=Hardware)
    # Stage settings and run-wide keys: their values are conf/'s (config.yaml, conf/<stage>/default.yaml,
    # conf/experiment/*.yaml), written once there; here only their types and checks.
    activations: ActivationsConfig = MISSING
    interpreters: InterpretersConfig = MISSING
    shift: ShiftConfig = MISSING
    beyond: BeyondConfig = MISSING
    reproduce: ReproduceConfig | None = None  # set by +experiment=reproduce only
    report: ReportConfig | None = None  # set by +experiment=report only
    stage: str = MISSING
    seed: int = MISSING
    checkpoint: str | None = MISSING
    interpreter: str | None = MISSING
    code_layer: str | None = MISSING
    max_layers: int | None = MISSING
    paths: PathsConfig = MISSING

    @property
    def beside_study(self) -> bool:
        """Whether the study's figures may stand beside this run's: its data (MNIST) and its architecture
        (the KerasCNN, or with anti-aliased pooling), not another network or an ONNX file."""
        onnx = bool(self.checkpoint) and is_onnx(self.checkpoint)
        return self.data.study and self.model.study and not onnx

    def shift_target(self) -> int:
        """The class whose first test image the study's shift test moves: shift.target (a class name,
        else an index), or shift.digit."""
        target = self.shift.target
        if target is None:
            return self.shift.digit
        names = list(map(str, self.data.classes))
        return names.index(str(target)) if str(target) in names else int(target)

    def __post_init__(self) -> None:
        if not isinstance(self.model, ModelSpec):
            self.model = ModelSpec.of(dict(self.model))
        self.model.input.check(self.data.shape)
        # an ONNX file carries its own architecture: its layers are its nodes, whatever model: says
        onnx = bool(self.checkpoint) and is_onnx(self.checkpoint)
        study = self.model.study and not onnx
        named = {
            "activations.layers": self.activations.layers,
            "shift.layers": self.shift.layers,
            "beyond.layers": self.beyond.layers,
            "code_layer": None if self.code_layer is None else [self.code_layer],
        }
        for key, values in named.items():
            for value in values or []:
                layer(key, value, study)
        if self.stage not in STAGES:
            refuse("stage", self.stage, ", ".join(STAGES))
        count("seed", self.seed, 0, 2**32 - 1)  # what seed_everything accepts
        if self.max_layers is not None:
            count("max_layers", self.max_layers, 2)  # the first and the last
        if self.interpreter is not None:
            self.interpreters.check("interpreter", self.interpreter)
        for spec in self.shift.models:
            self.interpreters.check("shift.models", spec)
        sched = self.train.scheduler
        pct = sched.factory.get("pct_start") if sched else None
        if pct is not None and not self.checkpoint:  # a one-cycle warm-up must span two steps or more
            images = self.data.train_subset or self.data.counts["train"] - self.data.val_size
            steps = self.train.epochs * math.ceil(images / self.train.batch_size)
            if steps * pct < 2:
                refuse(
                    "train.epochs",
                    self.train.epochs,
                    f"{steps} training steps are too few for the "
                    f"one-cycle schedule (pct_start {pct}): train on more images or epochs, or a smaller "
                    "train.batch_size",
                )
        last = self.data.counts["test"] - 1  # the stage nodes check MNIST's 10,000; a folder holds its own
        for i in self.activations.indices or ():
            count("activations.indices", i, 0, last)
        if self.shift.index is not None:
            count("shift.index", self.shift.index, 0, last)
        target = self.shift.target
        if target is not None and str(target) not in map(str, self.data.classes):
            if isinstance(target, bool) or not isinstance(target, int):
                names = ", ".join(self.data.classes)
                refuse("shift.target", target, f"a class of data.classes ({names}) or its index")
            count("shift.target", target, 0, len(self.data.classes) - 1)
        if self.stage == "reproduce" and self.reproduce is None:
            refuse("stage", self.stage, "run the reproduce stage as +experiment=reproduce")


# conf/config.yaml's first default: every composed config is typed by this schema; and the two
# learning-rate schedules, as the options of train/scheduler (train/scheduler=onecycle).
# The schema's train node has no schedule of its own: conf/train/*.yaml picks one (merged onto the
# study's schedule, a one-cycle factory would keep the plateau's keys).
SCHEMA = OmegaConf.structured(Config)
SCHEMA.train.scheduler = None
# the open node, not the typed ModelSpec; the tool's own keys declared, so that model.input.mean=...
# needs no '+'
SCHEMA.model = {
    "_target_": STUDY_MODEL,
    "input": {k: None for k in ModelInput.__dataclass_fields__},
    "output": None,
}
ConfigStore.instance().store(name="schema", node=SCHEMA)
ConfigStore.instance().store(group="train/scheduler", name="plateau", node=Scheduler(**PLATEAU))
ConfigStore.instance().store(group="train/scheduler", name="onecycle", node=Scheduler(**ONECYCLE))


def typed(cfg: DictConfig) -> Config:
    """A composed config as the schema's objects, every value checked (types were checked as it was
    composed). paths.output_dir is left out: Hydra sets it only once a run starts."""
    plain = OmegaConf.to_container(cfg, resolve=False)
    plain.pop("hydra", None)
    plain["paths"] = {"cache": str(OmegaConf.select(cfg, "paths.cache")), "output_dir": "."}
    return OmegaConf.to_object(OmegaConf.merge(SCHEMA, plain))


def validate(cfg: DictConfig) -> Config:
    """typed(cfg), and the files it names checked."""
    config = typed(cfg)
    check_files(config)
    return config
