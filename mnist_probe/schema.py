"""The typed config: one dataclass per config group, stored in Hydra's ConfigStore as the schema that
conf/config.yaml composes onto. One mechanism checks every value:

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
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from mnist_probe.errors import UserError
from mnist_probe.machine import gpu_present
from mnist_probe.names import COUNTS, FEATURES, FILES, SIZE, STAGES, layer_name

# What Lightning's Trainer(precision=...) accepts (plus our 'auto'), and its accelerators.
PRECISIONS = ("auto", "32-true", "32", "bf16-mixed", "bf16-true", "bf16", "16-mixed", "16-true", "16",
              "64-true", "64")  # fmt: skip
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")
# Lightning's strategies, as tested here: auto (one device, or Lightning's pick for several) and
# ddp (tests/test_ddp.py); ddp_spawn and ddp_notebook would score and cache in the parent process,
# but are not tested yet, so not offered.
STRATEGIES = ("auto", "ddp")
LOSSES = ("cross_entropy", "keras", "label_smoothing")  # mnist_probe.model.LOSSES
MODELS = ("keras_cnn", "keras_cnn_aa")  # conf/model/*.yaml (tests/test_schema.py checks)


def refuse(key: str, value: Any, allowed: str) -> NoReturn:
    """Raise the one-line refusal: key, value, what is allowed."""
    raise UserError(f"{key}={value!r} is not allowed: {allowed}")


def count(key: str, value: Any, low: int = 1, high: int | None = None) -> None:
    """A whole number in [low, high]."""
    whole = isinstance(value, int) and not isinstance(value, bool)
    if not whole or value < low or (high is not None and value > high):
        refuse(key, value, f"a whole number from {low} to {high}" if high is not None else
               f"a whole number >= {low}")  # fmt: skip


def fraction(key: str, value: Any, high: float = 1.0, closed: bool = False) -> None:
    """A number in [0, high) (or [0, high] when closed)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or value > high or (value == high and not closed):
        refuse(key, value, f"a number in [0, {high}{']' if closed else ')'}")


def positive(value: Any) -> bool:
    """A finite number > 0 (not a bool)."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return number and math.isfinite(value) and value > 0


def layer(key: str, value: Any) -> None:
    """An h index 1..12 or a Keras layer name of the study's CNN (names.layer_name decides)."""
    try:
        layer_name(value)
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


@dataclass
class DataConfig:
    root: str = "data"
    download: bool = False
    verify: bool = False
    val_size: int = 6000
    split_seed: int = 0
    eval_batch_size: int = 1000
    train_subset: int | None = None
    test_subset: int | None = None

    def __post_init__(self) -> None:
        count("data.val_size", self.val_size, 1, COUNTS["train"] - 1)
        count("data.split_seed", self.split_seed, 0)
        count("data.eval_batch_size", self.eval_batch_size)
        if self.train_subset is not None:
            count("data.train_subset", self.train_subset, 1, COUNTS["train"] - self.val_size)
        if self.test_subset is not None:
            count("data.test_subset", self.test_subset, 1, COUNTS["test"])


@dataclass
class ModelConfig:
    _target_: str = "mnist_probe.model.KerasCNN"
    filters: int = 64
    dense: int = 256
    num_classes: int = 10

    def __post_init__(self) -> None:
        count("model.filters", self.filters)
        count("model.dense", self.dense)
        count("model.num_classes", self.num_classes, 10, 10)


@dataclass
class AugmentConfig:
    _target_: str = "mnist_probe.data.KerasAugment"
    enabled: bool = True
    rotation: float = 10.0
    zoom: float = 0.1
    shift: float = 0.1

    def __post_init__(self) -> None:
        fraction("train.augment.rotation", self.rotation, 180.0, closed=True)
        fraction("train.augment.zoom", self.zoom)
        fraction("train.augment.shift", self.shift)


@dataclass
class SchedulerConfig:
    factory: dict[str, Any] = field(default_factory=dict)
    monitor: str | None = None
    interval: str = "epoch"

    def __post_init__(self) -> None:
        if "_target_" not in self.factory:
            refuse("train.scheduler.factory", self.factory, "a scheduler spec with a _target_")
        if self.interval not in ("epoch", "step"):
            refuse("train.scheduler.interval", self.interval, "epoch or step")
        if self.monitor not in (None, "val_acc", "val_loss", "train_loss"):
            refuse("train.scheduler.monitor", self.monitor, "null, val_acc, val_loss or train_loss")
        for key in ("max_lr", "min_lr", "factor"):
            value = self.factory.get(key)
            if value is not None and not positive(value):
                refuse(f"train.scheduler.factory.{key}", value, "a finite number > 0")


