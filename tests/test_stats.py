"""Tests for harness.stats against hand-worked values and reference implementations."""

import itertools
import json
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps
from sklearn.metrics import roc_auc_score

from harness import stats as hs

# ------------------------------------------------------------ bootstrap_ci ---


def test_bootstrap_ci_value_is_full_sample_stat():
    vals = [1.0, 2.0, 3.0, 4.0, 10.0]
    res = hs.bootstrap_ci(vals)
    assert set(res) == {"value", "ci_low", "ci_high"}
    assert res["value"] == pytest.approx(4.0)
    assert res["ci_low"] <= res["value"] <= res["ci_high"]
    assert all(type(v) is float for v in res.values())
    json.dumps(res)


def test_bootstrap_ci_is_deterministic_per_seed():
    vals = np.random.default_rng(1).normal(size=50)
    assert hs.bootstrap_ci(vals, seed=3) == hs.bootstrap_ci(vals, seed=3)
    assert hs.bootstrap_ci(vals, seed=3) != hs.bootstrap_ci(vals, seed=4)


def test_bootstrap_ci_single_item_collapses():
    assert hs.bootstrap_ci([0.42]) == {"value": 0.42, "ci_low": 0.42, "ci_high": 0.42}


def test_bootstrap_ci_empty_raises():
    with pytest.raises(ValueError, match="empty"):
        hs.bootstrap_ci([])


def test_bootstrap_ci_bad_alpha_raises():
    with pytest.raises(ValueError, match="alpha"):
        hs.bootstrap_ci([1.0, 2.0], alpha=1.5)


def test_bootstrap_ci_stat_without_axis_argument():
    vals = np.arange(30, dtype=float)
    res = hs.bootstrap_ci(vals, stat=lambda v: float(np.max(v) - np.min(v)), n_boot=200)
    assert res["value"] == 29.0
    assert res["ci_high"] <= 29.0


def test_bootstrap_ci_median_matches_loop_reference():
    vals = np.random.default_rng(5).exponential(size=40)
    res = hs.bootstrap_ci(vals, stat=np.median, n_boot=300, seed=7)
    # Same resample indices, computed one row at a time.
    idx = np.random.default_rng(7).integers(0, 40, size=(300, 40))
    boot = np.array([np.median(vals[i]) for i in idx])
    lo, hi = np.percentile(boot, [2.5, 97.5])
    assert res["ci_low"] == pytest.approx(lo)
    assert res["ci_high"] == pytest.approx(hi)


def test_bootstrap_ci_is_fast():
    vals = np.random.default_rng(0).random(200)
    start = time.perf_counter()
    hs.bootstrap_ci(vals, n_boot=2000)
    assert time.perf_counter() - start < 0.5


def test_bootstrap_ci_coverage_bernoulli():
    rng = np.random.default_rng(2024)
    hits = 0
    for rep in range(200):
        sample = (rng.random(100) < 0.7).astype(float)
        res = hs.bootstrap_ci(sample, n_boot=500, seed=rep)
        hits += res["ci_low"] <= 0.7 <= res["ci_high"]
    assert 0.88 <= hits / 200 <= 0.99


# --------------------------------------------------------------------- auc ---


@pytest.mark.parametrize("seed", range(5))
def test_auc_matches_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=80)
    scores = np.round(rng.normal(size=80) + 0.5 * labels, 1)  # rounding makes ties
    assert len(np.unique(scores)) < 80
    assert hs.auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores))


def test_auc_hand_values_and_bool_labels():
    assert hs.auc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert hs.auc([1, 1, 0, 0], [0.1, 0.2, 0.3, 0.4]) == 0.0
    assert hs.auc([False, True], [0.5, 0.5]) == 0.5  # tie counts half
    # 2 pos x 2 neg = 4 pairs: (0.8 > 0.1, 0.8 > 0.5, 0.5 tie 0.5, 0.5 > 0.1) -> 3.5/4
    assert hs.auc([1, 1, 0, 0], [0.8, 0.5, 0.5, 0.1]) == pytest.approx(0.875)


