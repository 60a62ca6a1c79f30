"""Value checks that refuse in one line (the key, the value, what is allowed), torch-free: the
specs and the config schema validate with them."""

from __future__ import annotations

import math
from typing import Any, NoReturn

from mnist_probe.errors import UserError


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


def one_of(key: str, value: Any, allowed: tuple[str, ...]) -> None:
    """One of a fixed list of names."""
    if value not in allowed:
        refuse(key, value, ", ".join(allowed))
