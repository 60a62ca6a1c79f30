"""The four things every run is made of, as plain dataclasses (no torch): the data and its split
(DataSpec), the network (ModelSpec), how it is trained (Recipe) and on what hardware (Hardware).

Each is defined once, here. The config schema types conf/ with them (`data:`, `model:`, `train:`,
`trainer:`), and the library takes them as arguments, so a notebook builds the same objects a
command line composes. Every default is written here; conf/*.yaml only overrides. Each checks its
own values when built and refuses a wrong one in one line naming the key.
"""

from __future__ import annotations

import copy
import dataclasses
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mnist_probe.cache import file_digest
from mnist_probe.checks import count, fraction, one_of, positive, refuse
from mnist_probe.folders import first_image, folder_classes, folder_counts, folder_digest
from mnist_probe.idx_files import idx_path, require_files
from mnist_probe.machine import gpu_present
from mnist_probe.names import COUNTS, FILES, SIZE

# ----------------------------------------------------------------------------- data


DIGITS = [str(d) for d in range(10)]


# Images per forward pass where nothing is learned (scores, code vectors, recordings, the shift grid):
# small enough that a batch's activations stay in the CPU's cache (make bench times it against 1000).
INFERENCE_BATCH = 64
FORMATS = ("idx", "folder")  # MNIST's four IDX files; an image folder (mnist_probe.folders)


