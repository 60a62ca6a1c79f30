"""How sure a number is: percentile bootstrap intervals over the test images (Efron & Tibshirani,
1993), and verdicts that say "not resolved" where an interval straddles the threshold they judge by.
Torch-free.

An accuracy is the mean of per-image hits (1 right, 0 wrong); the difference of two classifiers'
accuracies on the same images is the mean of per-image differences, resampled as pairs, so that the
images both get right or both get wrong do not widen it."""

from __future__ import annotations

import numpy as np

LEVEL = 0.95  # every interval the tool prints
DRAWS = 2000  # bootstrap resamples: the interval's ends move by a few hundredths of its width with the seed
UNRESOLVED = "not resolved"


def bootstrap_mean(values: np.ndarray, level: float = LEVEL, draws: int = DRAWS, seed: int = 0,
                   chunk: int = 100) -> tuple[float, float]:  # fmt: skip
    """The percentile bootstrap interval of the mean of values (one per test image): resample the
    images with replacement `draws` times, take the (1 - level)/2 and (1 + level)/2 quantiles of the
    resampled means. Memory: chunk × len(values) indices at a time."""
    values = np.asarray(values, dtype=np.float64).ravel()
    if len(values) == 0:
        raise ValueError("no values to bootstrap")
    rng = np.random.default_rng(seed)
    n = len(values)
    means = np.concatenate([values[rng.integers(0, n, size=(min(chunk, draws - start), n))].mean(1)
                            for start in range(0, draws, chunk)])  # fmt: skip
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def bootstrap_stat(
    stat, n: int, level: float = LEVEL, draws: int = 1000, seed: int = 0
) -> tuple[float, float]:  # fmt: skip
    """The percentile bootstrap interval of any statistic of n rows: stat(indices) on `draws`
    resamples of the row indices (for what is not a mean of per-row values, e.g. R²)."""
    rng = np.random.default_rng(seed)
    values = [stat(rng.integers(0, n, size=n)) for _ in range(draws)]
    low, high = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def judged(interval: tuple[float, float], threshold: float, above: str, below: str) -> str:
    """`above` where the whole interval is at or above the threshold, `below` where it is all below,
    else "not resolved": the data cannot tell which side the number is on."""
    low, high = interval
    if low >= threshold:
        return above
    if high < threshold:
        return below
    return UNRESOLVED


def shown(interval: tuple[float, float] | None, scale: float = 100, digits: int = 2, unit: str = "%") -> str:
    """An interval as sentences print it: '95% CI 99.12–99.47%' ('' where there is none)."""
    if interval is None:
        return ""
    low, high = (scale * v for v in interval)
    return f"{LEVEL:.0%} CI {low:.{digits}f}–{high:.{digits}f}{unit}"
