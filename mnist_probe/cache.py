"""Keyed artifacts on disk: a config hash names them, a lock lets one writer in, renames publish."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock
from omegaconf import DictConfig, OmegaConf


def config_key(*parts: Any, length: int = 12) -> str:
    """A short stable hash of config parts (DictConfigs are resolved, dicts sorted)."""
    plain = [
        OmegaConf.to_container(p, resolve=True) if isinstance(p, DictConfig) else p for p in parts
    ]
    blob = json.dumps(plain, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call write(tmp) on a temp file beside path, then rename it over path.

    A reader sees either no file or a complete one, never a half-written file; on error the temp
    file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The temp name keeps the extension, for writers that pick a format by it (xgboost's .json).
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.tmp.", suffix=path.suffix)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: str | Path, obj: Any) -> Path:
    """Atomically write obj as indented JSON."""
    return atomic_write(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=2, default=str)))


def write_npz(path: str | Path, **arrays: Any) -> Path:
    """Atomically write arrays as an .npz file."""
    import numpy as np

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: np.savez would append .npz to a name
            np.savez(f, **arrays)

    return atomic_write(path, write)


@contextmanager
def locked(path: str | Path) -> Iterator[None]:
    """Hold an inter-process lock named after path (path.lock), so one process builds it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        yield
