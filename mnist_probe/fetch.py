"""MNIST where it is missing: its four IDX files downloaded by torchvision's downloader from
torchvision's mirrors, each checked against the md5 of the original uncompressed file, and put in
torchvision's layout (ROOT/MNIST/raw/) only once all four are there and right; offline, one line
saying where to put them. `make run` and `make test` call it (python -m mnist_probe.fetch ROOT)."""

from __future__ import annotations

import gzip
import hashlib
import logging
import shutil
import sys
import tempfile
from pathlib import Path

from mnist_probe.errors import UserError
from mnist_probe.idx_files import missing_files, raw_folder
from mnist_probe.names import FILES

log = logging.getLogger(__name__)


def md5_of(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download(name: str, mirrors: list[str], folder: Path) -> Path:
    """One file, NAME.gz from the first mirror that serves it, unpacked in folder and checked against
    its md5 (names.FILES); a UserError naming what every mirror answered."""
    from torchvision.datasets.utils import download_url  # torchvision only when something is missing

    answers = []
    log.info("downloading MNIST's %s", name)
    for mirror in mirrors:
        try:
            download_url(f"{mirror}{name}.gz", str(folder), f"{name}.gz")
        except Exception as err:  # no network, a refused connection, a 404: the next mirror
            first = (str(err).strip().splitlines() or [""])[0][:120]
            answers.append(f"{mirror}: {type(err).__name__} {first}".strip())
            continue
        path = folder / name
        try:
            with gzip.open(folder / f"{name}.gz") as packed, path.open("wb") as plain:
                shutil.copyfileobj(packed, plain)
        except (OSError, EOFError) as err:
            answers.append(f"{mirror}: not a gzip file ({err})")
            continue
        if md5_of(path) == FILES[name]:
            return path
        answers.append(f"{mirror}: md5 {md5_of(path)}, not MNIST's {FILES[name]}")
    raise UserError(f"no mirror served MNIST's {name} ({'; '.join(answers)})")


def fetch_mnist(root: str | Path, mirrors: list[str] | None = None) -> Path:
    """root/MNIST/raw/ holding MNIST's four files: as it is where they are there (plain or .gz, in
    torchvision's layout or flat in root), else downloaded (torchvision's mirrors by default) into a
    staging folder and moved there once all four are checked; a one-line UserError, with nothing
    left behind, where they cannot be had."""
    from torchvision.datasets import MNIST

    root = Path(root).expanduser()
    if not missing_files(root):
        return raw_folder(root)
    target = raw_folder(root)
    mirrors = list(MNIST.mirrors if mirrors is None else mirrors)
    made = [p for p in (target, *target.parents) if not p.exists()]  # the folders made for it
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent, prefix=".fetch-") as staging:
            paths = [_download(name, mirrors, Path(staging)) for name in missing_files(root)]
            target.mkdir(exist_ok=True)
            for path in paths:  # all four checked: moved in whole
                path.replace(target / path.name)
    except (UserError, OSError) as err:
        for folder in made:  # nothing left behind: the folders made for it go again, deepest first
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        if isinstance(err, OSError):
            raise UserError(
                f"could not write MNIST into {target} ({err.strerror}); set MNIST_ROOT to a writable folder"
            ) from None
        raise UserError(
            f"MNIST is not in {root}, and {err}; without internet, put its four files ({', '.join(FILES)}) "
            f"in {target}, or point MNIST_ROOT at a folder that holds MNIST/raw/"
        ) from None
    return target


def main(argv: list[str] | None = None) -> int:
    """python -m mnist_probe.fetch ROOT: MNIST in ROOT, downloaded where missing; 2 and one line on
    stderr where it cannot be had."""
    args = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if len(args) != 1:
        print(
            "usage: python -m mnist_probe.fetch ROOT (the folder that holds or will hold MNIST/raw/)",
            file=sys.stderr,
        )
        return 2
    try:
        where = fetch_mnist(args[0])
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    log.info("MNIST is in %s", where)
    return 0


if __name__ == "__main__":
    sys.exit(main())
