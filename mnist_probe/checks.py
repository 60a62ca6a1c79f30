"""Value checks that refuse in one line (the key, the value, what is allowed), torch-free: the
specs and the config schema validate with them."""

from __future__ import annotations

import math
import pickletools
import zipfile
from pathlib import Path
from typing import Any, NoReturn

from mnist_probe.errors import UserError, pickled_code


def refuse(key: str, value: Any, allowed: str) -> NoReturn:
    """Raise the one-line refusal: key, value, what is allowed."""
    raise UserError(f"{key}={value!r} is not allowed: {allowed}")


def count(key: str, value: Any, low: int = 1, high: int | None = None) -> None:
    """A whole number in [low, high]."""
    whole = isinstance(value, int) and not isinstance(value, bool)
    if not whole or value < low or (high is not None and value > high):
        refuse(
            key,
            value,
            f"a whole number from {low} to {high}" if high is not None else f"a whole number >= {low}",
        )


def fraction(key: str, value: Any, high: float = 1.0, closed: bool = False) -> None:
    """A number in [0, high) (or [0, high] when closed)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or value > high or (value == high and not closed):
        refuse(key, value, f"a number in [0, {high}{']' if closed else ')'}")


def positive(value: Any) -> bool:
    """A finite number > 0 (not a bool)."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return number and math.isfinite(value) and value > 0


def one_of(key: str, value: Any, allowed: tuple[str, ...]) -> None:
    """One of a fixed list of names."""
    if value not in allowed:
        refuse(key, value, ", ".join(allowed))


# What a weights-only torch.load rebuilds tensors and state dicts with: anything else a pickle names
# (a whole nn.Module, a class of the user's) is code that loading would run.
# Of Python's builtins, only the containers and numbers a weights-only load accepts: print, eval or
# getattr named in a pickle would run.
TENSOR_GLOBALS = ("torch._utils.", "torch.serialization.", "collections.OrderedDict", "_codecs.encode")
SAFE_BUILTINS = {
    f"{module}.{name}"
    for module in ("builtins", "__builtin__")
    for name in (
        "set",
        "frozenset",
        "bytearray",
        "bytes",
        "slice",
        "complex",
        "int",
        "float",
        "bool",
        "str",
        "tuple",
        "list",
        "dict",
    )
}


def pickled_classes(path: str | Path) -> list[str]:
    """The classes and functions a torch.save file's pickles name besides those that rebuild tensors
    and dicts (torch's storages and dtypes included), read without unpickling anything: the data.pkl
    of a zip file (torch.save since 1.6, Lightning's .ckpt), or the pickles one after another of
    torch.save's legacy format and of a plain pickle.dump; [] for a file that is neither."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                pickle = next((n for n in z.namelist() if n.endswith("/data.pkl") or n == "data.pkl"), None)
                ops = list(pickletools.genops(z.read(pickle))) if pickle else []
        else:
            ops = _legacy_ops(Path(path))
    except (zipfile.BadZipFile, OSError, ValueError):
        return []
    names, strings, memo = [], [], {}
    for op, arg, _ in ops:
        if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8"):
            strings.append(arg)
        elif op.name == "MEMOIZE":
            memo[len(memo)] = strings[-1] if strings else None
        elif op.name in ("BINPUT", "LONG_BINPUT", "PUT"):
            memo[int(arg)] = strings[-1] if strings else None
        elif op.name in ("BINGET", "LONG_BINGET", "GET"):
            strings.append(memo.get(int(arg)))
        elif op.name == "GLOBAL":
            names.append(arg.replace(" ", "."))
        elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
            names.append(".".join(map(str, strings[-2:])))
        elif op.name == "STOP":  # the next pickle numbers its memo afresh
            memo.clear()
    torch_own = [n for n in names if n.startswith("torch.") and n.count(".") == 1]  # FloatStorage, float32
    safe = set(torch_own) | SAFE_BUILTINS
    return sorted({n for n in names if not n.startswith(TENSOR_GLOBALS) and n not in safe})


def no_pickled_code(path: str | Path, shown: object = None) -> None:
    """A one-line refusal of a model file whose pickle names classes or functions that loading would
    run (pickled_classes), before torch reads it; `shown`: how to name the file (default: path)."""
    classes = pickled_classes(path)
    if classes:
        more = f" and {len(classes) - 2} more" if len(classes) > 2 else ""
        raise pickled_code(path if shown is None else shown, ", ".join(classes[:2]) + more)


# torch.save's legacy format: a magic number, the protocol, system info, the object, its storages'
# keys, each a pickle of its own, then the storages' raw bytes.
LEGACY_PICKLES = 5


def _legacy_ops(path: Path) -> list:
    """The opcodes of the pickles a non-zip file starts with (up to LEGACY_PICKLES, stopping at the
    first byte that starts no pickle: the raw storages); [] for a file that is no pickle."""
    ops: list = []
    with path.open("rb") as f:
        for _ in range(LEGACY_PICKLES):
            if f.read(1) != b"\x80":  # every pickle of protocol 2 or later opens with PROTO
                break
            f.seek(-1, 1)
            ops += list(pickletools.genops(f))
    return ops


def creatable(key: str, path: str | Path, value: object = None) -> None:
    """A folder that exists or can be made (its missing folders made, then removed again, to find
    out), or a one-line refusal naming the key: a file in the way, no permission, a name too long,
    a read-only file system."""
    value = path if value is None else value
    wanted = where = Path(path).expanduser().absolute()
    made: list[Path] = []
    try:
        missing = []
        while not where.exists():
            missing.append(where)
            where = where.parent
        if where == wanted and not where.is_dir():
            raise UserError(f"{key}={value} is a file, not a folder; set {key} to a folder")
        if not where.is_dir():
            raise UserError(
                f"{key}={value} cannot be made: {where} is not a folder you can write; set {key} "
                "to a folder you can write"
            )
        for folder in reversed(missing):
            folder.mkdir()
            made.append(folder)
    except OSError as err:
        why = err.strerror or type(err).__name__
        if isinstance(err, PermissionError):
            why = f"{where} is not a folder you can write"
        raise UserError(f"{key}={value} cannot be made: {why}; set {key} to a folder you can write") from None
    finally:
        for folder in reversed(made):
            folder.rmdir()
