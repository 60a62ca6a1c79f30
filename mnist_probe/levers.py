"""Architecture against augmentation: what each lever of the reproduce stage's sweep buys, read off
its CNNs' shift metrics as differences, in points. Torch-free."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol


class Cell(Protocol):
    """One CNN of the sweep: its model and training shift, and its shift metrics (fractions)."""

    model: str
    shift: float
    consistency: float
    change_1px: float
    acc_grid_mean: float


@dataclass(frozen=True)
class Lever:
    """What one lever buys, in points: a model over the first at the same augmentation, or an
    augmentation over none with the same model."""

    lever: str
    held_fixed: str
    kind: str  # model or augment
    consistency: float
    change_1px: float
    acc_grid_mean: float

    def table_row(self) -> dict[str, Any]:
        return {
            "lever": self.lever,
            "held fixed": self.held_fixed,
            "consistency (points)": self.consistency,
            "change_1px (points)": self.change_1px,
            "acc_grid_mean (points)": self.acc_grid_mean,
        }


def levers(rows: Sequence[Cell]) -> list[Lever]:
    """What each lever buys, read off the sweep's rows: the consistency and 1-px flips gained by
    every architecture over the first model at the same augmentation, and by every augmentation
    over none with the same architecture."""
    cell = {(r.model, r.shift): r for r in rows}
    models = list(dict.fromkeys(r.model for r in rows))
    shifts = list(dict.fromkeys(r.shift for r in rows))
    out = []

    def gain(kind: str, lever: str, held: str, a: Cell, b: Cell) -> None:
        out.append(
            Lever(
                lever,
                held,
                kind,
                round(100 * (b.consistency - a.consistency), 1),
                round(100 * (b.change_1px - a.change_1px), 1),
                round(100 * (b.acc_grid_mean - a.acc_grid_mean), 1),
            )
        )

    first = models[0]
    for model in models[1:]:
        for value in shifts:
            if (first, value) in cell and (model, value) in cell:
                gain(
                    "model",
                    f"model {first} → {model}",
                    f"shift {value}",
                    cell[first, value],
                    cell[model, value],
                )
    if 0.0 in shifts:
        for model in models:
            for value in (v for v in shifts if v != 0.0):
                if (model, 0.0) in cell and (model, value) in cell:
                    gain(
                        "augment",
                        f"augment.shift 0 → {value}",
                        f"model {model}",
                        cell[model, 0.0],
                        cell[model, value],
                    )
    return out
