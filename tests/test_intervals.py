"""Intervals that cover what they claim to, and verdicts that say "not resolved" when they straddle."""

import numpy as np
import pytest

from mnist_probe.intervals import UNRESOLVED, bootstrap_mean, judged
from mnist_probe.tables import shown


def test_the_interval_of_an_accuracy_covers_the_true_one_about_95_times_in_100():
    """100 simulated test sets of 1,000 images from a classifier whose true accuracy is 0.97: the 95%
    interval holds 0.97 in about 95 of them (a binomial's 90-99 band), and is as wide as the normal
    approximation says (±1.96·sqrt(p(1-p)/n))."""
    truth, n = 0.97, 1000
    rng = np.random.default_rng(1)
    covered, widths = 0, []
    for draw in range(100):
        hits = (rng.random(n) < truth).astype(float)
        low, high = bootstrap_mean(hits, draws=1000, seed=draw)
        covered += low <= truth <= high
        widths.append(high - low)
    assert 90 <= covered <= 99
    assert np.mean(widths) == pytest.approx(2 * 1.96 * np.sqrt(truth * (1 - truth) / n), rel=0.1)


def test_a_paired_difference_is_narrower_than_the_two_accuracies_apart():
    """Two classifiers that agree on most images: the interval of their paired difference is far
    narrower than the two accuracies' intervals would make it, and centred on the difference."""
    rng = np.random.default_rng(0)
    a = (rng.random(2000) < 0.95).astype(float)
    b = a.copy()
    flip = rng.choice(2000, 30, replace=False)
    b[flip] = 1 - b[flip]
    low, high = bootstrap_mean(b - a)
    width_a = np.subtract(*bootstrap_mean(a)[::-1])
    assert low <= (b - a).mean() <= high and high - low < 0.6 * 2 * width_a


def test_a_verdict_is_not_resolved_when_its_interval_straddles_the_threshold():
    assert judged((-0.004, -0.001), -0.01, "supported", "not supported") == "supported"
    assert judged((-0.03, -0.02), -0.01, "supported", "not supported") == "not supported"
    assert judged((-0.015, -0.001), -0.01, "supported", "not supported") == UNRESOLVED  # widened across
    assert shown((0.9912, 0.9947)) == "95% CI 99.12–99.47%" and shown(None) == ""


def test_the_code_vector_verdict_follows_the_interval(tmp_path):
    """Conclusion 1 on built results: the worst interpreter's paired difference to the CNN inside the
    one-point band is supported, below it not, across it not resolved, and the sentence gives it."""
    import dataclasses

    from mnist_probe.pages.conclusions import codes_reduce_dimensionality
    from tests.builders import study_results

    results = study_results()
    rows = results.interpreters.rows
    worst = min((r for r in rows if r.features == "codes"), key=lambda r: r.test_acc)

    def verdict(interval):
        changed = [dataclasses.replace(r, minus_cnn_ci=list(interval)) if r is worst else r for r in rows]
        inter = dataclasses.replace(results.interpreters, rows=changed)
        return codes_reduce_dimensionality(dataclasses.replace(results, interpreters=inter))

    assert verdict((-0.004, -0.002)).verdict == "supported"
    assert verdict((-0.05, -0.02)).verdict == "not supported"
    unresolved = verdict((-0.02, -0.002))
    assert unresolved.verdict == UNRESOLVED and "95% CI -2.00–-0.20 points" in unresolved.text


def test_the_continuity_verdict_is_not_resolved_when_the_change_rate_straddles_its_threshold():
    """Conclusion 3 without a jump on the study's digit: the 1-px change rate's interval decides."""
    import dataclasses

    from mnist_probe.pages.conclusions import CHANGE_1PX_ABOVE, not_continuous
    from tests.builders import study_results

    results = study_results(change=CHANGE_1PX_ABOVE)
    flat = [dataclasses.replace(r, p_true=0.9) if r.model == "CNN" else r for r in results.shift.rows]
    shift = dataclasses.replace(results.shift, rows=flat)  # no jump on the study's digit

    def verdict(interval):
        rows = [
            dataclasses.replace(d, change_1px_ci=list(interval)) if d.model == "CNN" else d
            for d in shift.dataset
        ]
        return not_continuous(dataclasses.replace(results, shift=dataclasses.replace(shift, dataset=rows)))

    assert verdict((0.06, 0.09)).verdict == "supported"
    straddles = verdict((0.03, 0.07))
    assert straddles.verdict == UNRESOLVED and "95% CI 3.00–7.00%" in straddles.text
    assert verdict((0.01, 0.03)).verdict in ("not supported", "supported only without shift augmentation")


