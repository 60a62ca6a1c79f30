"""The sentences that say whether an explanation can be trusted (mnist_probe.sanity's tests): does a
method's map depend on the trained weights, on what the network learnt from its labels, and does it
pick the pixels the class needs; and so which sentences on the maps stand."""

from __future__ import annotations

from mnist_probe.intervals import UNRESOLVED, apart, judged, or_point
from mnist_probe.names import EDGE_CONTROL, RANDOM_ORDER
from mnist_probe.stages.results import BeyondResult, FaithfulnessRow, RandomisationRow
from mnist_probe.tables import valued

# A method "depends on the model" where, with every layer randomised, its maps' rank correlation with
# the trained network's maps (Spearman of |map|, mnist_probe.sanity) lies below this.
SIMILAR_BELOW = 0.5
# A constant map ranks no pixel: it is left out of the means. Where more than this share of a step's
# maps were left out, the step's verdict is "not resolved": the method produced no map to judge.
MOSTLY_CONSTANT = 0.25


def _last_step(rows: list[RandomisationRow], method: str, mode: str) -> RandomisationRow:
    """A method's row at the last step of `mode` (cascading: every layer randomised)."""
    return max((r for r in rows if r.method == method and r.mode == mode), key=lambda r: r.step)


def depends_on_model(
    rows: list[RandomisationRow], method: str, threshold: float = SIMILAR_BELOW, mode: str = "cascading"
) -> str:
    """The verdict on a method, from the last step of `mode` (cascading: every layer randomised;
    data: the network that memorised shuffled labels): 'depends on the model' where Spearman's
    interval lies below the threshold, 'does not depend on the model' where it lies at or above,
    else 'not resolved'."""
    last = _last_step(rows, method, mode)
    if last.left_out_share > MOSTLY_CONSTANT or last.spearman != last.spearman:  # NaN: no map scored
        return UNRESOLVED
    interval = or_point(last.spearman_ci, last.spearman)
    return judged(interval, threshold, "does not depend on the model", "depends on the model")


def left_out(share: float) -> str:
    """What a score leaves out, as its sentence says it: '' where nothing, else the share and why."""
    if not share:
        return ""
    judged_on = f", more than {MOSTLY_CONSTANT:.0%}: nothing to judge" if share > MOSTLY_CONSTANT else ""
    return f"; {share:.0%} of its maps constant, left out{judged_on}"


def _drawn(row: RandomisationRow) -> str:
    """A row's score, its interval, the spread of its draws and what it left out, as one phrase."""
    scored = [v for v in row.draw_means if v == v]  # a draw whose maps were all constant: NaN
    if row.spearman != row.spearman:
        return f"with no map scored{left_out(row.left_out_share)}"
    spread = f"; draws {min(scored):.2f} to {max(scored):.2f}" if len(scored) > 1 else ""
    return f"{valued(row.spearman, row.spearman_ci)}{spread}{left_out(row.left_out_share)}"


def _similarities(rows: list[RandomisationRow], mode: str, on: str) -> list[str]:
    """'method rho (CI): verdict' for each method's last step of `mode`, the verdict saying what the
    maps depend on (`on`: 'the model', 'what the network learnt')."""
    said = {
        "depends on the model": f"depends on {on}",
        "does not depend on the model": f"does not depend on {on}",
        UNRESOLVED: f"not resolved whether it depends on {on}",
    }
    parts = []
    for method in dict.fromkeys(r.method for r in rows if r.mode == mode):
        last = _last_step(rows, method, mode)
        parts.append(
            f"{method.replace('_', ' ')} {_drawn(last)}: {said[depends_on_model(rows, method, mode=mode)]}"
        )
    return parts


def _control(rows: list[RandomisationRow], mode: str) -> str:
    """Whether the edge control landed where a map of the input alone must (kept its similarity)."""
    if not any(r.method == EDGE_CONTROL for r in rows):
        return ""
    if depends_on_model(rows, EDGE_CONTROL, mode=mode) == "does not depend on the model":
        return " The edge control lands there, as it must."
    return (
        " The edge control does not land there, which a map of the input alone cannot do: the "
        "similarity measure is in doubt."
    )


