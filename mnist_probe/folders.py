"""An image folder in torchvision's ImageFolder layout, read without torch: ROOT/train/CLASS/*.png
and ROOT/test/CLASS/*.png (or JPEG), one sub-folder per class, the same classes in both. What the
config checks before any work starts: the classes, the file counts, the shape every image is read
as. mnist_probe.data decodes the images."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

from mnist_probe.errors import UserError

SPLITS = ("train", "test")
EXTENSIONS = (".png", ".jpg", ".jpeg")  # what torchvision.io.decode_image reads


@functools.cache
def folder_files(root: str, split: str) -> tuple[tuple[str, ...], tuple[tuple[Path, int], ...]]:
    """(class names, (file, class index) pairs) of ROOT/split, classes sorted by name as ImageFolder
    sorts them; or a one-line UserError naming what is missing."""
    where = Path(root).expanduser() / split
    if not where.is_dir():
        raise UserError(
            f"data.root={root} has no {split}/ folder ({where} is missing); data=folder "
            "reads ROOT/train/CLASS/*.png and ROOT/test/CLASS/*.png: set data.root to such a "
            "folder"
        )
    classes = tuple(sorted(p.name for p in where.iterdir() if p.is_dir() and not p.name.startswith(".")))
    if len(classes) < 2:
        raise UserError(
            f"{where} holds {len(classes)} class folder(s); a classifier needs at least two "
            "sub-folders, one per class, each holding that class's images"
        )
    files = []
    for k, name in enumerate(classes):
        found = sorted(p for p in (where / name).iterdir() if p.suffix.lower() in EXTENSIONS)
        if not found:
            raise UserError(
                f"{where / name} holds no {'/'.join(EXTENSIONS)} images; put the class's images "
                "there or remove the folder"
            )
        files += [(p, k) for p in found]
    return classes, tuple(files)


def folder_classes(root: str) -> list[str]:
    """The classes of an image folder: its train/ sub-folders, which test/ must repeat."""
    train, test = (folder_files(root, split)[0] for split in SPLITS)
    if train != test:
        odd = ", ".join(sorted(set(train) ^ set(test)))
        raise UserError(
            f"{Path(root).expanduser()}'s train/ and test/ hold different class folders "
            f"({odd} in one only); give both the same"
        )
    return list(train)


def folder_counts(root: str) -> dict[str, int]:
    """How many images each split holds."""
    return {split: len(folder_files(root, split)[1]) for split in SPLITS}


@functools.cache
def first_image(root: str) -> tuple[int, int, int]:
    """(channels, height, width) of the first training image: 1 for a grey image, 3 for any other
    (read from its header by Pillow; a palette or grey-with-alpha image counts as colour)."""
    from PIL import Image, UnidentifiedImageError

    path = folder_files(root, "train")[1][0][0]
    try:
        with Image.open(path) as image:
            mode, (width, height) = image.mode, image.size
    except (OSError, UnidentifiedImageError) as err:
        raise UserError(
            f"cannot read {path} ({type(err).__name__}); replace it with a PNG or JPEG image"
        ) from None
    return (1 if mode in ("L", "I", "I;16", "1") else 3), height, width


@functools.cache
def folder_digest(root: str) -> str:
    """One sha256 of every image of both splits, with its path in the folder (a cache key's part)."""
    digest, top = hashlib.sha256(), Path(root).expanduser()
    for split in SPLITS:
        for path, _ in folder_files(root, split)[1]:
            digest.update(str(path.relative_to(top)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()
