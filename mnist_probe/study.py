"""Every figure the study reported ("What Did My CNN Learn?", K.-H. W. Chen, 2019), in one place.

Quoted from its write-up; everything else in this project is measured.
"""

CNN_ACC = 0.993  # its CNN's test accuracy

# Test accuracy of each interpreter on the CNN's code vectors (h = 10), by interpreter name.
# rf1000 is the CNN+RF of its translation table, "T=1000 (acc = 99.3)".
CODES_ACC = {"nn": 0.9944, "svm": 0.9935, "rf": 0.9932, "gb": 0.9924, "dt": 0.9846, "rf1000": 0.993}

# Its raw-pixel baselines (the translation table's RF and SVM).
PIXELS_ACC = {"rf": 0.966, "svm": 0.961}

# Its recipe, as the report quotes it.
RECIPE = "RMSprop, ReduceLROnPlateau, 30 epochs, batch 86, ImageDataGenerator(10°, 0.1, 0.1)"

# Its translation table: P(y = 1) for its "1" shifted up by 0..5 px (in brackets: the class that
# took over), quoted verbatim. Keys are this project's model labels.
SHIFT_TABLE = {
    "CNN": ["100%", "100%", "99.99%", "99.4%", "0.71% (7: 99.29%)", "1.4E-4% (7: 99.99%)"],
    "rf (pixels)": [
        "99.5%",
        "84.9% (7: 9.8%)",
        "34.1% (7: 39.6%)",
        "9.1% (7: 56.3%)",
        "5.4% (7: 70.1%)",
        "4.8% (7: 70.2 %)",
    ],
    "svm (pixels)": [
        "99.6%",
        "42.8% (7: 50.8%)",
        "0.85% (7: 94.5%)",
        "0.42% (7: 81.3 %)",
        "0.43% (7: 79.5%)",
        "0.42% (80.8%)",
    ],
    "CNN+rf1000": [
        "100%",
        "96.6%",
        "67.7% (7: 18.4)",
        "52.8% (7: 28.3%)",
        "44.4% (7: 35.5%)",
        "34.8% (7: 47.6 %)",
    ],
    "CNN+svm": ["99.9%", "99.8%", "97.8%", "79.9% (9: 18.8%)", "21% (9: 77.76%)", "1% (9: 98.9%)"],
}
SHIFT_DY = [0, -1, -2, -3, -4, -5]  # the table's columns: the digit moved up 0..5 px
TURNING_DY = (-3, -4, -5)  # where its table turns: the shifts a headline or a comparison quotes
SHIFT_DIGIT = 1


def its_image(index: int | None, digit: int) -> bool:
    """Whether a shift run moves the image the study moved: the first test image (no shift.index)
    of its digit."""
    return index is None and digit == SHIFT_DIGIT


def table_cells(pairs: list[tuple[int, int]]) -> dict[str, list[str]]:
    """The study's translation table under another table's columns, the (dx, dy) pairs: its cell
    where it shifted by that pair (dx = 0, dy in SHIFT_DY), '' where it did not."""
    at = {(0, dy): k for k, dy in enumerate(SHIFT_DY)}
    return {model: [cells[at[p]] if p in at else "" for p in pairs] for model, cells in SHIFT_TABLE.items()}


def table_p(model: str, dy: int) -> float:
    """The study's P(true class) of its digit for `model` (a SHIFT_TABLE key) shifted by dy: its
    cell's first percentage, as a fraction ('0.71% (7: 99.29%)' -> 0.0071)."""
    return float(SHIFT_TABLE[model][SHIFT_DY.index(dy)].split("%")[0]) / 100


# Its CNN's P(1) between dy = -3 and -4: 99.4% -> 0.71%, the jump its conclusion 3 rests on.
SHIFT_JUMP = table_p("CNN", -3) - table_p("CNN", -4)


def study_acc(name: str, features: str) -> float | None:
    """The study's accuracy for interpreter `name` on 'codes' or 'pixels', or None if it gave none."""
    return (CODES_ACC if features == "codes" else PIXELS_ACC).get(name)


def interpreter_name(name: str, features: str) -> str:
    """A headline number's name for an interpreter's test accuracy, e.g. svm@codes_acc."""
    return f"{name}@{features}_acc"


def shift_name(model: str, what: str) -> str:
    """A headline number's name for a shift-table model's number: the CNN's as 'cnn_WHAT', an
    interpreter's under its table label, e.g. 'CNN+rf1000_WHAT', 'rf (pixels)_WHAT'."""
    return f"{'cnn' if model == 'CNN' else model}_{what}"


def digit_name(dy: int, model: str = "CNN") -> str:
    """A headline number's name for a model's P(true class) of the study's digit at a shift dy."""
    return shift_name(model, f"digit_p_true_dy{dy}")


# The study's figures under the names of the seeds stage's headline numbers (mnist_probe.stages.seeds):
# its test accuracies, and P(true) of its "1" shifted up, every row of its translation table.
HEADLINE_ACC = {
    "cnn_test_acc": CNN_ACC,
    **{interpreter_name(name, "codes"): acc for name, acc in CODES_ACC.items()},
    **{interpreter_name(name, "pixels"): acc for name, acc in PIXELS_ACC.items()},
}
HEADLINE_DIGIT = {digit_name(dy, model): table_p(model, dy) for model in SHIFT_TABLE for dy in SHIFT_DY}
HEADLINE = HEADLINE_ACC | HEADLINE_DIGIT


def comparable(on_its_data: bool, its_image: bool) -> dict[str, float]:
    """The study's headline figures a run can be set beside: none off its data set (MNIST's IDX
    files), its shift figures only for its image (its_image)."""
    if not on_its_data:
        return {}
    return HEADLINE if its_image else HEADLINE_ACC
