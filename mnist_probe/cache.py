"""Keyed artifacts on disk: a hash of every input names them, a lock lets one writer in, a rename
publishes them, and a recorded sha256 per file catches damage before a wrong file is reused."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from filelock import FileLock, Timeout
from omegaconf import DictConfig, ListConfig, OmegaConf

from mnist_probe.errors import UserError
from mnist_probe.machine import machine_cache

log = logging.getLogger(__name__)
T = TypeVar("T")
META = "meta.json"
UMASK = os.umask(0o022)
os.umask(UMASK)  # read it back: the process's umask, unchanged
# How long a process waits for another's lock on a cache entry (a training can take an hour or more).
LOCK_TIMEOUT = float(os.environ.get("MNIST_PROBE_LOCK_TIMEOUT", 12 * 3600))


def _plain(part: Any) -> Any:
    if isinstance(part, (DictConfig, ListConfig)):
        return OmegaConf.to_container(part, resolve=True)
    if dataclasses.is_dataclass(part) and not isinstance(part, type):
        return dataclasses.asdict(part)
    return part


def config_key(*parts: Any, length: int = 12) -> str:
    """A short stable hash of plain parts (dicts sorted; dataclasses and OmegaConf nodes as dicts)."""
    blob = json.dumps([_plain(p) for p in parts], sort_keys=True, default=str)
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
        os.chmod(tmp, 0o666 & ~UMASK)  # mkstemp makes 0600; a result file gets the user's usual mode
        flush(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def flush(path: Path) -> None:
    """Force a file's bytes to disk, so that a rename published after it never points at a hole."""
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def write_json(path: str | Path, obj: Any) -> Path:
    """Atomically write obj as indented JSON."""
    return atomic_write(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=2, default=str)))


def write_npz(path: str | Path, **arrays: Any) -> Path:
    """Atomically write arrays as an .npz file."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: np.savez would append .npz to a name
            np.savez(f, **arrays)

    return atomic_write(path, write)


@contextmanager
def locked(path: str | Path, timeout: float | None = None) -> Iterator[None]:
    """Hold an inter-process lock named after path (path.lock), so one process builds it. A process
    that has to wait says so in one line; after `timeout` seconds (MNIST_PROBE_LOCK_TIMEOUT,
    default 12 h) it gives up with a UserError naming the lock file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    timeout = LOCK_TIMEOUT if timeout is None else timeout
    lock = FileLock(str(path) + ".lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.info("waiting for %s: another process is computing it (lock %s.lock)", path.name, path)
        try:
            lock.acquire(timeout=timeout)
        except Timeout:
            raise UserError(
                f"gave up after {timeout:.0f} s waiting for {path}.lock, held by another process; "
                "if no other mnist_probe process runs, delete that file"
            ) from None
    try:
        yield
    finally:
        lock.release()


def sha256(path: Path) -> str:
    """The file's sha256, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


_digests: dict[tuple[str, int, int], str] = {}


def file_digest(path: str | Path, memo: Path | None = None) -> str:
    """The sha256 of a data file, memoised by its path, size and modification time: in this process
    and in the JSON file `memo` (default: digests.json in the machine cache), so a rerun reads no
    file again; a file changed in place, or copied elsewhere, is read once more."""
    path = Path(path).expanduser().resolve()
    stat = path.stat()
    stamp = (str(path), stat.st_size, stat.st_mtime_ns)
    if stamp in _digests:
        return _digests[stamp]
    memo = memo or machine_cache() / "digests.json"
    try:
        known = json.loads(memo.read_text())
    except (OSError, ValueError):
        known = {}
    size, mtime, digest = known.get(str(path), (None, None, None))
    if (size, mtime) != stamp[1:]:
        digest = sha256(path)
        known[str(path)] = [stat.st_size, stat.st_mtime_ns, digest]
        try:
            write_json(memo, known)
        except OSError:  # a read-only machine cache: the digest is still right, only not remembered
            pass
    _digests[stamp] = digest
    return digest


class Damaged(Exception):
    """A published cache entry that must not be used: what is wrong with it."""


def _read(entry: Path, load: Callable[[Path, dict], T]) -> tuple[T, dict]:
    """A published entry's value and meta, after checking every file against its recorded sha256;
    Damaged if meta.json is unreadable, a file is missing or changed, or the files do not load."""
    try:
        meta = json.loads((entry / META).read_text())
    except (OSError, ValueError) as err:
        raise Damaged(f"{META} unreadable ({type(err).__name__})") from None
    for name, digest in meta.get("files", {}).items():
        if not (entry / name).is_file():
            raise Damaged(f"{name} missing")
        if sha256(entry / name) != digest:
            raise Damaged(f"{name} does not match its recorded sha256")
    try:
        return load(entry, meta), meta
    except Exception as err:  # intact bytes that do not load: refused, never half-used
        raise Damaged(f"{type(err).__name__}: {(str(err).splitlines() or [''])[0][:200]}") from None


def get_or_compute(
    entry: str | Path,
    compute: Callable[[Path], dict],
    load: Callable[[Path, dict], T],
) -> tuple[T, dict, bool]:
    """The artifact in directory `entry`: loaded if published and intact, else computed, once.

    Under a lock on the entry: a published entry (its meta.json exists) whose files match their
    recorded sha256 is loaded with load(entry, meta). Otherwise compute(staging) writes the
    artifact's files into `entry.partial/` and returns its meta; the file hashes are added, meta
    is written last and the directory is renamed to `entry`, so a reader sees a whole entry or
    none. The staging dir has a stable name: a computation killed half way finds what it left
    there (training resumes from its last checkpoint). A damaged entry is logged in one line,
    moved aside to `entry.damaged-<time>` and computed again. Returns (value, meta, cached).
    """
    entry = Path(entry)
    if (entry / META).is_file() and not os.access(entry.parent, os.W_OK):
        try:  # a cache this process may not write (a shared copy): nobody can change it, no lock
            return *_read(entry, load), True
        except Damaged as problem:
            raise UserError(
                f"cache entry {entry} is damaged ({problem}) and the cache is read-only; "
                "point paths.cache at a writable folder"
            ) from None
    with locked(entry):
        if (entry / META).is_file():
            try:
                return *_read(entry, load), True
            except Damaged as damaged:
                problem = damaged
            name = f"{entry.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
            aside = entry.with_name(name)
            for n in itertools.count(2):  # damaged twice in one second by one process: a name of its own
                if not aside.exists():
                    break
                aside = entry.with_name(f"{name}~{n}")
            log.warning(
                "cache entry %s is damaged (%s): moved to %s, computing it again", entry, problem, aside.name
            )
            os.replace(entry, aside)
        elif entry.exists():  # a directory without meta.json was never published: not ours to trust
            shutil.rmtree(entry)
        staging = entry.with_name(entry.name + ".partial")
        staging.mkdir(parents=True, exist_ok=True)
        meta = compute(staging)
        files = sorted(p.name for p in staging.iterdir() if p.is_file() and p.name != META)
        for name in files:
            flush(staging / name)
        meta = {**meta, "files": {name: sha256(staging / name) for name in files}}
        write_json(staging / META, meta)
        os.replace(staging, entry)
        return load(entry, meta), meta, False
