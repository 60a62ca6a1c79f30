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


def bootstrap_mean(
    values: np.ndarray, level: float = LEVEL, draws: int = DRAWS, seed: int = 0, chunk: int = 100
) -> tuple[float, float]:
    """The percentile bootstrap interval of the mean of values (one per test image): resample the
    images with replacement `draws` times, take the (1 - level)/2 and (1 + level)/2 quantiles of the
    resampled means. Memory: chunk × len(values) indices at a time."""
    values = np.asarray(values, dtype=np.float64).ravel()
    if len(values) == 0:
        raise ValueError("no values to bootstrap")
    rng = np.random.default_rng(seed)
    n = len(values)
    means = np.concatenate(
        [
            values[rng.integers(0, n, size=(min(chunk, draws - start), n))].mean(1)
            for start in range(0, draws, chunk)
        ]
    )
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def bootstrap_r2(
    y: np.ndarray, predicted: np.ndarray, level: float = LEVEL, draws: int = DRAWS, seed: int = 0
) -> tuple[float, float]:
    """The percentile bootstrap interval of R² (averaged over the targets, as sklearn's r2_score) of
    predictions of y (n rows), the rows resampled `draws` times, all resamples at once."""
    y, predicted = (np.asarray(a, dtype=np.float64).reshape(len(a), -1) for a in (y, predicted))
    rows = np.random.default_rng(seed).integers(0, len(y), size=(draws, len(y)))
    yy, pp = y[rows], predicted[rows]  # draws × n × targets
    residual = ((yy - pp) ** 2).sum(1)
    spread = ((yy - yy.mean(1, keepdims=True)) ** 2).sum(1)
    r2 = (1 - residual / np.where(spread > 0, spread, np.nan)).mean(1)
    low, high = np.nanquantile(r2, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def seed_interval(values: np.ndarray, level: float = LEVEL) -> tuple[float, float] | None:
    """The interval of a number's mean over seeds (one value per trained network): Student's t with
    n - 1 degrees of freedom, as a handful of seeds is too few to bootstrap; None below two seeds."""
    from scipy.stats import t

    values = np.asarray(values, dtype=np.float64).ravel()
    if len(values) < 2:
        return None
    half = t.ppf((1 + level) / 2, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return float(values.mean() - half), float(values.mean() + half)


def two_level_interval(scores: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """The interval of the mean of a draws × images table (NaN: a cell with no score, left out) where
    both are samples: the randomisation draws (seeded re-initialisations) and the test images. Each
    level's variance of the mean, estimated from its own means (a draw's over the images, an image's
    over the draws), added; Student's t at Satterthwaite's degrees of freedom, as a handful of draws
    is too few for a percentile bootstrap (it covers about 85% with five). One draw: the images'
    bootstrap alone (bootstrap_mean), which holds no variance of the draws."""
    from scipy.stats import t

    scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    kept = scores[:, ~np.isnan(scores).all(0)]  # images with a score in some draw
    kept = kept[~np.isnan(kept).all(1)]
    if kept.size == 0:
        return float("nan"), float("nan")
    if len(kept) == 1:
        row = kept[0][~np.isnan(kept[0])]
        return bootstrap_mean(row, level) if len(row) > 1 else (float(row[0]), float(row[0]))
    parts = [np.nanmean(kept, axis) for axis in (1, 0)]  # each draw's mean, each image's mean
    shares = [p.var(ddof=1) / len(p) if len(p) > 1 else 0.0 for p in parts]
    se = float(np.sqrt(sum(shares)))
    if se == 0:
        mean = float(np.nanmean(kept))
        return mean, mean
    df = se**4 / sum(s**2 / (len(p) - 1) for s, p in zip(shares, parts, strict=True) if len(p) > 1)
    half = t.ppf((1 + level) / 2, df) * se
    mean = float(parts[0].mean())
    return mean - half, mean + half


def resample_counts(n: int, draws: int = DRAWS, seed: int = 0) -> np.ndarray:
    """How often each of n units lands in each of `draws` bootstrap resamples (draws × n counts, each
    row summing to n): a resampled sum of per-unit parts is counts @ parts."""
    picks = np.random.default_rng(seed).integers(0, n, size=(draws, n))
    return np.stack([np.bincount(row, minlength=n) for row in picks]).astype(np.float64)


def quantile_interval(draws: np.ndarray, level: float = LEVEL) -> np.ndarray:
    """The percentile interval of bootstrap draws along axis 0: the draws' shape less axis 0, × 2."""
    return np.moveaxis(np.nanquantile(draws, [(1 - level) / 2, (1 + level) / 2], axis=0), 0, -1)


def or_point(interval: list[float] | tuple[float, float] | None, value: float) -> tuple[float, float]:
    """The interval, or the number as an interval of its own (results written before intervals)."""
    return (float(interval[0]), float(interval[1])) if interval else (value, value)


def judged(interval: tuple[float, float], threshold: float, above: str, below: str) -> str:
    """`above` where the whole interval is at or above the threshold, `below` where it is all below,
    else "not resolved": the data cannot tell which side the number is on."""
    low, high = interval
    if low >= threshold:
        return above
    if high < threshold:
        return below
    return UNRESOLVED


def apart(a: tuple[float, float], b: tuple[float, float]) -> int:
    """-1 where interval a lies wholly below b, 1 wholly above, 0 where they overlap (not resolved)."""
    return -1 if a[1] < b[0] else 1 if a[0] > b[1] else 0
