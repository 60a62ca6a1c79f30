"""The sentences beside the study's conclusions (pages/conclusions.py): the loss comparison, the
train/val gap, and beyond the study (attributions, position probes, CKA), each judged from typed
results by a named threshold below."""

from __future__ import annotations

from mnist_probe.intervals import UNRESOLVED, apart, judged, or_point
from mnist_probe.pages.page_results import AugmentRow, CkaPair, LossRow
from mnist_probe.specs import KERAS_EPSILON
from mnist_probe.stages.results import AttributionCurve, BeyondResult, GapRow, PositionRow
from mnist_probe.tables import pct, shown, valued

# The loss comparison: the clipped loss keeps the CNN less sure when cross-entropy's largest logit is
# at least this many times the clipped one's; the clipped one is the surer at this ratio or below.
LESS_SURE_RATIO = 2.0
SURER_RATIO = 0.5


def loss_verdict(rows: list[LossRow]) -> str:
    """One sentence, from the numbers: does the clipped loss keep the CNN less sure?"""
    by = {r.loss: r for r in rows}
    if not {"cross_entropy", "clipped"} <= by.keys():
        return ""
    ce, k = by["cross_entropy"], by["clipped"]
    ratio = ce.max_abs_logit / max(k.max_abs_logit, 1e-9)
    numbers = (
        f"largest logit size {ce.max_abs_logit:,.0f} with cross_entropy against "
        f"{k.max_abs_logit:,.0f} "
        f"clipped (×{ratio:.2g}); test cross-entropy {ce.cross_entropy:.4f} against "
        f"{k.cross_entropy:.4f}; accuracy {pct(ce.test_acc)} against {pct(k.test_acc)}"
    )
    if k.errors_below_epsilon is not None and ce.errors_below_epsilon is not None:
        numbers += (
            f"; errors with P(true) < {KERAS_EPSILON:g}, where the clipped loss gives no gradient, "
            f"{ce.errors_below_epsilon} of {ce.errors} against {k.errors_below_epsilon} of {k.errors}"
        )
    if ratio >= LESS_SURE_RATIO and ce.cross_entropy > k.cross_entropy:
        return f"The clipped loss keeps the CNN less sure: {numbers}."
    if ratio <= SURER_RATIO:
        return f"The clipped loss does not keep the CNN less sure; it is the surer one here: {numbers}."
    return f"The loss makes little difference to how sure the CNN gets here: {numbers}."


def gap_sentence(rows: list[GapRow]) -> str:
    """What the gap between the progress bar's train_acc and val_acc is made of, first and last epoch."""
    if not rows:
        return "The training/validation gap was not measured (a CNN not trained here, or train.gap_images=0)."

    def said(row: GapRow) -> str:
        parts = row.parts()
        largest = max(parts, key=lambda p: abs(parts[p]))
        split = ", ".join(f"{p} {100 * v:+.1f}" for p, v in parts.items())
        side = "exceeds" if row.gap > 0 else "falls short of"
        which = f"the largest part: {largest}"
        if row.ci:  # the largest only where its interval stays clear of every other part's (in size)
            lo, hi = row.ci[largest]
            smallest = min(abs(lo), abs(hi)) if lo * hi > 0 else 0.0
            rivals = max(max(abs(v) for v in row.ci[p]) for p in parts if p != largest)
            ci = shown(row.ci[largest], unit=" points")
            unclear = f"the largest part {UNRESOLVED} ({largest}: {ci})"
            which = f"{which} ({ci})" if smallest > rivals else unclear
        return (
            f"after epoch {row.epoch} validation accuracy {side} the progress bar's train_acc by "
            f"{100 * abs(row.gap):.1f} points ({split}; {which})"
        )

    first, last = rows[0], rows[-1]
    text = said(first)
    if last is not first:
        text += f"; {said(last)}"
    return text[0].upper() + text[1:] + "."


# Beyond the study. Attributions "move with the digit" while their consistency at the largest shift
# stays at or above this; position is "given up" where a linear read-out of the shift (dx, dy)
# explains at most this share of its variance (R²) at the code layer.
MOVES_WITH_ABOVE = 0.8
GIVEN_UP_BELOW = 0.1
# Two networks "diverge with depth" when their same-layer CKA at the last probed layer is this much
# below the first layer's, and "converge" when it is this much above.
DEPTH_CHANGE = 0.05


def attribution_sentence(curves: list[AttributionCurve], item: str = "digit") -> str:
    """Whether each method's attribution moves with the image (a digit) under the study's shifts."""
    if not curves:
        return "No attribution was computed."
    parts = []
    for c in curves:
        last, near = c.consistency[-1], min(1, len(c.dys) - 1)  # the largest shift, and the smallest but 0
        interval = or_point(c.ci[-1] if c.ci else None, last)
        moves = judged(interval, MOVES_WITH_ABOVE, f"moves with the {item}", f"does not move with the {item}")
        if moves == UNRESOLVED:
            moves = f"is not resolved to move with the {item} or not"
        ci = f", {shown(interval, 1, 2, '')}; {MOVES_WITH_ABOVE} is the line" if c.ci else ""
        parts.append(
            f"{c.method.replace('_', ' ')} {moves} (correlation with the shifted attribution "
            f"{c.consistency[near]:.2f} at dy = {c.dys[near]}, {last:.2f} at dy = {c.dys[-1]}{ci})"
        )
    return "Under translation, " + "; ".join(parts) + "."


