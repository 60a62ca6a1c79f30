"""The study's four conclusions, judged from the numbers: each verdict is a small function of typed
results that says "supported" only where every measure its page shows agrees, and each threshold it
judges by is a named constant below."""

from __future__ import annotations

from mnist_probe import study
from mnist_probe.intervals import UNRESOLVED, judged, or_point
from mnist_probe.names import SAMPLE_SHAPE, layer_label
from mnist_probe.pages.page_results import Conclusion, PageResults, Setting
from mnist_probe.pages.verdicts import cka_softest
from mnist_probe.tables import pct, shown

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
    minus_cnn = codes[worst] - r.train.test_acc
    # judged on the interval of the paired difference where there is one; results without: the number
    interval = or_point(row.minus_cnn_ci, minus_cnn)
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
            f" ({worst} minus the CNN: {100 * minus_cnn:+.2f} points, "
            f"{shown(row.minus_cnn_ci, unit=' points')} on the same test images; "
            f"within {100 * CODES_KEEP_WITHIN:.0f} point is what 'keeps' means)"
            if row.minus_cnn_ci
            else ""
        )
        + ". It is also "
        f"organised by class: mean cosine {act.within_class_cosine:.3f} within a class vs "
        f"{act.between_class_cosine:.3f} between classes (ratio {act.within_between_ratio:.2f}, "
        f"{act.n_codes} test images).",
    )


def position_sensitive(r: PageResults) -> Conclusion:
    """2. Information learned is position sensitive; convolution is the key to accuracy. Whether
    position sensitivity follows the training augmentation is said only from a like-for-like pair
    (the same network and recipe trained without and with random shifts: the augmentation sweep)."""
    codes, pixels = r.interpreters.accuracies("codes"), r.interpreters.accuracies("pixels")
    shift, pair = r.shift, r.augment.like_for_like() if r.augment else None
    gain = min(codes.values()) - max(pixels.values()) if pixels else None
    grid = shift.dataset_row("CNN")
    curve = shift.curves.get("CNN")
    at_dy = curve.at(POSITION_DY) if curve else None
    conv_key = bool(pixels) and min(codes.values()) > max(pixels.values())
    text = (
        f"Convolution as the key to accuracy: the same interpreters reach {pct(min(codes.values()))} or "
        f"more on the CNN's code vectors but at most {pct(max(pixels.values()) if pixels else None)} "
        f"on raw pixels ({'+' if gain and gain > 0 else ''}{pct(gain)} for the worst code-vector "
        f"interpreter over the best pixel one). "
        f"Over {shift.samples} test images, this CNN ({trained_shifts(r.setting)}) keeps {pct(at_dy)} "
        f"accuracy at dy = {POSITION_DY} and a mean of {pct(grid.acc_grid_mean if grid else None)} over "
        f"the ±{r.setting.radius} px grid."
    )
    if pair is None:
        position = "supported" if at_dy is not None and at_dy < SENSITIVE_BELOW else "not supported"
        text += (
            " Whether that follows the training augmentation is not tested on this page: it holds no "
            "CNN of one recipe trained both without and with random shifts."
        )
    else:
        without, with_shifts = pair
        sensitive = {row.shift: row.curve.at(POSITION_DY) < SENSITIVE_BELOW for row in pair}
        position = (
            "supported"
            if sensitive[with_shifts.shift]
            else "supported only without shift augmentation"
            if sensitive[without.shift]
            else "not supported"
        )
        px = r.setting.shape[2] * with_shifts.shift
        text += (
            f" Like for like ({without.model}, the {r.augment.recipe} recipe, only the augmentation "
            f"changed): trained without random shifts it keeps {pct(without.curve.at(POSITION_DY))} at "
            f"dy = {POSITION_DY} (grid mean {pct(without.acc_grid_mean)}), with random shifts up to "
            f"{px:.1f} px {pct(with_shifts.curve.at(POSITION_DY))} (grid mean "
            f"{pct(with_shifts.acc_grid_mean)}): what the CNN learned is as position sensitive as its "
            "training data lets it be."
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
    shift, pair = r.shift, r.augment.like_for_like() if r.augment else None
    p_true = shift.p_true("CNN")
    # shifts 1 px apart (dx = 0): a shift list such as dy = [0, -2, -4] has none
    steps = [
        abs(p_true[(0, dy)] - p_true[(0, dy + 1)]) for dx, dy in p_true if dx == 0 and (0, dy + 1) in p_true
    ]
    jump = max(steps, default=0.0)
    grid = shift.dataset_row("CNN")
    change = grid.change_1px if grid else None
    # the 1-px change rate judged on its interval over the test images, where it has one
    interval = grid.change_1px_ci if grid and grid.change_1px_ci else None
    often = (
        judged(interval, CHANGE_1PX_ABOVE, "yes", "no")
        if interval
        else "yes"
        if change is not None and change > CHANGE_1PX_ABOVE
        else "no"
    )
    # like for like: the same network and recipe, often without random shifts and not with them
    unaug_often = pair is not None and pair[0].change_1px > CHANGE_1PX_ABOVE >= pair[1].change_1px
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
        f"For {'the study' if r.setting.study else 'the shift stage'}'s {shift.item} "
        f"(test #{shift.index}, a {shift.target}), "
        + (
            f"the largest change of P(true) between neighbouring 1-px shifts is {jump:.3f}"
            if steps
            else "no two of its shifts are 1 px apart"
        )
        + ". Over the test images, the CNN's "
        f"top-1 class changes under a single-pixel shift for {pct(change)} of (image, shift) pairs"
        + (f" ({shown(interval)}; {pct(CHANGE_1PX_ABOVE, 0)} is what 'often' means here)" if interval else "")
        + (
            f"; the {r.augment.recipe} recipe's {pair[0].model} for {pct(pair[0].change_1px)} trained "
            f"without random shifts and {pct(pair[1].change_1px)} with them"
            if pair is not None
            else ""
        )
        + (
            f". In the study, its CNN's P(1) fell from {study.table_p('CNN', -3):.1%} to "
            f"{study.table_p('CNN', -4):.2%} between dy = -3 and -4: a jump of {study.SHIFT_JUMP:.3f}."
            if r.setting.study
            else "."
        ),
    )


