"""The study's four conclusions, and the loss comparison, judged from the numbers: each verdict is a
small function of typed results, and each threshold it judges by is a named constant below."""

from __future__ import annotations

from mnist_probe import study
from mnist_probe.intervals import UNRESOLVED, apart, judged, or_point, shown, valued
from mnist_probe.names import SAMPLE_SHAPE, layer_label
from mnist_probe.stages.page_results import AugmentRow, CkaPair, Conclusion, LossRow, PageResults, Setting
from mnist_probe.stages.results import AttributionCurve, BeyondResult, GapRow, PositionRow
from mnist_probe.tables import pct

# 1. The code vectors keep what the classes need: the worst interpreter on them scores within this
#    much of the CNN's own softmax.
CODES_KEEP_WITHIN = 0.01
# 2. Position sensitive: accuracy at this vertical shift falls below this.
POSITION_DY = -4
SENSITIVE_BELOW = 0.9
# 3. Not continuous: P(true) jumps by more than this between neighbouring 1-px shifts, or the top-1
#    class changes under a 1-px shift for more than this share of (image, shift) pairs.
JUMP_ABOVE = 0.5
CHANGE_1PX_ABOVE = 0.05
# The loss comparison: the clipped loss keeps the CNN less sure when cross-entropy's largest logit is
# at least this many times the clipped one's; the clipped one is the surer at this ratio or below.
LESS_SURE_RATIO = 2.0
SURER_RATIO = 0.5


def trained_shifts(setting: Setting) -> str:
    """How the CNN's training moved its images: by up to so many pixels, or not at all."""
    if not setting.trained_shift_px:
        return "trained without random shifts"
    return f"trained with random shifts up to {setting.trained_shift_px:.1f} px"


def image_size(shape: tuple[int, int, int]) -> str:
    """How many numbers an image is: '28×28 = 784-pixel' (grey), '3×32×32 = 3,072-value' (colour)."""
    channels, height, width = shape
    if channels == 1:
        return f"{height}×{width} = {height * width:,}-pixel"
    return f"{channels}×{height}×{width} = {channels * height * width:,}-value"


def codes_reduce_dimensionality(r: PageResults, shape: tuple[int, int, int] = SAMPLE_SHAPE) -> Conclusion:
    """1. Code vectors in hidden layers reduce dimensionality (and keep what the classes need)."""
    codes, act = r.interpreters.accuracies("codes"), r.activations
    worst = min(codes, key=codes.get)
    row = next(x for x in r.interpreters.rows if x.features == "codes" and x.interpreter == worst)
    gap = codes[worst] - r.train.test_acc
    # judged on the interval of the paired difference where there is one; results without: the number
    interval = or_point(row.minus_cnn_ci, gap)
    verdict = judged(interval, -CODES_KEEP_WITHIN, "supported", "not supported")
    return Conclusion(
        "Code vectors in hidden layers of CNN reduce the dimensionality of images.",
        verdict,
        f"Each {image_size(shape)} image becomes a {act.code_dims}-d code vector "
        f"({layer_label(act.code_layer)}). "
        f"The code keeps what the classes need: every interpreter fitted "
        f"on it alone scores {pct(min(codes.values()))}–{pct(max(codes.values()))} "
        f"(worst: {worst}), against {pct(r.train.test_acc)} for the CNN's own softmax"
        + (
            f" ({worst} minus the CNN: {100 * gap:+.2f} points, {shown(row.minus_cnn_ci, unit=' points')} on "
            f"the same test images; within {100 * CODES_KEEP_WITHIN:.0f} point is what 'keeps' means)"
            if row.minus_cnn_ci
            else ""
        )
        + ". It is also "
        f"organised by class: mean cosine {act.within_class_cosine:.3f} within a class vs "
        f"{act.between_class_cosine:.3f} between classes (ratio {act.within_between_ratio:.2f}, "
        f"{act.n_codes} test images).",
    )


def position_sensitive(r: PageResults) -> Conclusion:
    """2. Information learned is position sensitive; convolution is the key to accuracy."""
    codes, pixels = r.interpreters.accuracies("codes"), r.interpreters.accuracies("pixels")
    shift, unaug = r.shift, r.augment.unaugmented() if r.augment else None
    gain = min(codes.values()) - max(pixels.values()) if pixels else None
    grid = shift.dataset_row("CNN")
    curve = shift.curves.get("CNN")
    at_dy = curve.at(POSITION_DY) if curve else None
    unaug_at_dy = unaug.curve.at(POSITION_DY) if unaug is not None else None
    conv_key = bool(pixels) and min(codes.values()) > max(pixels.values())
    ours_sensitive = at_dy is not None and at_dy < SENSITIVE_BELOW
    unaug_sensitive = unaug_at_dy is not None and unaug_at_dy < SENSITIVE_BELOW
    position = (
        "supported"
        if ours_sensitive
        else "supported only without shift augmentation"
        if unaug_sensitive
        else "not supported"
    )
    text = (
        f"Convolution as the key to accuracy: the same interpreters reach {pct(min(codes.values()))} or "
        f"more on the CNN's code vectors but at most {pct(max(pixels.values()) if pixels else None)} "
        f"on raw pixels ({'+' if gain and gain > 0 else ''}{pct(gain)} for the worst code-vector "
        f"interpreter over the best pixel one). "
        f"Position sensitivity depends on the training augmentation: over "
        f"{shift.samples} test images, this CNN ({trained_shifts(r.setting)}) keeps {pct(at_dy)} accuracy "
        f"at dy = {POSITION_DY} "
        f"and a mean of {pct(grid.acc_grid_mean if grid else None)} over the "
        f"±{r.setting.radius} px grid."
    )
    if unaug is not None:
        text += (
            f" Trained without shift augmentation ({r.augment.recipe} recipe), the CNN "
            f"falls to {pct(unaug_at_dy)} at dy = {POSITION_DY} (grid mean {pct(unaug.acc_grid_mean)}): "
            "what the CNN learned is as position sensitive as its training data lets it be."
        )
    convolution = (
        ("supported" if conv_key else "not supported")
        if pixels
        else ("not tested (no interpreter on pixels)")
    )
    return Conclusion(
        "Information learned in CNN is position sensitive, and convolution is the key for high accuracy.",
        f"convolution {convolution}; position sensitivity {position}",
        text,
    )


