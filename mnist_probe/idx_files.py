"""MNIST's format on disk, read without torch: where a data set's four IDX files are (torchvision's
layout or flat, plain or gzipped), and whether their headers and sizes hold what they promise."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

from mnist_probe.errors import UserError
from mnist_probe.names import COUNTS, FILES, SIZE


def raw_folder(root: str | Path, folder: str = "MNIST") -> Path:
    """Where torchvision keeps a data set's uncompressed IDX files."""
    return Path(root).expanduser() / folder / "raw"


def idx_path(root: str | Path, name: str, folder: str = "MNIST") -> Path | None:
    """Where one of the four IDX files is: in torchvision's layout (root/FOLDER/raw/) or flat in root
    (as Debian's dataset packages install them), plain or gzipped; None where it is in neither."""
    places = (raw_folder(root, folder), Path(root).expanduser())
    return next((p / f for p in places for f in (name, f"{name}.gz") if (p / f).is_file()), None)


def missing_files(root: str | Path, folder: str = "MNIST") -> list[str]:
    """The IDX files root lacks."""
    return [name for name in FILES if idx_path(root, name, folder) is None]


def idx_problem(path: Path, images: bool, count: int) -> str | None:
    """What is wrong with an IDX file's header and size against the count MNIST promises, if anything
    (IDX: a magic number 2051 for images / 2049 for labels, the count, for images 28 and 28, then
    one byte an image pixel or label). A gzipped file's size is checked when it is read."""
    fields = 4 if images else 2
    with gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb") as f:
        try:
            header = f.read(4 * fields)
        except (OSError, EOFError) as err:
            return f"not a readable gzip file ({err})"
    if len(header) < 4 * fields:
        return f"{len(header)} bytes, shorter than its header"
    magic, n, *dims = struct.unpack(f">{fields}I", header)
    if magic != (2051 if images else 2049):
        return f"magic number {magic}, expected {2051 if images else 2049}"
    if n != count or (images and dims != [SIZE, SIZE]):
        return f"a header for {n} {'×'.join(map(str, dims)) + ' ' if images else ''}items, expected {count}"
    if path.suffix == ".gz":
        return None
    size, expected = path.stat().st_size, 4 * fields + count * (SIZE * SIZE if images else 1)
    return None if size == expected else f"{size:,} bytes where its header promises {expected:,}"


def require_files(root: str | Path, folder: str = "MNIST", name: str = "MNIST") -> None:
    """The four IDX files are there and their headers and sizes hold the counts they promise, or a
    one-line UserError naming the file and what to do (read without torch, in milliseconds)."""
    missing = missing_files(root, folder)
    if missing:
        where = "MNIST_ROOT (or data.root=...)" if name == "MNIST" else "data.root"
        raise UserError(
            f"{name} not found: neither {raw_folder(root, folder)} nor {Path(root).expanduser()} holds "
            f"{', '.join(missing)} (plain or .gz); set {where} to the folder holding {folder}/raw/ or "
            "the four files, or pass data.download=true where there is internet"
        )
    for file in FILES:
        count = COUNTS["train" if file.startswith("train") else "test"]
        path = idx_path(root, file, folder)
        problem = idx_problem(path, "images" in file, count)
        if problem:
            raise UserError(
                f"{name} file {path} is truncated or corrupt ({problem}); replace it with a fresh copy"
            )
