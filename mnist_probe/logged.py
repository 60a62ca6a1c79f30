"""What a run logged to TensorBoard, read back from its event files: the tag groups of its stages,
so that a page says what is there (TensorBoard reads the same files)."""

from __future__ import annotations

from pathlib import Path

from mnist_probe.rows import TensorBoardRow


def tensorboard_rows(run_dir: Path, stages: list[str]) -> list[TensorBoardRow]:
    """What these stages of a run logged, by tag group (the tag's first part): how many tags, how many
    entries, which steps, and in which folder of the run."""
    from tensorboard.backend.event_processing import event_accumulator as ea  # only when reporting

    groups: dict[str, dict] = {}
    found = [e for stage in stages for e in sorted((run_dir / stage).rglob("events.out.tfevents.*"))]
    for events in found:
        acc = ea.EventAccumulator(str(events), size_guidance={ea.IMAGES: 0, ea.SCALARS: 0, ea.TENSORS: 0})
        acc.Reload()
        tags = acc.Tags()
        for kind, read in (("images", acc.Images), ("scalars", acc.Scalars)):
            for tag in tags.get(kind, []):
                group = groups.setdefault(
                    tag.split("/")[0],
                    {"kind": kind, "tags": 0, "entries": 0, "steps": set(), "where": events.parent},
                )
                steps = [e.step for e in read(tag)]
                group["tags"] += 1
                group["entries"] += len(steps)
                group["steps"].update(steps)
    rows = []
    for name, g in groups.items():
        steps = sorted(g["steps"])
        said = f"{steps[0]}..{steps[-1]}" if len(steps) > 1 else str(steps[0]) if steps else ""
        where = str(g["where"].relative_to(run_dir))
        rows.append(TensorBoardRow(name, g["kind"], g["tags"], g["entries"], said, where))
    return rows