def not_continuous(r: PageResults) -> Conclusion:
    """3. The predicted probabilities are not continuous under translation."""
    shift, unaug = r.shift, r.augment.unaugmented() if r.augment else None
    p_true = shift.p_true("CNN")
    # shifts 1 px apart (dx = 0): a shift list such as dy = [0, -2, -4] has none
    steps = [
        abs(p_true[(0, dy)] - p_true[(0, dy + 1)]) for dx, dy in p_true if dx == 0 and (0, dy + 1) in p_true
    ]
    jump = max(steps, default=0.0)
    grid = shift.dataset_row("CNN")
    change = grid.change_1px if grid else None
    unaug_change = unaug.change_1px if unaug is not None else None
    # the 1-px change rate judged on its interval over the test images, where it has one
    interval = grid.change_1px_ci if grid and grid.change_1px_ci else None
    often = (
        judged(interval, CHANGE_1PX_ABOVE, "yes", "no")
        if interval
        else "yes"
        if change is not None and change > CHANGE_1PX_ABOVE
        else "no"
    )
    unaug_often = unaug_change is not None and unaug_change > CHANGE_1PX_ABOVE
    verdict = (
        "supported"
        if jump > JUMP_ABOVE or often == "yes"
        else UNRESOLVED
        if often == UNRESOLVED
        else "supported only without shift augmentation"
        if unaug_often
        else "not supported"
    )
    return Conclusion(
        "The predicted probabilities of CNN are not continuous with respect to translations.",
        verdict,
        f"For the study's {shift.item} (test #{shift.index}, a {shift.target}), "
        + (
            f"the largest change of P(true) between neighbouring 1-px shifts is {jump:.3f}"
            if steps
            else "no two of its shifts are 1 px apart"
        )
        + ". Over the test images, the CNN's "
        f"top-1 class changes under a single-pixel shift for {pct(change)} of (image, shift) pairs"
        + (f" ({shown(interval)}; {pct(CHANGE_1PX_ABOVE, 0)} is what 'often' means here)" if interval else "")
        + (
            f"; {pct(unaug_change)} for the CNN trained without shift augmentation"
            if unaug_change is not None
            else ""
        )
        + f". In the study, its CNN's P(1) fell from {study.table_p('CNN', -3):.1%} to "
        f"{study.table_p('CNN', -4):.2%} between dy = -3 and -4: a jump of {study.SHIFT_JUMP:.3f}.",
    )


def codes_deform_softly(r: PageResults) -> Conclusion:
    """4. Translations deform the code vectors more softly than the activations before them."""
    shift = r.shift
    last = {name: c[-1] for name, c in shift.cosines.items()}
    code = shift.code_layer
    softer = all(last[code] >= v for k, v in last.items() if k != code)
    return Conclusion(
        "Translations deform CNN code vectors more softly.",
        "supported" if softer else "not supported",
        f"Cosine similarity to the unshifted image's activations at the largest shift "
        f"{tuple(shift.pairs[-1])} (dx, dy): "
        + ", ".join(f"{k} {v:.2f}" for k, v in last.items())
        + (
            f". The code vector ({layer_label(code)}) stays closest to the unshifted one: translation "
            "deforms it less than the feature maps before it."
            if softer
            else f". The code vector ({layer_label(code)}) is not the one that stays closest here."
        ),
    )


def conclusions(r: PageResults) -> list[Conclusion]:
    """The study's four conclusions, each with our verdict and the numbers behind it."""
    return [
        codes_reduce_dimensionality(r, tuple(r.setting.shape)),
        position_sensitive(r),
        not_continuous(r),
        codes_deform_softly(r),
    ]


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


def shift_cka_sentence(result: BeyondResult) -> str:
    """Conclusion 4 layer by layer: which layer's representation a translation changes least, judged
    where that layer's interval lies above every other layer's."""
    if not result.cka_layers:
        return "No CKA was computed."
    at = {layer: result.shift_cka_at(layer)[-1] for layer in result.cka_layers}
    kept = {layer: result.shift_cka_ci_at(layer)[-1] for layer in result.cka_layers}  # None each if none
    ci = {layer: or_point(kept[layer], at[layer]) for layer in at}
    softest = max(at, key=at.get)
    code = result.code_layer
    said = ", ".join(f"{k} {valued(v, kept[k])}" for k, v in at.items())
    resolved = all(apart(ci[softest], ci[k]) == 1 for k in at if k != softest)
    verdict = (
        "the code layer changes least: translations deform code vectors more softly"
        if softest == code
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
