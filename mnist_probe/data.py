"""The data held in memory as uint8 tensors (MNIST's IDX files, or an image folder): the files, a
seeded train/val split, the scored test set,
the Lightning DataModule and the batch augmentation."""

from __future__ import annotations

import functools
import gzip
import hashlib
import logging
import math
import struct
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    RandomSampler,
    SequentialSampler,
    TensorDataset,
)
from torchvision.datasets import KMNIST, MNIST, FashionMNIST
from torchvision.datasets.utils import check_md5

from mnist_probe.errors import UserError, first_line
from mnist_probe.folders import folder_files
from mnist_probe.idx_files import idx_path, missing_files, raw_folder, require_files
from mnist_probe.names import COUNTS, FILES
from mnist_probe.outputs import NUM_CLASSES
from mnist_probe.specs import DataSpec

log = logging.getLogger(__name__)

DOWNLOADS = {"MNIST": MNIST, "FashionMNIST": FashionMNIST, "KMNIST": KMNIST}  # data.folder -> torchvision


def read_idx(path: Path) -> torch.Tensor:
    """An IDX file, plain or gzipped, as a uint8 tensor of the shape its header gives (torchvision's
    reader takes plain files in its own layout only)."""
    with gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb") as f:
        data = f.read()
    dims = data[3]
    shape = struct.unpack(f">{dims}I", data[4 : 4 + 4 * dims])
    return torch.frombuffer(bytearray(data[4 + 4 * dims :]), dtype=torch.uint8).reshape(shape)