@dataclass
class TrainConfig:
    epochs: int = 3
    batch_size: int = 128
    precision: str = "auto"
    accelerator: str = "auto"
    deterministic: bool = False
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optimizer: dict[str, Any] = field(default_factory=lambda: {"_target_": "torch.optim.RMSprop",
                                                               "_partial_": True, "lr": 1e-3})  # fmt: skip
    scheduler: SchedulerConfig | None = None
    channels_last: bool = True
    progress_bar: bool = True
    loss: str = "cross_entropy"
    strategy: str = "auto"
    devices: int = 1
    num_nodes: int = 1

    def __post_init__(self) -> None:
        count("train.epochs", self.epochs)
        if self.loss not in LOSSES:
            refuse("train.loss", self.loss, ", ".join(LOSSES))
        if self.strategy not in STRATEGIES:
            refuse("train.strategy", self.strategy, ", ".join(STRATEGIES))
        count("train.devices", self.devices)
        count("train.num_nodes", self.num_nodes)
        count("train.batch_size", self.batch_size)
        if self.precision not in PRECISIONS:
            refuse("train.precision", self.precision, ", ".join(PRECISIONS))
        if self.accelerator not in ACCELERATORS:
            refuse("train.accelerator", self.accelerator, ", ".join(ACCELERATORS))
        if self.accelerator in ("gpu", "cuda") and not gpu_present():
            refuse("train.accelerator", self.accelerator, "this machine has no GPU: auto or cpu")
        apple = platform.system() == "Darwin" and platform.machine() == "arm64"
        if self.accelerator == "mps" and not apple:
            refuse("train.accelerator", self.accelerator, "mps needs Apple silicon: auto or cpu")
        if self.precision.startswith("16") and not gpu_present():
            refuse("train.precision", self.precision, "fp16 needs a GPU; on a CPU: auto, 32-true, bf16-mixed")
        if "_target_" not in self.optimizer:
            refuse("train.optimizer", self.optimizer, "an optimizer spec with a _target_")
        lr = self.optimizer.get("lr")
        if lr is not None and not positive(lr):
            refuse("train.optimizer.lr", lr, "a finite number > 0")


@dataclass
class ActivationsConfig:
    indices: list[int] | None = None
    layers: list[Any] = field(default_factory=lambda: [1, 2, 5, 6, 8])
    n_codes: int = 1000

    def __post_init__(self) -> None:
        for i in self.indices or []:
            count("activations.indices", i, 0, COUNTS["test"] - 1)
        if not self.layers:
            refuse("activations.layers", self.layers, "at least one layer")
        for value in self.layers:
            layer("activations.layers", value)
        count("activations.n_codes", self.n_codes, 2, COUNTS["test"])


@dataclass
class ProbesConfig:
    enabled: bool = True
    train_samples: int = 10_000
    test_samples: int | None = None

    def __post_init__(self) -> None:
        count("interpreters.probes.train_samples", self.train_samples, 10)
        if self.test_samples is not None:
            count("interpreters.probes.test_samples", self.test_samples, 1, COUNTS["test"])


@dataclass
class InterpretersConfig:
    models: list[str] = field(default_factory=list)
    probes: ProbesConfig = field(default_factory=ProbesConfig)
    catalog: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, entry in self.catalog.items():
            if not isinstance(entry, dict) or "_target_" not in (entry.get("estimator") or {}):
                refuse(f"interpreters.catalog.{name}", entry, "{estimator: {_target_: ...}, ...}")
            if entry.get("train_samples") is not None:
                count(f"interpreters.catalog.{name}.train_samples", entry["train_samples"], 10)
        for spec in self.models:
            self.check("interpreters.models", spec)

    def check(self, key: str, spec: Any) -> None:
        """An interpreter spec: NAME or NAME@pixels, NAME in the catalog."""
        name, _, features = str(spec).partition("@")
        if name not in self.catalog:
            refuse(key, spec, f"an interpreter of the catalog: {', '.join(sorted(self.catalog))} "
                              "(NAME@pixels for raw pixels)")  # fmt: skip
        if features and features not in FEATURES:
            refuse(key, spec, f"NAME or NAME@pixels; features are {' or '.join(FEATURES)}")


@dataclass
class ShiftDatasetConfig:
    enabled: bool = True
    samples: int = 1000
    radius: int = 5
    batch_size: int = 4000

    def __post_init__(self) -> None:
        count("shift.dataset.samples", self.samples, 1, COUNTS["test"])
        count("shift.dataset.radius", self.radius, 1, SIZE - 1)
        count("shift.dataset.batch_size", self.batch_size)