@dataclass
class DataSpec:
    """Which data set, where it lives and which images each split holds (the config's `data:` node).
    The defaults are MNIST's; conf/data/*.yaml names another IDX data set of the same format
    (28×28 grey images, ten classes: Fashion-MNIST, KMNIST) by its title, its folder under root in
    torchvision's layout (the files may also lie flat in root, plain or gzipped) and its classes;
    or an image folder (format: folder): any size, grey or colour, its classes its sub-folders."""

    name: str = "MNIST"  # how tables and sentences name it
    format: str = "idx"  # one of FORMATS
    folder: str = "MNIST"  # torchvision's layout: root/FOLDER/raw/; else the four files flat in root
    classes: list[str] | None = field(default_factory=lambda: list(DIGITS))  # class k's; None: a folder's
    item: str = "digit"  # what one image shows, as sentences say it
    references: dict[str, float] = field(default_factory=dict)  # other CNNs' test accuracy on it, by name
    root: str = "data"
    channels: int | None = None  # an image folder's images read as 1 (grey) or 3 (colour); None: as its first
    size: int | None = None  # an image folder's images resized to size×size; None: its first image's size
    download: bool = False  # try to download only when the files are missing (needs internet)
    verify: bool = False  # check the four files' md5 sums
    val_size: int | None = 6000  # 54k train / 6k validation, split with split_seed; None: a tenth
    split_seed: int = 0
    eval_batch_size: int = INFERENCE_BATCH
    train_subset: int | None = None  # train on the first N images of the training split only
    test_subset: int | None = None  # score the CNN on the first N test images only
    # The training split's labels permuted (seeded by split_seed): a network can only memorise them
    # (the data-randomisation test of mnist_probe.sanity). Validation and test labels stay true.
    shuffle_labels: bool = False

    def __post_init__(self) -> None:
        one_of("data.format", self.format, FORMATS)
        if self.format == "folder":
            self._check_folder()
        elif self.classes is None or len(self.classes) != len(DIGITS):
            refuse("data.classes", self.classes, f"{len(DIGITS)} names, class 0's first (IDX files hold ten)")
        elif self.channels not in (None, 1) or self.size not in (None, SIZE):
            size = self.size not in (None, SIZE)
            refuse(
                "data.size" if size else "data.channels",
                self.size if size else self.channels,
                f"null: IDX images are 1×{SIZE}×{SIZE}; a network that reads another shape takes "
                f"model.input.{'size' if size else 'channels'}= (grey is replicated, images resized "
                "as its first step)",
            )
        if len(set(map(str, self.classes))) != len(self.classes):
            refuse("data.classes", self.classes, "distinct names, class 0's first")
        if self.verify and not self.study:
            refuse("data.verify", self.verify, "false: md5 sums are known for MNIST's files only")
        counts = self.counts
        if self.val_size is None:
            self.val_size = max(1, counts["train"] // 10)
        count("data.val_size", self.val_size, 1, counts["train"] - 1)
        count("data.split_seed", self.split_seed, 0)
        count("data.eval_batch_size", self.eval_batch_size)
        if self.train_subset is not None:
            count("data.train_subset", self.train_subset, 1, counts["train"] - self.val_size)
        if self.test_subset is not None:
            count("data.test_subset", self.test_subset, 1, counts["test"])

    def _check_folder(self) -> None:
        """An image folder's classes are its sub-folders' names (given ones must be those), its
        channels 1 or 3, its size a side of at least 8 pixels; it cannot be downloaded."""
        if self.download:
            refuse("data.download", self.download, "false: an image folder is read as it is")
        found = folder_classes(self.root)
        first_image(self.root)  # readable: the images' shape is read from it
        if self.classes is not None and list(map(str, self.classes)) != found:
            refuse("data.classes", self.classes, f"null or the folder's classes in order: {', '.join(found)}")
        self.classes = found
        if self.channels not in (None, 1, 3):
            refuse("data.channels", self.channels, "1 (grey), 3 (colour) or null (as the first image)")
        if self.size is not None:
            count("data.size", self.size, 8, 1024)

    @property
    def study(self) -> bool:
        """The study's own data set: only beside it do the study's figures mean anything."""
        return self.name == "MNIST" and self.format == "idx"

    @property
    def shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of every image a network reads: MNIST's 1×28×28 for IDX files; an
        image folder's channels and size, each as its first image's where not set."""
        if self.format == "idx":
            return (1, SIZE, SIZE)
        channels, height, width = first_image(self.root)
        return (self.channels or channels, self.size or height, self.size or width)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def counts(self) -> dict[str, int]:
        """How many images the train and test files hold."""
        return COUNTS if self.format == "idx" else folder_counts(self.root)

    def content(self) -> dict:
        """What decides the images of every split, for a cache key: the split settings and the sha256
        of each data file read (memoised: cache.file_digest), so that another data set of the same
        format under data.root is another key, and the same files in another folder the same key."""
        split = {k: getattr(self, k) for k in ("split_seed", "test_subset", "train_subset", "val_size")}
        if self.format == "folder":  # how the images are read decides them too
            split |= {"shape": list(self.shape)}
        split |= {"shuffle_labels": True} if self.shuffle_labels else {}  # unshuffled keys stay as they were
        return {**split, "files": self.files()}

    def files(self) -> dict[str, str]:
        """The sha256 of each of the four data files (they must be there: require_files first); of an
        image folder, one digest of every image file and its path in the folder."""
        if self.format == "folder":
            return {"folder": folder_digest(self.root)}
        require_files(self.root, self.folder, self.name)
        return {name: file_digest(idx_path(self.root, name, self.folder)) for name in FILES}


def is_onnx(checkpoint: str | Path) -> bool:
    """An ONNX file carries its own architecture: the model's class is not built for it."""
    return Path(str(checkpoint)).suffix.lower() == ".onnx"


# ----------------------------------------------------------------------------- model


# ----------------------------------------------------------------------------- training recipe

# cross_entropy: PyTorch's, on logits. clipped: Keras 2's categorical_crossentropy on softmax outputs,
# probabilities clipped to [1e-7, 1 - 1e-7] (no gradient from examples already that sure, right or
# wrong), as the study's Keras trained. label_smoothing: cross-entropy against 0.9/0.01 targets.
LOSSES = ("cross_entropy", "clipped", "label_smoothing")  # mnist_probe.lit.LOSS_FUNCTIONS implements them
KERAS_EPSILON = 1e-7  # keras.backend.epsilon(): the clipped loss's probabilities stay in [ε, 1 - ε]


@dataclass
class Augment:
    """Keras's ImageDataGenerator(rotation_range, zoom_range, width/height_shift_range), per batch."""

    _target_: str = "mnist_probe.data.KerasAugment"
    enabled: bool = True
    rotation: float = 10.0  # degrees
    zoom: float = 0.1
    shift: float = 0.1  # fraction of the 28-pixel side

    def __post_init__(self) -> None:
        fraction("train.augment.rotation", self.rotation, 180.0, closed=True)
        fraction("train.augment.zoom", self.zoom)
        fraction("train.augment.shift", self.shift)


# The two learning-rate schedules conf/ offers (train/scheduler=plateau|onecycle; schema stores them).
PLATEAU = {  # the study's: ReduceLROnPlateau on validation accuracy, stepped once an epoch
    "factory": {
        "_target_": "torch.optim.lr_scheduler.ReduceLROnPlateau",
        "_partial_": True,
        "mode": "max",
        "factor": 0.5,
        "patience": 3,
        "min_lr": 1.0e-05,
    },
    "monitor": "val_acc",
    "interval": "epoch",
}
ONECYCLE = {  # warm up to max_lr, then anneal to ~0, stepped every batch (total steps from the trainer)
    "factory": {
        "_target_": "torch.optim.lr_scheduler.OneCycleLR",
        "_partial_": True,
        "max_lr": 0.002,
        "pct_start": 0.2,
        "cycle_momentum": False,
    },  # plain RMSprop has no momentum to cycle
    "monitor": None,
    "interval": "step",
}


@dataclass
class Scheduler:
    """A learning-rate schedule: a partial scheduler spec, the metric it watches, how often it steps."""

    factory: dict[str, Any] = field(default_factory=dict)
    monitor: str | None = None
    interval: str = "epoch"

    def __post_init__(self) -> None:
        if "_target_" not in self.factory:
            refuse("train.scheduler.factory", self.factory, "a scheduler spec with a _target_")
        one_of("train.scheduler.interval", self.interval, ("epoch", "step"))
        if self.monitor not in (None, "val_acc", "val_loss", "train_loss"):
            refuse("train.scheduler.monitor", self.monitor, "null, val_acc, val_loss or train_loss")
        for key in ("max_lr", "min_lr", "factor"):
            value = self.factory.get(key)
            if value is not None and not positive(value):
                refuse(f"train.scheduler.factory.{key}", value, "a finite number > 0")


def _rmsprop() -> dict:
    return {
        "_target_": "torch.optim.RMSprop",
        "_partial_": True,
        "lr": 0.001,
        "alpha": 0.9,
        "eps": 1.0e-08,
    }  # Keras's RMSprop: rho 0.9


@dataclass
class Recipe:
    """How to train (the config's `train:` node). The defaults are the study's recipe as written:
    RMSprop(1e-3), ReduceLROnPlateau on val accuracy, batch 86, 30 epochs, the Keras augmentation,
    Keras 2's clipped loss. conf/train/default.yaml shortens it to what `make run` trains."""

    epochs: int = 30
    batch_size: int = 86  # per process: the global batch is batch_size × Hardware.world_size
    # Images an epoch trains on: the first of each epoch's shuffled order, rounded up to whole
    # batches (null: the whole training split). Half an epoch of 54k: 27000.
    epoch_images: int | None = None
    optimizer: dict[str, Any] = field(default_factory=_rmsprop)
    scheduler: Scheduler | None = field(default_factory=lambda: Scheduler(**copy.deepcopy(PLATEAU)))
    augment: Augment = field(default_factory=Augment)
    loss: str = "clipped"
    deterministic: bool = False
    channels_last: bool = True  # memory layout only: same math, faster convs on CPU
    # Training images on which mnist_probe.gap measures, each epoch, why val_acc exceeds train_acc
    # (0: not measured). Measuring changes no weight, so the CNN's cache key leaves it out.
    gap_images: int = 1000

    def __post_init__(self) -> None:
        count("train.epochs", self.epochs)
        count("train.batch_size", self.batch_size)
        if self.epoch_images is not None:
            count("train.epoch_images", self.epoch_images)
        count("train.gap_images", self.gap_images, 0)
        one_of("train.loss", self.loss, LOSSES)
        if "_target_" not in self.optimizer:
            refuse("train.optimizer", self.optimizer, "an optimizer spec with a _target_")
        lr = self.optimizer.get("lr")
        if lr is not None and not positive(lr):
            refuse("train.optimizer.lr", lr, "a finite number > 0")


# ----------------------------------------------------------------------------- hardware

# What Lightning's Trainer(precision=...) accepts (plus our 'auto'), and its accelerators.
PRECISIONS = (
    "auto",
    "32-true",
    "32",
    "bf16-mixed",
    "bf16-true",
    "bf16",
    "16-mixed",
    "16-true",
    "16",
    "64-true",
    "64",
)
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")
# Lightning's strategies, as tested here: auto (one device, or Lightning's pick for several) and
# ddp (tests/test_ddp.py); ddp_spawn and ddp_notebook would score and cache in the parent process,
# and are not tested, so not offered.
STRATEGIES = ("auto", "ddp")


@dataclass
class Hardware:
    """Where and how the training runs (the config's `trainer:` node, conf/trainer/*.yaml), in
    Lightning's own words. Only the precision and the number of processes change the weights."""

    accelerator: str = "auto"  # a GPU when present
    devices: int = 1  # processes per node
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "auto"  # the faster of 32-true and bf16-mixed on this machine, measured once
    progress_bar: bool = True

    def __post_init__(self) -> None:
        one_of("trainer.strategy", self.strategy, STRATEGIES)
        count("trainer.devices", self.devices)
        count("trainer.num_nodes", self.num_nodes)
        one_of("trainer.precision", self.precision, PRECISIONS)
        one_of("trainer.accelerator", self.accelerator, ACCELERATORS)
        if self.accelerator in ("gpu", "cuda") and not gpu_present():
            refuse("trainer.accelerator", self.accelerator, "this machine has no GPU: auto or cpu")
        apple = platform.system() == "Darwin" and platform.machine() == "arm64"
        if self.accelerator == "mps" and not apple:
            refuse("trainer.accelerator", self.accelerator, "mps needs Apple silicon: auto or cpu")
        if self.precision.startswith("16") and not gpu_present():
            refuse(
                "trainer.precision", self.precision, "fp16 needs a GPU; on a CPU: auto, 32-true, bf16-mixed"
            )

    @property
    def world_size(self) -> int:
        """How many processes share each step."""
        return self.devices * self.num_nodes


def plain(spec: Any) -> dict:
    """A spec as a plain dict (what Hydra's instantiate and a cache key take)."""
    return dataclasses.asdict(spec)