def position_sentence(rows: list[PositionRow], code_layer: str) -> str:
    """Where the network gives the digit's position up, and where it builds the class."""
    if not rows:
        return "No position probe was fitted."
    first, last = rows[0], next((r for r in rows if r.layer == code_layer), rows[-1])
    interval = or_point(last.position_r2_ci, last.position_r2)
    state = judged(interval, GIVEN_UP_BELOW, "still known", "given up")
    said = "not resolved: given up or still known" if state == UNRESOLVED else state
    ci = (
        f" ({shown(last.position_r2_ci, 1, 2, '')}; {GIVEN_UP_BELOW} is the line)"
        if last.position_r2_ci
        else ""
    )
    return (
        f"A linear read-out of the shift (dx, dy) explains R² = {first.position_r2:.2f} of it from "
        f"{first.layer} and {last.position_r2:.2f}{ci} from {last.layer}: position is "
        f"{said} by the code layer, while the class probe goes "
        f"from {pct(first.class_acc, 1)} to {pct(last.class_acc, 1)}. A classifier over the "
        f"{round(1 / first.position_chance)} shifts names the right one for "
        f"{pct(first.position_acc, 1)} and {pct(last.position_acc, 1)} of the images "
        f"(chance {pct(last.position_chance, 1)})."
    )


def cka_softest(result: BeyondResult) -> tuple[str, bool] | None:
    """The layer whose representation the largest shift changes least by linear CKA, and whether that
    is resolved (its interval lies above every other layer's); None where no CKA was computed."""
    if not result.cka_layers:
        return None
    at = {layer: result.shift_cka_at(layer)[-1] for layer in result.cka_layers}
    ci = {layer: or_point(result.shift_cka_ci_at(layer)[-1], at[layer]) for layer in at}
    softest = max(at, key=at.get)
    return softest, all(apart(ci[softest], ci[k]) == 1 for k in at if k != softest)


def shift_cka_sentence(result: BeyondResult) -> str:
    """Conclusion 4 layer by layer: which layer's representation a translation changes least, judged
    where that layer's interval lies above every other layer's."""
    if not result.cka_layers:
        return "No CKA was computed."
    at = {layer: result.shift_cka_at(layer)[-1] for layer in result.cka_layers}
    kept = {layer: result.shift_cka_ci_at(layer)[-1] for layer in result.cka_layers}  # None each if none
    softest, resolved = cka_softest(result)
    said = ", ".join(f"{k} {valued(v, kept[k])}" for k, v in at.items())
    verdict = (
        "the code layer changes least: translations deform code vectors more softly"
        if softest == result.code_layer
        else f"{softest}, not the code layer, changes least"
    )
    if not resolved:
        verdict = f"{UNRESOLVED} which layer changes least ({softest} by its point value)"
    return f"CKA between unshifted and dy = {result.cka_dys[-1]} images, per layer: {said}; {verdict}."


def sweep_position_sentence(rows: list[AugmentRow]) -> str:
    """How much position the code layer keeps in each CNN of the sweep: which keeps least and most,
    and in how many it is given up (each CNN's last probed layer is its code layer)."""
    probed = [r for r in rows if r.positions]
    if not probed:
        return "No position probe was fitted on the sweep's CNNs."
    code = {r.label(): r.positions[-1] for r in probed}
    least, most = min(code, key=lambda k: code[k].position_r2), max(code, key=lambda k: code[k].position_r2)
    given_up = [k for k, row in code.items() if row.position_r2 <= GIVEN_UP_BELOW]
    said = "; ".join(f"{k} {row.position_r2:.2f}" for k, row in code.items())
    verdict = (
        f"position is given up by the code layer in all {len(code)} CNNs"
        if len(given_up) == len(code)
        else f"position is still known at the code layer in {len(code) - len(given_up)} of the "
        f"{len(code)} CNNs"
    )
    return (
        f"R² of the shift (dx, dy) read linearly from the code layer ({code[least].layer}): {said}. "
        f"It keeps least position in {least} and most in {most}; {verdict}."
    )


def cka_pair_sentence(pair: CkaPair) -> str:
    """How alike two networks are layer by layer, and whether they part with depth."""
    same = pair.same_layers()
    if not same:
        return f"{pair.first} and {pair.second} share no layer name; the heatmap compares every pair."
    ci = pair.same_layers_ci()
    said = ", ".join(f"{k} {valued(v, ci[k])}" for k, v in same.items())
    (first_layer, first), (last_layer, last) = list(same.items())[0], list(same.items())[-1]
    overlap = apart(or_point(ci[first_layer], first), or_point(ci[last_layer], last)) == 0
    if overlap and abs(last - first) > DEPTH_CHANGE:
        verdict = f"{UNRESOLVED} whether they part or converge with depth (the two layers' intervals overlap)"
    elif last < first - DEPTH_CHANGE:
        verdict = "they part with depth: the later the layer, the less the two representations share"
    elif last > first + DEPTH_CHANGE:
        verdict = "they converge with depth: the code layers share more than the first layers"
    else:
        verdict = "about as alike at the code layer as at the first layer"
    return f"CKA between the same layer of {pair.first} and {pair.second}: {said}; {verdict}."
