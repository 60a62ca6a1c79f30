"""The network a run opens (the config's `model:` node), as plain dataclasses (no torch): its class
and constructor arguments, what it reads (ModelInput) and which part of its output holds the class
scores. The fourth of the specs (mnist_probe.specs holds the data, the recipe and the hardware)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from mnist_probe.checks import count, refuse

MODELS = ("keras_cnn", "keras_cnn_aa", "lenet5")  # conf/model/*.yaml (tests/test_schema.py checks)
STUDY_MODEL = "mnist_probe.keras_cnn.KerasCNN"  # the study's Keras Sequential, layer for layer


@dataclass
class ModelInput:
    """What the network reads, declared once (the config's `model.input` node): the data's images,
    floats in [0, 1], go in as they are unless a setting says otherwise. `channels` replicates grey
    images to that many channels (a 3-channel ImageNet architecture on MNIST), `size` resizes them
    (a side, or [height, width]), `mean` and `std` normalise each channel ((x - mean) / std, as
    torchvision's Normalize), in that order. mnist_probe.inputs applies them as the model's first
    step, so everything the tool does to images (shifts, occlusion, pictures) stays in pixel space."""

    mean: list[float] | None = None  # per channel, or one for all; with std
    std: list[float] | None = None
    channels: int | None = None  # null: the data's
    size: int | list[int] | None = None  # null: the data's

    def __post_init__(self) -> None:
        if (self.mean is None) != (self.std is None):
            refuse(
                "model.input.mean" if self.mean is None else "model.input.std",
                None,
                "mean and std given together, a number per channel or one for all",
            )
        for key in ("mean", "std") if self.mean is not None else ():
            values = getattr(self, key)
            values = [values] if isinstance(values, (int, float)) else list(values)
            numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
            if not values or not numbers or not all(math.isfinite(v) for v in values):
                refuse(f"model.input.{key}", values, "finite numbers, one per channel or one for all")
            if key == "std" and not all(v > 0 for v in values):
                refuse("model.input.std", values, "numbers > 0")
            setattr(self, key, [float(v) for v in values])
            if self.channels is not None and len(values) not in (1, self.channels):
                refuse(f"model.input.{key}", values, f"one number, or one per channel ({self.channels})")
        if self.channels is not None:
            count("model.input.channels", self.channels, 1, 4)
        sides = [self.size] if isinstance(self.size, int) else list(self.size or [])
        if self.size is not None and len(sides) not in (1, 2):
            refuse("model.input.size", self.size, "a side, or [height, width]")
        for side in sides:
            count("model.input.size", side, 8, 4096)
        if self.size is not None and not isinstance(self.size, int):
            self.size = sides if len(sides) == 2 else sides[0]

    @property
    def declared(self) -> bool:
        """Anything besides the data's images as they are."""
        return any(v is not None for v in (self.mean, self.std, self.channels, self.size))

    def shape(self, data_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        """(channels, height, width) the network itself reads, given the data's images."""
        channels, height, width = data_shape
        if self.size is not None:
            height, width = (self.size, self.size) if isinstance(self.size, int) else self.size
        return (self.channels or channels, height, width)

    def check(self, data_shape: tuple[int, int, int]) -> None:
        """The data's images can be made into this input: grey replicated, a mean and std per channel."""
        channels = self.channels or data_shape[0]
        if self.channels is not None and data_shape[0] not in (1, self.channels):
            refuse(
                "model.input.channels",
                self.channels,
                f"null or {data_shape[0]}: only grey images are replicated to more channels",
            )
        for key in ("mean", "std") if self.mean is not None else ():
            if len(getattr(self, key)) not in (1, channels):
                refuse(
                    f"model.input.{key}", getattr(self, key), f"one number, or one per channel ({channels})"
                )

    def content(self) -> dict:
        """For a cache key: the settings given (none: {}, so undeclared models keep their keys)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


# The keys of the `model:` node that are the tool's, not the constructor's: what the network reads
# (ModelInput) and which of its outputs are the class scores (a key, attribute or index: `output`).
MODEL_KEYS = ("input", "output")


@dataclass
class ModelSpec:
    """Which network (the config's `model:` node): any nn.Module class, or a function returning one,
    by its import path (`_target_`, what Hydra's instantiate builds), and the arguments its
    constructor takes (`args`; on the command line they are further keys: +model.width=32); besides,
    what it reads (`input`) and, for a model whose output is a container (a Hugging Face ModelOutput,
    a tuple, a dict), which of its parts are the class scores (`output`: null finds `logits`, or
    the first element)."""

    _target_: str = STUDY_MODEL
    args: dict[str, Any] = field(default_factory=dict)
    input: ModelInput = field(default_factory=ModelInput)
    output: str | int | None = None

    def __post_init__(self) -> None:
        module, _, name = str(self._target_).rpartition(".")
        if not module or not name.isidentifier():
            refuse("model._target_", self._target_, "an import path package.module.Class (or a function)")
        for key in ("filters", "dense") if self.study else ():  # other classes' arguments: theirs to check
            if key in self.args:
                count(f"model.{key}", self.args[key])
        if isinstance(self.input, dict):
            self.input = ModelInput(**self.input)
        if self.output is not None and not isinstance(self.output, (str, int)):
            refuse("model.output", self.output, "null, a key or attribute name (logits), or an index (0)")

    @classmethod
    def of(cls, node: dict[str, Any]) -> ModelSpec:
        """The spec of a `model:` node: its _target_, input and output, and, as the constructor's
        arguments, the rest."""
        args = dict(node)
        target, given, output = (
            args.pop("_target_", STUDY_MODEL),
            args.pop("input", None),
            args.pop("output", None),
        )
        given = given or {}
        if not isinstance(given, dict) or set(given) - set(ModelInput.__dataclass_fields__):
            refuse("model.input", given, "mean, std, channels, size (model.input.mean=[0.1307])")
        return cls(target, args, ModelInput(**given), output)

    def node(self) -> dict[str, Any]:
        """The constructor's `model:` node: what Hydra's instantiate builds the network from."""
        return {"_target_": self._target_, **self.args}

    def content(self) -> dict:
        """The tool's own settings of the model for a cache key: only those given, so that a model
        read as it is keeps its key."""
        return ({"input": self.input.content()} if self.input.declared else {}) | (
            {"output": self.output} if self.output is not None else {}
        )

    @property
    def study(self) -> bool:
        """The study's CNN (or its anti-aliased twin): Keras names and h indices apply."""
        return self._target_ in (STUDY_MODEL, "mnist_probe.keras_cnn.anti_aliased_cnn")
