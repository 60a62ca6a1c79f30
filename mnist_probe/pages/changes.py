"""What changes from one data set to another (+experiment=report with report.compare): the same
questions, asked of two report runs, answered side by side in computed sentences. Each number is
shown with its 95% interval where the run kept one; two numbers whose intervals overlap are said to
be unresolved rather than read as a change."""

from __future__ import annotations

from mnist_probe import study
from mnist_probe.intervals import UNRESOLVED, apart, or_point
from mnist_probe.pages.page_results import PageResults
from mnist_probe.tables import pct, shown

Number = tuple[float, list[float] | None]  # a value and its interval (None: the run kept none)


def _shown(number: Number, percent: bool) -> str:
    value, ci = number
    text = pct(value) if percent else f"{value:.2f}"
    if ci:
        text += f" ({shown(or_point(ci, value)) if percent else shown(or_point(ci, value), 1, 2, '')})"
    return text


def compare(label: str, this: Number, other: Number, names: tuple[str, str], percent: bool = True) -> str:
    """'label: A's number against B's (higher | lower | not resolved)': judged only where both runs
    kept an interval, 'not resolved' where the intervals overlap."""
    text = f"- {label}: {_shown(this, percent)} on {names[0]} against {_shown(other, percent)} on {names[1]}"
    if this[1] is None or other[1] is None:
        return text + "."
    side = apart(this[1], other[1])
    verdict = f"{'higher' if side > 0 else 'lower'} on {names[0]}" if side else UNRESOLVED
    return f"{text} ({verdict})."


def changes_section(this: PageResults, other: PageResults, names: tuple[str, str]) -> list[str]:
    """The section: this run's data set (names[0]) against the other's (names[1]), question by question."""
    here, there = names
    t, o = this.train, other.train
    recipe = "the same number of epochs" if t.epochs == o.epochs else f"{t.epochs} against {o.epochs} epochs"
    lines = [
        f"## From {there} to {here}: what changes",
        "",
        f"The same questions asked of the CNN of the report run that `report.compare` names, trained "
        f"on {there} ({recipe}), each on its own test images. Where both runs kept a 95% interval, "
        f"a difference counts only where the intervals do not overlap.",
        "",
    ]
    cnn_t, cnn_o = this.interpreters.cnn, other.interpreters.cnn
    lines.append(
        compare("The CNN's test accuracy", (cnn_t.test_acc, cnn_t.ci), (cnn_o.test_acc, cnn_o.ci), names)
    )
    # The study's question 2: how close do other classifiers get to the CNN from its code vectors?
    rows_o = {(r.interpreter, r.features): r for r in other.interpreters.rows}
    for r in this.interpreters.rows:
        p = rows_o.get((r.interpreter, r.features))
        if p is not None:
            lines.append(
                compare(
                    f"{r.interpreter} on {r.features}, minus the CNN's accuracy",
                    (r.test_acc - cnn_t.test_acc, r.minus_cnn_ci),
                    (p.test_acc - cnn_o.test_acc, p.minus_cnn_ci),
                    names,
                )
            )
    # The study's question 3: how the CNN holds up under translation.
    d_t, d_o = this.shift.dataset_row("CNN"), other.shift.dataset_row("CNN")
    if d_t and d_o:
        lines.append(
            compare(
                "Consistency under shifts (the top class agrees at two random shifts)",
                (d_t.consistency, d_t.consistency_ci),
                (d_o.consistency, d_o.consistency_ci),
                names,
            )
        )
        lines.append(
            compare(
                "A 1-pixel shift changes the top class",
                (d_t.change_1px, d_t.change_1px_ci),
                (d_o.change_1px, d_o.change_1px_ci),
                names,
            )
        )
    c_t, c_o = this.shift.curves.get("CNN"), other.shift.curves.get("CNN")
    dy = study.TURNING_DY[0]  # the first shift where the study's table turns
    if c_t and c_o and c_t.at(dy) is not None and c_o.at(dy) is not None:
        what = f"Test accuracy {-dy} pixels up"
        lines.append(compare(what, (c_t.at(dy), None), (c_o.at(dy), None), names))
    # Why validation exceeds training: the largest part of the last epoch's gap.
    if t.gap and o.gap:
        largest = (max(g[-1].parts().items(), key=lambda kv: abs(kv[1])) for g in (t.gap, o.gap))
        (part_t, v_t), (part_o, v_o) = largest
        gap_t, gap_o = 100 * t.gap[-1].gap, 100 * o.gap[-1].gap  # points
        lines.append(
            f"- The last epoch's validation minus training accuracy: {gap_t:+.2f} points on {here} "
            f"(largest part: {part_t}, {100 * v_t:+.2f}), {gap_o:+.2f} on {there} "
            f"({part_o}, {100 * v_o:+.2f})."
        )
    # Where the code layer keeps an image's position.
    if this.beyond and other.beyond:
        p_t = next((r for r in this.beyond.positions if r.layer == this.beyond.code_layer), None)
        p_o = next((r for r in other.beyond.positions if r.layer == other.beyond.code_layer), None)
        if p_t and p_o:
            lines.append(
                compare(
                    "How much of the shift the code layer keeps (position probe R²)",
                    (p_t.position_r2, p_t.position_r2_ci),
                    (p_o.position_r2, p_o.position_r2_ci),
                    names,
                    percent=False,
                )
            )
    a_t, a_o = this.activations, other.activations
    lines.append(
        compare(
            "Code vectors' cosine within a class ÷ between classes",
            (a_t.within_between_ratio, None),
            (a_o.within_between_ratio, None),
            names,
            percent=False,
        )
    )
    return [*lines, ""]