def load_mnist(
    root: str | Path,
    split: str,
    download: bool = False,
    verify: bool = False,
    folder: str = "MNIST",
    name: str = "MNIST",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Read one split ('train' or 'test') of MNIST, or of another IDX data set in root/FOLDER/raw/ or
    flat in root (plain or .gz), as (uint8 images N×28×28, int64 labels N), checked."""
    missing = missing_files(root, folder)
    if missing and download:
        log.info("%s files missing under %s; trying to download", name, raw_folder(root, folder))
        try:
            DOWNLOADS.get(folder, MNIST)(str(root), train=split == "train", download=True)
        except Exception as err:  # no network is the usual cause: say what we looked for
            raise UserError(
                f"could not download {name} into {raw_folder(root, folder)} ({type(err).__name__}); "
                f"put the files {', '.join(FILES)} there or set data.root"
            ) from None
    require_files(root, folder, name)
    prefix = "train" if split == "train" else "t10k"
    paths = [idx_path(root, f"{prefix}-{kind}-ubyte", folder) for kind in ("images-idx3", "labels-idx1")]
    if verify:
        for path in paths:
            expected = FILES[path.name.removesuffix(".gz")]  # of the uncompressed file
            plain_md5 = hashlib.md5(gzip.open(path).read()).hexdigest() if path.suffix == ".gz" else None
            if not (plain_md5 == expected if plain_md5 else check_md5(str(path), expected)):
                raise UserError(
                    f"md5 mismatch for {path}: the file is corrupt or not the original MNIST; replace it "
                    "with a fresh copy"
                )
    try:
        images, labels = (read_idx(path) for path in paths)
    except (RuntimeError, ValueError, OSError, EOFError, struct.error) as err:
        raise UserError(
            f"could not read {name} {split} files in {paths[0].parent} ({type(err).__name__}: {err}); "
            "they look truncated or corrupt: replace them with fresh copies"
        ) from None
    _validate(images, labels, split, paths[0].parent, name)
    return images, labels.long()


def _validate(images: torch.Tensor, labels: torch.Tensor, split: str, where: Path, name: str) -> None:
    n = COUNTS[split]
    problem = None
    if images.dtype != torch.uint8 or tuple(images.shape) != (n, 28, 28):
        problem = f"images are {tuple(images.shape)} {images.dtype}, expected ({n}, 28, 28) uint8"
    elif labels.shape != (n,):
        problem = f"labels are {tuple(labels.shape)}, expected ({n},)"
    elif labels.min() < 0 or labels.max() > 9:
        problem = f"labels span {int(labels.min())}..{int(labels.max())}, expected 0..9"
    if problem:
        raise UserError(f"{name} {split} files in {where} are wrong: {problem}")


def load_data(data: DataSpec, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """One split ('train' or 'test') of the data set data names: load_mnist of IDX files, load_folder
    of an image folder."""
    if data.format == "folder":
        return load_folder(data.root, split, data.shape)
    return load_mnist(data.root, split, data.download, data.verify, data.folder, data.name)


@functools.cache
def load_folder(root: str, split: str, shape: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """One split of an image folder (mnist_probe.folders) as (uint8 images N×C×H×W, int64 labels N):
    each image decoded by torchvision, converted to shape's channels (grey or RGB) and, where its size
    differs, resized to shape's (antialiased bilinear). Read once per process."""
    from torchvision.io import ImageReadMode, decode_image
    from torchvision.transforms.v2.functional import resize

    channels, height, width = shape
    mode = ImageReadMode.GRAY if channels == 1 else ImageReadMode.RGB
    _, files = folder_files(root, split)
    images = torch.empty(len(files), channels, height, width, dtype=torch.uint8)
    for i, (path, _) in enumerate(files):
        try:
            image = decode_image(str(path), mode=mode)
        except RuntimeError as err:
            raise UserError(
                f"cannot decode {path} ({first_line(err)[:120]}); replace it with a PNG or JPEG image"
            ) from None
        if image.shape[-2:] != (height, width):
            image = resize(image, [height, width], antialias=True)
        images[i] = image
    return images, torch.tensor([label for _, label in files], dtype=torch.long)


def split_tensors(data: DataSpec, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images and labels of 'train' or 'val' (the seeded split), 'test' (all 10k) or 'scored'
    (the test images the CNN is scored on: all 10k, or the first data.test_subset of them)."""
    if split in ("test", "scored"):
        images, labels = load_data(data, "test")
        n = (data.test_subset or len(labels)) if split == "scored" else len(labels)
        return images[:n], labels[:n]
    if split not in ("train", "val"):
        raise ValueError(f"unknown split {split!r}: train, val, test or scored")
    return _train_val(data, *load_data(data, "train"))[split]


def _train_val(data: DataSpec, x: torch.Tensor, y: torch.Tensor) -> dict[str, tuple[torch.Tensor, ...]]:
    """The training images split into 'train' and 'val' by the seeded permutation; with
    data.shuffle_labels, the train split's labels permuted by the next draw of the same generator."""
    generator = torch.Generator().manual_seed(data.split_seed)
    perm = torch.randperm(len(x), generator=generator)
    train, val = perm[data.val_size :][: data.train_subset], perm[: data.val_size]
    labels = y[train]
    if data.shuffle_labels:
        labels = labels[torch.randperm(len(labels), generator=generator)]
    return {"train": (x[train], labels), "val": (x[val], y[val])}


def first_of_each_class(labels: torch.Tensor, classes: int = NUM_CLASSES) -> list[int]:
    """Index of the first image of each class 0..classes-1 (the stages' default picks), or a one-line
    UserError naming a class no image holds."""
    missing = [k for k in range(classes) if not (labels == k).any()]
    if missing:
        raise UserError(
            f"no test image of class {missing[0]} among the {len(labels):,} read; every "
            "class needs test images (a larger data.test_subset, or images in its test "
            "folder)"
        )
    return [int((labels == k).nonzero()[0]) for k in range(classes)]


class KerasAugment(torch.nn.Module):
    """The study's ImageDataGenerator (rotation, zoom, shift; no flip) as one batched affine warp.

    Each image gets its own random affine matrix; `F.grid_sample` applies all of them in one call,
    on whatever device the batch is on. Keras fills with the nearest pixel ('border' here).
    """

    def __init__(
        self, enabled: bool = True, rotation: float = 10.0, zoom: float = 0.1, shift: float = 0.1
    ) -> None:
        super().__init__()
        self.enabled, self.rotation, self.zoom, self.shift = enabled, rotation, zoom, shift

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.enabled or (self.rotation == 0 and self.zoom == 0 and self.shift == 0):
            return x
        n, dev = x.shape[0], x.device

        def uniform(half_width: float) -> torch.Tensor:
            return (torch.rand(n, device=dev) * 2 - 1) * half_width

        angle = uniform(math.radians(self.rotation))
        zx, zy = 1 + uniform(self.zoom), 1 + uniform(self.zoom)
        # width_shift_range is a fraction of the image; affine_grid works in [-1, 1], i.e. 2 units.
        tx, ty = uniform(2 * self.shift), uniform(2 * self.shift)
        cos, sin = torch.cos(angle), torch.sin(angle)
        theta = torch.stack(
            [torch.stack([cos * zx, -sin * zy, tx], 1), torch.stack([sin * zx, cos * zy, ty], 1)], 1
        ).to(x.dtype)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 N×H×W (MNIST's) or N×C×H×W to float N×C×H×W in [0, 1], as Keras's /255; images already
    float are taken as scaled (only the channel axis is added where missing)."""
    if images.dim() == 3:
        images = images.unsqueeze(1)
    return images.float().div_(255.0) if images.dtype == torch.uint8 else images.float()


class ResumableBatches(BatchSampler):
    """Batches of indices that can start part-way through an epoch: the first `skip` batches of the
    next pass are drawn and dropped, so the shuffling generator advances exactly as in a whole pass;
    `epoch_start` keeps the generator's state from before the current pass drew its order."""

    def __init__(self, sampler, batch_size: int) -> None:
        super().__init__(sampler, batch_size, drop_last=False)
        self.skip = 0
        self.epoch_start: torch.Tensor | None = None
        self._torch_rng: torch.Tensor | None = None

    def resume(self, skip: int, torch_rng: torch.Tensor) -> None:
        """Leave out the next pass's first `skip` batches, and set torch's global generator to
        torch_rng as that pass begins: after the DataLoader's iterator has drawn its seed from it,
        as the uninterrupted pass did before its first batch."""
        self.skip, self._torch_rng = skip, torch_rng

    def __iter__(self):
        generator = getattr(self.sampler, "generator", None)
        self.epoch_start = generator.get_state() if generator is not None else None
        skip, self.skip = self.skip, 0
        if self._torch_rng is not None:
            torch.set_rng_state(self._torch_rng)
            self._torch_rng = None
        for i, batch in enumerate(super().__iter__()):
            if i >= skip:
                yield batch


def batch_loader(
    images: torch.Tensor, labels: torch.Tensor, batch_size: int, shuffle: torch.Generator | None = None
) -> DataLoader:
    """Whole batches indexed straight out of in-memory tensors: no per-sample Python, no collate.
    With a generator, each pass draws a new order from it; without, the order is the tensors'."""
    ds = TensorDataset(images, labels)
    sampler = RandomSampler(ds, generator=shuffle) if shuffle is not None else SequentialSampler(ds)
    return DataLoader(ds, sampler=ResumableBatches(sampler, batch_size), batch_size=None)


class ImageDataModule(pl.LightningDataModule):
    """A data set's images in memory (MNIST's: train 54k / val 6k, seeded), its scored test set; uint8
    to the device."""

    def __init__(self, data: DataSpec, batch_size: int = 86, augment: KerasAugment | None = None) -> None:
        super().__init__()
        if batch_size < 1:
            raise UserError(f"batch size must be at least 1, got {batch_size} (set train.batch_size)")
        self.data, self.batch_size = data, batch_size
        self.augment = augment or KerasAugment(enabled=False)
        self.tensors: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        # The shuffling order's own generator: its state rides in the checkpoint (state_dict).
        self.shuffle = torch.Generator().manual_seed(data.split_seed)
        self._train_batches: ResumableBatches | None = None
        self._resume: tuple[int, torch.Tensor] | None = None  # part-way: (batches done, torch's state)

    def setup(self, stage: str | None = None) -> None:
        if not self.tensors:  # the 60k training images read once for both splits
            train = load_data(self.data, "train")
            self.tensors = {**_train_val(self.data, *train), "test": split_tensors(self.data, "scored")}
        if self.trainer is not None:
            self.hold_on(self.trainer.strategy.root_device)

    def hold_on(self, device: torch.device | str) -> None:
        """Keep the training and validation images on device (a GPU) once, so that every batch is
        indexed there and nothing is copied per batch; on the CPU, nothing moves. The scored test
        set stays on the CPU, where the CNN is scored after training."""
        if torch.device(device).type != "cpu":
            for split in ("train", "val"):
                self.tensors[split] = tuple(t.to(device) for t in self.tensors[split])

    def train_dataloader(self) -> DataLoader:
        loader = batch_loader(*self.tensors["train"], self.batch_size, self.shuffle)
        self._train_batches = loader.sampler
        if self._resume is not None:
            loader.sampler.resume(*self._resume)
            self._resume = None
        return loader

    def val_dataloader(self) -> DataLoader:
        return batch_loader(*self.tensors["val"], self.data.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        return batch_loader(*self.tensors["test"], self.data.eval_batch_size)

    def state_dict(self) -> dict:
        """Saved in every checkpoint: the shuffling generator, the batches of this epoch done, and
        torch's global generator (augmentation, dropout), so that a resumed training draws exactly
        what an uninterrupted one would have drawn next. Stopped part-way through an epoch (a
        signal), the generator is saved as it was before the epoch drew its order, so that the
        resumed epoch draws the same order and leaves out the batches done."""
        batches, shuffle, done = self._train_batches, self.shuffle.get_state(), 0
        if self.trainer is not None and batches is not None and batches.epoch_start is not None:
            steps = self.trainer.fit_loop.epoch_loop.batch_progress.current.completed
            if 0 < steps < self.trainer.num_training_batches:  # part-way through the epoch
                shuffle, done = batches.epoch_start, steps
        return {"shuffle": shuffle, "batches_done": done, "torch_rng": torch.get_rng_state()}

    def load_state_dict(self, state: dict) -> None:
        self.shuffle.set_state(state["shuffle"])
        done = state.get("batches_done", 0)
        if done:  # Lightning restores this before it asks for the loader: the loader resumes
            self._resume = (done, state["torch_rng"])
        else:
            torch.set_rng_state(state["torch_rng"])

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        # Scale on the device (uint8 crosses the bus, 4x less than float), augment only in training.
        x, y = batch
        x = to_float(x)
        if self.trainer is not None and self.trainer.training:
            x = self.augment(x)
        return x, y