def test_auc_single_class_is_none():
    assert hs.auc([1, 1, 1], [0.1, 0.2, 0.3]) is None
    assert hs.auc([0, 0], [0.1, 0.2]) is None


def test_auc_input_errors():
    with pytest.raises(ValueError, match="0/1"):
        hs.auc([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="length"):
        hs.auc([0, 1], [0.1])
    with pytest.raises(ValueError, match="empty"):
        hs.auc([], [])


def test_bootstrap_ci_auc():
    rng = np.random.default_rng(11)
    labels = rng.integers(0, 2, size=120)
    scores = rng.normal(size=120) + labels
    res = hs.bootstrap_ci_auc(labels, scores)
    assert res["value"] == pytest.approx(roc_auc_score(labels, scores))
    assert res["ci_low"] < res["value"] < res["ci_high"]
    assert res["ci_low"] >= 0.0 and res["ci_high"] <= 1.0
    json.dumps(res)


def test_bootstrap_ci_auc_skips_single_class_resamples():
    # With 1 positive in 4 items, ~32% of resamples have no positive at all.
    res = hs.bootstrap_ci_auc([1, 0, 0, 0], [0.9, 0.1, 0.2, 0.3], n_boot=200)
    assert res == {"value": 1.0, "ci_low": 1.0, "ci_high": 1.0}


def test_bootstrap_ci_auc_single_class():
    assert hs.bootstrap_ci_auc([1, 1], [0.2, 0.3]) == {"value": None, "ci_low": None, "ci_high": None}


# ----------------------------------------------------------------- mcnemar ---


def _pairs(b01, b10, both=5, neither=3):
    """Paired outcome vectors with the given discordant counts."""
    a = [0] * b01 + [1] * b10 + [1] * both + [0] * neither
    b = [1] * b01 + [0] * b10 + [1] * both + [0] * neither
    return a, b


def test_mcnemar_exact_vs_hand_binomial():
    a, b = _pairs(2, 7)
    res = hs.mcnemar(a, b)
    # Two-sided exact: 2 * P(X <= 2), X ~ Bin(9, 0.5) = 2 * (1 + 9 + 36) / 512
    hand = 2 * sps.binom.cdf(2, 9, 0.5)
    assert hand == pytest.approx(92 / 512)
    assert res == {"b01": 2, "b10": 7, "p_value": pytest.approx(hand), "test": "mcnemar-exact"}


def test_mcnemar_chi2_vs_hand_formula():
    a, b = _pairs(10, 25)
    res = hs.mcnemar(a, b)
    hand = sps.chi2.sf((abs(10 - 25) - 1) ** 2 / 35, df=1)
    assert res["test"] == "mcnemar-chi2"
    assert res["p_value"] == pytest.approx(hand)
    assert (res["b01"], res["b10"]) == (10, 25)


def test_mcnemar_branch_boundary():
    assert hs.mcnemar(*_pairs(12, 12))["test"] == "mcnemar-exact"
    assert hs.mcnemar(*_pairs(12, 13))["test"] == "mcnemar-chi2"


def test_mcnemar_no_discordant_pairs():
    res = hs.mcnemar([1, 0, 1], [True, False, True])
    assert res == {"b01": 0, "b10": 0, "p_value": 1.0, "test": "mcnemar-exact"}


def test_mcnemar_errors():
    with pytest.raises(ValueError, match="length"):
        hs.mcnemar([1, 0], [1])
    with pytest.raises(ValueError, match="0/1"):
        hs.mcnemar([0.5, 1], [1, 1])
    with pytest.raises(ValueError, match="empty"):
        hs.mcnemar([], [])


# ------------------------------------------------------ paired permutation ---


def _brute_force_perm_p(x, y):
    d = np.asarray(x, float) - np.asarray(y, float)
    obs = abs(d.mean())
    flips = [abs(np.mean(np.array(s) * d)) for s in itertools.product((1, -1), repeat=d.size)]
    return np.mean(np.array(flips) >= obs - 1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_paired_permutation_exact_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=8) + 0.5
    y = rng.normal(size=8)
    res = hs.paired_permutation(x, y)
    assert res["test"] == "paired-permutation"
    assert res["diff"] == pytest.approx(np.mean(x - y))
    assert res["p_value"] == pytest.approx(_brute_force_perm_p(x, y))


def test_paired_permutation_exact_with_ties_in_flips():
    # Integer differences make many flipped means equal the observed one.
    x = [1, 1, 1, 0, 1, 1, 0, 1]
    y = [0, 1, 0, 0, 0, 1, 1, 0]
    assert hs.paired_permutation(x, y)["p_value"] == pytest.approx(_brute_force_perm_p(x, y))


def test_paired_permutation_monte_carlo():
    rng = np.random.default_rng(9)
    x, y = rng.normal(size=60) + 0.8, rng.normal(size=60)
    res = hs.paired_permutation(x, y, n_perm=4000, seed=1)
    # Reference: a much larger independent sign-flip sample on the same data.
    d = x - y
    signs = np.random.default_rng(0).choice((-1.0, 1.0), size=(100_000, 60))
    ref = np.mean(np.abs(signs @ d) / 60 >= abs(d.mean()))
    assert abs(res["p_value"] - ref) < 4 * np.sqrt(ref * (1 - ref) / 4000) + 1 / 4001
    # A huge effect: no flip matches it, so p is the (0 + 1) / (n_perm + 1) floor.
    strong = hs.paired_permutation(x + 3.0, y, n_perm=2000, seed=1)
    assert strong["p_value"] == pytest.approx(1 / 2001)


def test_paired_permutation_identical_inputs():
    res = hs.paired_permutation([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    assert res == {"diff": 0.0, "p_value": 1.0, "test": "paired-permutation"}


def test_paired_permutation_errors():
    with pytest.raises(ValueError, match="empty"):
        hs.paired_permutation([], [])
    with pytest.raises(ValueError, match="length"):
        hs.paired_permutation([1.0], [1.0, 2.0])


# -------------------------------------------------------- paired bootstrap ---


def test_paired_bootstrap_strong_and_null_effects():
    rng = np.random.default_rng(4)
    x = rng.normal(size=100) + 1.0
    y = rng.normal(size=100)
    res = hs.paired_bootstrap(x, y, n_boot=1000)
    assert res["test"] == "paired-bootstrap"
    assert res["diff"] == pytest.approx(np.mean(x - y))
    assert res["ci_low"] < res["diff"] < res["ci_high"]
    assert res["ci_low"] > 0
    assert res["p_value"] == pytest.approx(1 / 1001)  # clamped
    null = hs.paired_bootstrap([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    assert null["diff"] == 0.0 and null["p_value"] == 1.0
    json.dumps(res)


def test_paired_bootstrap_p_matches_reference():
    rng = np.random.default_rng(8)
    x, y = rng.normal(size=30) + 0.3, rng.normal(size=30)
    res = hs.paired_bootstrap(x, y, n_boot=500, seed=2)
    d = x - y
    idx = np.random.default_rng(2).integers(0, 30, size=(500, 30))
    boot = d[idx].mean(axis=1)
    assert res["p_value"] == pytest.approx(np.mean(np.abs(boot - d.mean()) >= abs(d.mean())))


# ---------------------------------------------------------- compare_paired ---


def test_compare_paired_binary_uses_mcnemar():
    a, b = _pairs(2, 7)
    res = hs.compare_paired(a, b, binary=True, seed=5)  # seed is ignored here
    assert res["test"] == "mcnemar-exact"
    assert res["diff"] == pytest.approx(np.mean(a) - np.mean(b))
    assert res["p_value"] == pytest.approx(hs.mcnemar(a, b)["p_value"])


def test_compare_paired_continuous_uses_permutation():
    x, y = [0.9, 0.8, 0.7, 0.95], [0.5, 0.6, 0.65, 0.9]
    res = hs.compare_paired(x, y, binary=False, n_perm=100)
    assert res["test"] == "paired-permutation"
    assert res["diff"] == pytest.approx(np.mean(x) - np.mean(y))
    # All differences positive: only the identity and the all-negative flip reach |diff|.
    assert res["p_value"] == pytest.approx(2 / 16)


# ------------------------------------------------------------ fit_threshold ---


def _accuracy(labels, scores, t):
    return np.mean((np.asarray(scores) > t) == np.asarray(labels, bool))


def test_fit_threshold_separable_data():
    rng = np.random.default_rng(3)
    neg, pos = rng.uniform(-3, -0.5, 40), rng.uniform(0.2, 2, 40)
    labels = [0] * 40 + [1] * 40
    scores = np.concatenate([neg, pos])
    t = hs.fit_threshold(labels, scores)
    assert type(t) is float
    assert _accuracy(labels, scores, t) == 1.0
    assert t == pytest.approx((neg.max() + pos.min()) / 2)


def test_fit_threshold_hand_example():
    # Midpoints: 0.15, 0.25, 0.35; best accuracy 3/4 at 0.15 and 0.35; 0.15 nearer 0.
    assert hs.fit_threshold([0, 1, 0, 1], [0.1, 0.2, 0.3, 0.4]) == pytest.approx(0.15)


def test_fit_threshold_is_optimal_vs_brute_force():
    rng = np.random.default_rng(12)
    labels = rng.integers(0, 2, size=60)
    scores = np.round(rng.normal(size=60) + labels, 1)
    t = hs.fit_threshold(labels, scores)
    grid = np.linspace(scores.min() - 1, scores.max() + 1, 2001)
    best = max(_accuracy(labels, scores, g) for g in grid)
    assert _accuracy(labels, scores, t) == pytest.approx(best)


def test_fit_threshold_uninformative_keeps_natural_decision():
    # Constant score 0, balanced labels: predicting all-1 or all-0 ties; threshold 0
    # predicts all-0 (0 > 0 is false), so the fitted threshold must do the same.
    t = hs.fit_threshold([0, 1, 0, 1], [0.0, 0.0, 0.0, 0.0])
    assert t > 0
    # Scores straddling 0 with no signal: keep the split that threshold 0 makes.
    labels, scores = [0, 1, 1, 0], [-1.0, -1.0, 2.0, 2.0]
    t = hs.fit_threshold(labels, scores)
    assert -1.0 <= t < 2.0


def test_fit_threshold_errors():
    with pytest.raises(ValueError, match="empty"):
        hs.fit_threshold([], [])
    with pytest.raises(ValueError, match="length"):
        hs.fit_threshold([0, 1], [0.3])


# -------------------------------------------------------------------- holm ---


def test_holm_hand_values():
    # Sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> running max 0.06.
    assert hs.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert hs.holm([0.5, 0.6]) == [1.0, 1.0]
    assert hs.holm([0.02]) == [0.02]
    assert hs.holm([]) == []


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=20))
def test_holm_properties(ps):
    adj = hs.holm(ps)
    assert len(adj) == len(ps)
    assert all(a >= p - 1e-15 and a <= 1.0 for a, p in zip(adj, ps))
    order = np.argsort(ps, kind="stable")
    assert all(np.diff(np.array(adj)[order]) >= 0)


# ------------------------------------------------------------- percentiles ---


def test_percentiles_hand_values():
    res = hs.percentiles(np.arange(1, 101))
    assert res == {"p50": pytest.approx(50.5), "p95": pytest.approx(95.05), "mean": 50.5}
    assert all(type(v) is float for v in res.values())


def test_percentiles_empty_raises():
    with pytest.raises(ValueError, match="empty"):
        hs.percentiles([])