def faithful_sentence(rows: list[FaithfulnessRow]) -> str:
    """Which methods' pixel orders take the class away sooner (deletion) than a random order does:
    judged where the two intervals do not overlap, else not resolved."""
    random = next((r for r in rows if r.method == RANDOM_ORDER and r.kind == "deletion"), None)
    if random is None:
        return "No deletion test was run."
    parts = []
    for r in rows:
        if r.kind != "deletion" or r.method == RANDOM_ORDER:
            continue
        side = apart(or_point(r.ci, r.area), or_point(random.ci, random.area))
        if r.left_out_share > MOSTLY_CONSTANT or r.area != r.area:
            side = 0
        said = {
            -1: "sooner than a random order",
            1: "no sooner than a random order",
            0: f"{UNRESOLVED} against a random order",
        }[side]
        area = valued(r.area, r.ci) if r.area == r.area else "with no map scored"
        parts.append(f"{r.method.replace('_', ' ')} {area}{left_out(r.left_out_share)}: {said}")
    return (
        f"Deleting pixels in each map's order, P(true class) falls (area under the curve; a random "
        f"order: {random.area:.2f}): {'; '.join(parts)}."
    )


def sanity_sentence(rows: list[RandomisationRow]) -> str:
    """Which methods' maps change when the network's weights are randomised (and the edge control,
    which must not)."""
    if not rows:
        return "No model-randomisation test was run."
    parts = _similarities(rows, "cascading", "the model")
    draws = max(len(r.draw_means) for r in rows)
    over = (
        f"mean of {draws} draws, each re-initialised with its own seed; the interval holds the draws "
        "and the images"
        if draws > 1
        else "one draw: the interval holds the images only, not the randomisation"
    )
    return (
        f"With every layer's weights randomised (cascading from the output down; {over}), the maps' "
        f"rank correlation with the trained network's is {'; '.join(parts)} ({SIMILAR_BELOW} is the "
        "line). "
        f"A method that does not depend on the model explains the image, not the network."
        f"{_control(rows, 'cascading')}"
    )


# The data-randomisation test is weak where the network fits fewer of its shuffled labels than this.
MEMORISED_ABOVE = 0.9


def data_randomisation_sentence(
    rows: list[RandomisationRow], accuracy: float | None, images: int | None
) -> str:
    """Which methods' maps change when the same network memorised shuffled labels instead of learning."""
    if not rows:
        return "No data-randomisation test was run."
    fit = f"it fits {accuracy:.1%} of them" if accuracy is not None else "its fit unmeasured"
    weak = (
        f"; below {MEMORISED_ABOVE:.0%}, it has not memorised them and the test is weak"
        if accuracy is not None and accuracy < MEMORISED_ABOVE
        else ""
    )
    parts = _similarities(rows, "data", "what the network learnt")
    return (
        f"Against the same network trained on {images or 'some'} training images with their labels "
        f"shuffled ({fit}{weak}; one such network, so the interval holds the images only), the maps' "
        "rank correlation with the trained network's is "
        f"{'; '.join(parts)} ({SIMILAR_BELOW} is the line).{_control(rows, 'data')}"
    )


def standing_sentence(result: BeyondResult) -> str:
    """Which of the sentences on where the network looks stand: those of methods whose maps depend on
    the trained weights (and on the labels learnt, where that was tested)."""
    if not result.sanity or not result.attributions:
        return "No sanity check was run: the sentences on the maps stand untested."
    tests = [(result.sanity, "cascading")]
    if result.data_randomisation:
        tests.append((result.data_randomisation, "data"))
    verdicts = {
        a.method: {depends_on_model(rows, a.method, mode=mode) for rows, mode in tests}
        for a in result.attributions
    }
    groups = {
        "stand (their maps depend on the network's weights and what it learnt)": [
            m for m, v in verdicts.items() if v == {"depends on the model"}
        ],
        "describe the image more than the network (a sanity check fails)": [
            m for m, v in verdicts.items() if "does not depend on the model" in v
        ],
        "stand unresolved (a check's interval crosses the line)": [
            m for m, v in verdicts.items() if v - {"depends on the model"} == {UNRESOLVED}
        ],
    }
    parts = [
        f"those on {' and '.join(m.replace('_', ' ') for m in methods)} {said}"
        for said, methods in groups.items()
        if methods
    ]
    return f"Of the sentences above on where the network looks, {'; '.join(parts)}."