def codes_deform_softly(r: PageResults) -> Conclusion:
    """4. Translations deform the code vectors more softly than the activations before them: by the
    cosine similarity of the shift test, and, where the page holds the beyond stage, by linear CKA
    too. Supported only where every measure the page shows finds the code layer the softest."""
    shift = r.shift
    last = {name: c[-1] for name, c in shift.cosines.items()}
    code = shift.code_layer
    by_cosine = all(last[code] >= v for k, v in last.items() if k != code)
    cosine = (
        f"Cosine similarity to the unshifted image's activations at the largest shift "
        f"{tuple(shift.pairs[-1])} (dx, dy): "
        + ", ".join(f"{k} {v:.2f}" for k, v in last.items())
        + (
            f". By cosine, the code vector ({layer_label(code)}) stays closest to the unshifted one"
            if by_cosine
            else f". By cosine, the code vector ({layer_label(code)}) is not the one that stays closest"
        )
    )
    cka = cka_softest(r.beyond) if r.beyond is not None else None
    if cka is None:  # the page holds one measure
        verdict = "supported" if by_cosine else "not supported"
        return Conclusion(CLAIM_SOFTLY, verdict, cosine + ".")
    softest, resolved = cka
    by_cka = softest == code if resolved else None
    if by_cka is None:
        found = f"by linear CKA it is {UNRESOLVED} which layer changes least ({softest} by its point value)"
    elif by_cka:
        found = "by linear CKA too, the code layer changes least"
    else:
        found = f"by linear CKA, {softest}, not the code layer, changes least"
    if by_cosine and by_cka:
        verdict, said = "supported", "both measures agree"
    elif not by_cosine and by_cka is False:
        verdict, said = "not supported", "both measures agree"
    else:
        verdict, said = UNRESOLVED, "the two measures do not agree, so the page cannot say which holds"
    return Conclusion(CLAIM_SOFTLY, verdict, f"{cosine}; {found} (the CKA section): {said}.")


CLAIM_SOFTLY = "Translations deform CNN code vectors more softly."


def conclusions(r: PageResults) -> list[Conclusion]:
    """The study's four conclusions, each with our verdict and the numbers behind it."""
    return [
        codes_reduce_dimensionality(r, tuple(r.setting.shape)),
        position_sensitive(r),
        not_continuous(r),
        codes_deform_softly(r),
    ]