def test_an_attribution_moves_with_the_image_only_when_its_whole_interval_says_so():
    import dataclasses

    from mnist_probe.pages.verdicts import attribution_sentence
    from tests.builders import beyond_result

    curve = beyond_result(consistency_last=0.85).attributions[0]

    def said(low, high):
        ci = [[1.0, 1.0]] * (len(curve.dys) - 1) + [[low, high]]
        return attribution_sentence([dataclasses.replace(curve, ci=ci)])

    method = curve.method.replace("_", " ")
    assert f"{method} moves with the digit" in said(0.82, 0.88)
    assert f"{method} does not move with the digit" in said(0.70, 0.78)
    assert f"{method} is not resolved to move with the digit or not" in said(0.75, 0.9)
    assert "95% CI 0.75–0.90; 0.8 is the line" in said(0.75, 0.9)


def test_position_is_given_up_only_when_the_whole_r2_interval_is_below_the_line():
    import dataclasses

    from mnist_probe.pages.verdicts import position_sentence
    from tests.builders import beyond_result

    rows = beyond_result(code_position=0.05).positions
    code = next(r for r in rows if r.layer == "dense_1")

    def said(low, high):
        changed = [dataclasses.replace(r, position_r2_ci=[low, high]) if r is code else r for r in rows]
        return position_sentence(changed, "dense_1")

    assert "position is given up by the code layer" in said(0.02, 0.08)
    assert "position is still known by the code layer" in said(0.12, 0.3)
    unresolved = said(0.03, 0.14)
    assert "not resolved: given up or still known" in unresolved and "95% CI 0.03–0.14" in unresolved


def test_the_r2_interval_covers_a_known_linear_signal():
    """A position probe on features that hold (dx, dy) plus noise of a known size: the ridge's R² and
    its interval sit around the R² the noise allows (about 0.5 here), the interval a few hundredths wide."""
    from mnist_probe.position import _regression

    rng = np.random.default_rng(0)
    target = rng.normal(size=(2000, 2))
    features = np.hstack([target + rng.normal(size=(2000, 2)), rng.normal(size=(2000, 6))])
    r2, (low, high) = _regression(features[:1000], target[:1000], features[1000:], target[1000:])
    assert low <= r2 <= high and low < 0.5 < high + 0.03 and 0.01 < high - low < 0.15


def test_the_r2_interval_is_the_bootstrap_of_sklearns_r2():
    """All resamples at once give what r2_score gives on each resample, one at a time."""
    from sklearn.metrics import r2_score

    from mnist_probe.intervals import bootstrap_r2

    rng = np.random.default_rng(3)
    y = rng.normal(size=(300, 2))
    predicted = y + rng.normal(scale=0.8, size=(300, 2))
    rows = np.random.default_rng(7).integers(0, 300, size=(400, 300))
    one_by_one = np.quantile([r2_score(y[i], predicted[i]) for i in rows], [0.025, 0.975])
    assert bootstrap_r2(y, predicted, draws=400, seed=7) == pytest.approx(tuple(one_by_one), abs=1e-9)


def test_the_two_level_interval_covers_the_mean_over_draws_where_the_images_alone_do_not():
    """Simulated randomisation tests: score = mean + the draw's effect + the image's + noise, five
    draws of 100 images. The two-level interval covers the mean over draws in about 95% of cases;
    the images' interval of one draw, which holds no variance of the draws, in far fewer."""
    from mnist_probe.intervals import two_level_interval

    rng = np.random.default_rng(0)
    truth, cases, covered, covered_one = 0.3, 300, 0, 0
    for _ in range(cases):
        scores = (
            truth
            + rng.normal(0, 0.15, (5, 1))  # each draw's re-initialisation moves every image's score
            + rng.normal(0, 0.2, (1, 100))  # each image's own
            + rng.normal(0, 0.1, (5, 100))
        )
        low, high = two_level_interval(scores)
        covered += low <= truth <= high
        low, high = bootstrap_mean(scores[0], draws=400)
        covered_one += low <= truth <= high
    assert 0.90 <= covered / cases <= 0.99
    assert covered_one / cases < 0.6


def test_the_two_level_interval_leaves_out_what_has_no_score():
    from mnist_probe.intervals import two_level_interval

    scores = np.random.default_rng(1).normal(0.5, 0.1, (3, 40))
    holed = scores.copy()
    holed[:, :10] = np.nan  # ten images with no score in any draw
    low, high = two_level_interval(holed)
    assert (low, high) == pytest.approx(two_level_interval(scores[:, 10:]))
    assert low < np.nanmean(holed) < high
    assert two_level_interval(scores[:1]) == pytest.approx(bootstrap_mean(scores[0]))  # one draw: images only
    assert all(np.isnan(two_level_interval(np.full((2, 5), np.nan))))