@dataclass
class ShiftConfig:
    index: int | None = None
    digit: int = 1
    dx: Any = field(default_factory=lambda: [0])
    dy: Any = field(default_factory=lambda: [0, -1, -2, -3, -4, -5])
    grid: bool = False
    models: list[str] = field(default_factory=list)
    layers: list[Any] = field(default_factory=lambda: [2, 6, 8])
    min_other: float = 0.01
    dataset: ShiftDatasetConfig = field(default_factory=ShiftDatasetConfig)

    def __post_init__(self) -> None:
        if self.index is not None:
            count("shift.index", self.index, 0, COUNTS["test"] - 1)
        count("shift.digit", self.digit, 0, 9)
        dxs, dys = shifts("shift.dx", self.dx), shifts("shift.dy", self.dy)
        if not self.grid and len(dxs) > 1 and len(dys) > 1 and len(dxs) != len(dys):
            refuse("shift.dy", self.dy, f"as many values as shift.dx ({len(dxs)}), one, or shift.grid=true")
        for value in self.layers:
            layer("shift.layers", value)
        fraction("shift.min_other", self.min_other, closed=True)


@dataclass
class ReproduceAugmentConfig:
    recipe: str = "default"
    models: list[str] = field(default_factory=lambda: list(MODELS))
    shifts: list[float] = field(default_factory=lambda: [0.0, 0.1, 0.2])
    train_overrides: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.recipe not in ("default", "keras"):
            refuse("reproduce.augment.recipe", self.recipe, "default or keras")
        for model in self.models:
            if model not in MODELS:
                refuse("reproduce.augment.models", model, "a list of " + ", ".join(MODELS))
        for value in self.shifts:
            fraction("reproduce.augment.shifts", value)


@dataclass
class ReproduceConfig:
    docs: str = "docs"
    bench: str = "outputs/bench/bench.json"
    seeds: str | None = None
    losses: list[str] = field(default_factory=lambda: ["cross_entropy", "keras"])
    augment: ReproduceAugmentConfig = field(default_factory=ReproduceAugmentConfig)

    def __post_init__(self) -> None:
        for loss in self.losses:
            if loss not in LOSSES:
                refuse("reproduce.losses", loss, "a list of " + ", ".join(LOSSES))


@dataclass
class PathsConfig:
    cache: str = "outputs/cache"
    output_dir: str = "."


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    activations: ActivationsConfig = field(default_factory=ActivationsConfig)
    interpreters: InterpretersConfig = field(default_factory=InterpretersConfig)
    shift: ShiftConfig = field(default_factory=ShiftConfig)
    reproduce: ReproduceConfig | None = None
    stage: str = "train"
    seed: int = 42
    checkpoint: str | None = None
    interpreter: str | None = None
    paths: PathsConfig = field(default_factory=PathsConfig)

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            refuse("stage", self.stage, ", ".join(STAGES))
        count("seed", self.seed, 0, 2**32 - 1)  # what seed_everything accepts
        if self.interpreter is not None:
            self.interpreters.check("interpreter", self.interpreter)
        for spec in self.shift.models:
            self.interpreters.check("shift.models", spec)
        sched = self.train.scheduler
        pct = sched.factory.get("pct_start") if sched else None
        if pct is not None:  # a one-cycle schedule's warm-up must span at least two steps
            images = self.data.train_subset or COUNTS["train"] - self.data.val_size
            steps = self.train.epochs * math.ceil(images / self.train.batch_size)
            if steps * pct < 2:
                refuse("train.epochs", self.train.epochs, f"{steps} training steps are too few for the "
                       f"one-cycle schedule (pct_start {pct}): train on more images or epochs, or a smaller "
                       "train.batch_size")  # fmt: skip
        if self.stage == "reproduce" and self.reproduce is None:
            refuse("stage", self.stage, "run the reproduce stage as +experiment=reproduce")


# conf/config.yaml's first default: every composed config is typed by this schema.
ConfigStore.instance().store(name="schema", node=Config)


def validate(cfg: DictConfig) -> Config:
    """Check every value of a composed config (types were checked as it was composed); return it as
    the schema's objects. paths.output_dir is left out: Hydra sets it only once a run starts."""
    plain = OmegaConf.to_container(cfg, resolve=False)
    plain.pop("hydra", None)
    plain["paths"] = {"cache": str(OmegaConf.select(cfg, "paths.cache")), "output_dir": "."}
    typed = OmegaConf.merge(OmegaConf.structured(Config), plain)
    config = OmegaConf.to_object(typed)
    check_files(config)
    return config


def check_files(config: Config) -> None:
    """The files the config names exist: MNIST's four (unless it may download them), the checkpoint."""
    raw = Path(config.data.root).expanduser() / "MNIST" / "raw"
    missing = [n for n in FILES if not (raw / n).is_file()]
    if missing and not config.data.download:
        raise UserError(
            f"MNIST not found: {raw} lacks {', '.join(missing)}; "
            "set MNIST_ROOT (or data.root=...) to the folder holding MNIST/raw/, "
            "or pass data.download=true where there is internet"
        )
    if config.checkpoint is not None and not Path(config.checkpoint).expanduser().is_file():
        raise UserError(f"checkpoint {config.checkpoint} does not exist; fix the path or drop checkpoint= "
                        "to train one")  # fmt: skip

