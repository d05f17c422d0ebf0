"""Small statistics toolkit for comparing systems on the same evaluation items.

Every function is pure, takes sequences or numpy arrays, and returns plain
Python numbers/dicts so results can go straight into JSON reports.
Resampling is vectorised (index matrices, processed in bounded-size chunks)
so thousands of resamples of a few hundred items take milliseconds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy import stats as _sps

# Upper bound on the number of cells in one resample-index chunk: keeps memory
# bounded (~16 MB of int64) even for large evaluation sets.
_CHUNK_CELLS = 2_000_000
# Paired permutation tests enumerate every sign flip up to this many items.
_EXACT_MAX_N = 16
# McNemar uses the exact binomial test below this many discordant pairs.
_MCNEMAR_EXACT_BELOW = 25


# ---------------------------------------------------------------- helpers ---


def _as_1d(values, name: str = "values") -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1:
        arr = arr.ravel()
    if arr.size == 0:
        raise ValueError(f"{name} is empty: need at least one item")
    return arr


def _as_pair(x, y) -> tuple[np.ndarray, np.ndarray]:
    a, b = _as_1d(x, "x"), _as_1d(y, "y")
    if a.size != b.size:
        raise ValueError(f"paired inputs differ in length: {a.size} vs {b.size}")
    return a, b


def _as_binary(values, name: str) -> np.ndarray:
    arr = _as_1d(values, name)
    if not np.isin(arr, (0.0, 1.0)).all():
        raise ValueError(f"{name} must contain only 0/1 (or bool) values")
    return arr.astype(bool)


def _check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")


def _resample(rng: np.random.Generator, n: int, n_boot: int, fn) -> np.ndarray:
    """Apply fn to (rows, n) bootstrap index matrices; concatenate the results."""
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    rows = max(1, _CHUNK_CELLS // max(n, 1))
    out = []
    for start in range(0, n_boot, rows):
        idx = rng.integers(0, n, size=(min(rows, n_boot - start), n))
        out.append(np.asarray(fn(idx), dtype=float))
    return np.concatenate(out)


def _interval(boot: np.ndarray, alpha: float) -> tuple[float, float]:
    lo, hi = np.percentile(boot, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(lo), float(hi)


def _tolerance(d: np.ndarray) -> float:
    # Resampled means that equal the observed one mathematically can differ by
    # rounding; count them as "at least as extreme" so p-values are not biased.
    return 1e-9 * max(float(np.abs(d).mean()), 1e-300)


# ------------------------------------------------------------- intervals ---


def bootstrap_ci(
    values: Sequence[float], stat: Callable = np.mean, n_boot: int = 2000, alpha: float = 0.05, seed: int = 0
) -> dict:
    """Percentile bootstrap CI of stat over items.

    value is stat of the full sample. stat is called as stat(matrix, axis=1)
    when it supports that (numpy reductions do), else row by row.
    """
    arr = _as_1d(values)
    _check_alpha(alpha)
    rng = np.random.default_rng(seed)

    def per_row(idx):
        sample = arr[idx]
        try:
            res = np.asarray(stat(sample, axis=1), dtype=float)
            if res.shape == (idx.shape[0],):
                return res
        except TypeError:
            pass  # stat does not take axis=; fall back to a row loop
        return np.array([stat(row) for row in sample], dtype=float)

    boot = _resample(rng, arr.size, n_boot, per_row)
    value = float(stat(arr))
    if arr.size == 1:  # every resample is the same item: interval collapses
        return {"value": value, "ci_low": value, "ci_high": value}
    lo, hi = _interval(boot, alpha)
    return {"value": value, "ci_low": lo, "ci_high": hi}


def _auc_rows(pos: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """Mann-Whitney AUC per row, from boolean labels and mid-ranks of scores."""
    n1 = pos.sum(axis=-1)
    n0 = pos.shape[-1] - n1
    rank_sum = np.where(pos, ranks, 0.0).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (rank_sum - n1 * (n1 + 1) / 2.0) / (n1 * n0)


def auc(labels: Sequence, scores: Sequence[float]) -> float | None:
    """ROC AUC via Mann-Whitney U (ties count half); None if only one class."""
    pos = _as_binary(labels, "labels")
    sc = _as_1d(scores, "scores")
    if sc.size != pos.size:
        raise ValueError(f"labels and scores differ in length: {pos.size} vs {sc.size}")
    if pos.all() or not pos.any():
        return None
    # Average ranks give ties exactly half credit in the U statistic.
    return float(_auc_rows(pos, _sps.rankdata(sc)))


def bootstrap_ci_auc(
    labels: Sequence, scores: Sequence[float], n_boot: int = 1000, alpha: float = 0.05, seed: int = 0
) -> dict:
    """Percentile bootstrap CI of the AUC, resampling items.

    Resamples containing a single class are skipped. If the full sample has a
    single class (AUC undefined), value, ci_low and ci_high are all None; the
    bounds are also None if every resample was skipped.
    """
    value = auc(labels, scores)  # also validates the inputs
    _check_alpha(alpha)
    if value is None:
        return {"value": None, "ci_low": None, "ci_high": None}
    pos = _as_binary(labels, "labels")
    sc = _as_1d(scores, "scores")
    rng = np.random.default_rng(seed)
    boot = _resample(rng, pos.size, n_boot, lambda idx: _auc_rows(pos[idx], _sps.rankdata(sc[idx], axis=1)))
    boot = boot[np.isfinite(boot)]  # single-class resamples give nan
    if boot.size == 0:
        return {"value": value, "ci_low": None, "ci_high": None}
    lo, hi = _interval(boot, alpha)
    return {"value": value, "ci_low": lo, "ci_high": hi}


def _balanced_rows(onehot: np.ndarray, correct: np.ndarray) -> np.ndarray:
    """Balanced accuracy per row: the mean over the classes present in the row of each class's share right.
    onehot: (rows, n, classes) or (n, classes); correct: the same leading shape without classes."""
    counts = onehot.sum(axis=-2)
    right = (onehot * correct[..., None]).sum(axis=-2)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(counts > 0, right / np.maximum(counts, 1), np.nan)
    return np.nanmean(recall, axis=-1)


def bootstrap_ci_balanced_accuracy(
    labels: Sequence, correct: Sequence, n_boot: int = 2000, alpha: float = 0.05, seed: int = 0
) -> dict:
    """Balanced accuracy (the mean over gold classes of the share of that class answered right), with a
    percentile bootstrap CI resampling items; a resample without some class averages over the ones it has."""
    ok = _as_binary(correct, "correct").astype(float)
    if len(labels) != ok.size:
        raise ValueError(f"labels and correct differ in length: {len(labels)} vs {ok.size}")
    _check_alpha(alpha)
    classes = sorted(set(labels))
    onehot = np.array([[float(lab == c) for c in classes] for lab in labels])
    value = float(_balanced_rows(onehot, ok))
    if ok.size == 1:
        return {"value": value, "ci_low": value, "ci_high": value}
    rng = np.random.default_rng(seed)
    boot = _resample(rng, ok.size, n_boot, lambda idx: _balanced_rows(onehot[idx], ok[idx]))
    lo, hi = _interval(boot, alpha)
    return {"value": value, "ci_low": lo, "ci_high": hi}


def percentiles(values: Sequence[float]) -> dict:
    """Median, 95th percentile (linear interpolation) and mean."""
    arr = _as_1d(values)
    p50, p95 = np.percentile(arr, [50, 95])
    return {"p50": float(p50), "p95": float(p95), "mean": float(arr.mean())}


# ------------------------------------------------------------ paired tests ---


def mcnemar(a_correct: Sequence, b_correct: Sequence) -> dict:
    """McNemar test on paired 0/1 outcomes.

    b01 counts items A got wrong and B right; b10 the reverse. Exact two-sided
    binomial test below 25 discordant pairs, else chi-square with continuity
    correction.
    """
    a = _as_binary(a_correct, "a_correct")
    b = _as_binary(b_correct, "b_correct")
    if a.size != b.size:
        raise ValueError(f"paired inputs differ in length: {a.size} vs {b.size}")
    b01 = int(np.sum(~a & b))
    b10 = int(np.sum(a & ~b))
    n = b01 + b10
    if n < _MCNEMAR_EXACT_BELOW:
        p = 1.0 if n == 0 else _sps.binomtest(min(b01, b10), n, 0.5).pvalue
        return {"b01": b01, "b10": b10, "p_value": float(p), "test": "mcnemar-exact"}
    chi2 = (abs(b01 - b10) - 1) ** 2 / n
    return {"b01": b01, "b10": b10, "p_value": float(_sps.chi2.sf(chi2, df=1)), "test": "mcnemar-chi2"}


def _sign_matrix(n: int) -> np.ndarray:
    """All 2**n sign vectors as rows of +-1."""
    bits = (np.arange(2**n)[:, None] >> np.arange(n)) & 1
    return 1.0 - 2.0 * bits


def paired_permutation(x: Sequence[float], y: Sequence[float], n_perm: int = 10000, seed: int = 0) -> dict:
    """Two-sided paired sign-flip permutation test on mean(x - y).

    For n <= 16 all 2**n sign flips are enumerated (exact p); otherwise n_perm
    random flips with the (count + 1) / (n_perm + 1) estimator, which never
    returns 0 and stays valid.
    """
    a, b = _as_pair(x, y)
    d = a - b
    n = d.size
    observed = abs(d.mean())
    tol = _tolerance(d)
    if n <= _EXACT_MAX_N:
        flipped = np.abs(_sign_matrix(n) @ d) / n
        p = float(np.mean(flipped >= observed - tol))
    else:
        if n_perm < 1:
            raise ValueError(f"n_perm must be >= 1, got {n_perm}")
        rng = np.random.default_rng(seed)
        rows = max(1, _CHUNK_CELLS // n)
        count = 0
        for start in range(0, n_perm, rows):
            signs = rng.choice((-1.0, 1.0), size=(min(rows, n_perm - start), n))
            count += int(np.sum(np.abs(signs @ d) / n >= observed - tol))
        p = (count + 1) / (n_perm + 1)
    return {"diff": float(d.mean()), "p_value": min(1.0, p), "test": "paired-permutation"}


def paired_bootstrap(
    x: Sequence[float], y: Sequence[float], n_boot: int = 2000, alpha: float = 0.05, seed: int = 0
) -> dict:
    """Bootstrap CI and two-sided p-value for mean(x - y), resampling items.

    The p-value shifts the bootstrap distribution to be centred on 0 (the
    null): p = mean(|boot - diff| >= |diff|), floored at 1 / (n_boot + 1).
    """
    a, b = _as_pair(x, y)
    _check_alpha(alpha)
    d = a - b
    diff = float(d.mean())
    rng = np.random.default_rng(seed)
    boot = _resample(rng, d.size, n_boot, lambda idx: d[idx].mean(axis=1))
    p = float(np.mean(np.abs(boot - diff) >= abs(diff) - _tolerance(d)))
    lo, hi = _interval(boot, alpha)
    return {
        "diff": diff,
        "ci_low": lo,
        "ci_high": hi,
        "p_value": min(1.0, max(p, 1.0 / (n_boot + 1))),
        "test": "paired-bootstrap",
    }


def compare_paired(x: Sequence[float], y: Sequence[float], binary: bool, **kw) -> dict:
    """McNemar for 0/1 outcomes, else paired permutation test.

    Always has diff (mean x - mean y), p_value and test. kw goes to
    paired_permutation (n_perm, seed); McNemar needs none, so it is ignored.
    """
    if binary:
        res = mcnemar(x, y)
        a, b = _as_pair(x, y)
        res["diff"] = float(a.mean() - b.mean())
        return res
    return paired_permutation(x, y, **kw)


def chance_test(correct: Sequence, chances: Sequence[float]) -> dict:
    """Exact two-sided test of 0/1 outcomes against guessing: item i would be right with probability
    chances[i]. The number right under guessing is Poisson-binomial (binomial when every chance is equal, and
    then this is scipy's binomtest); p sums the probabilities of every count no more likely than the observed
    one, as binomtest does."""
    ok = _as_binary(correct, "correct")
    pr = _as_1d(chances, "chances")
    if pr.size != ok.size:
        raise ValueError(f"correct and chances differ in length: {ok.size} vs {pr.size}")
    if ((pr < 0) | (pr > 1)).any():
        raise ValueError("chances must lie in [0, 1]")
    pmf = np.zeros(pr.size + 1)
    pmf[0] = 1.0
    for i, p in enumerate(pr):  # convolve one Bernoulli(p) at a time
        pmf[1 : i + 2] = pmf[1 : i + 2] * (1 - p) + pmf[: i + 1] * p
        pmf[0] *= 1 - p
    k = int(ok.sum())
    p_value = float(pmf[pmf <= pmf[k] * (1 + 1e-7)].sum())
    test = "binomial-exact" if np.allclose(pr, pr[0]) else "poisson-binomial-exact"
    return {"diff": float(ok.mean() - pr.mean()), "p_value": min(1.0, p_value), "test": test}


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in input order, capped at 1."""
    p = np.asarray(p_values, dtype=float).ravel()
    m = p.size
    if m == 0:
        return []
    order = np.argsort(p, kind="stable")
    scaled = p[order] * (m - np.arange(m))
    # Running max makes adjusted values monotone in the raw p order.
    adj_sorted = np.minimum(np.maximum.accumulate(scaled), 1.0)
    adj = np.empty(m)
    adj[order] = adj_sorted
    return [float(v) for v in adj]


# -------------------------------------------------------------- threshold ---


def fit_threshold(labels: Sequence, scores: Sequence[float]) -> float:
    """Threshold t (predict 1 when score > t) maximising accuracy on the data.

    Candidates: midpoints between sorted unique scores, plus one below the
    minimum and one above the maximum. Each candidate stands for the range of
    thresholds that give the same predictions; among equally accurate ones we
    take the range nearest 0 (then the candidate nearest 0), so when 0 already
    gives the best accuracy - e.g. an uninformative model - we keep its decisions.
    """
    y = _as_binary(labels, "labels")
    sc = _as_1d(scores, "scores")
    if sc.size != y.size:
        raise ValueError(f"labels and scores differ in length: {y.size} vs {sc.size}")
    u, inverse = np.unique(sc, return_inverse=True)
    pad = 0.5 * (float(np.mean(np.diff(u))) if u.size > 1 else 1.0)
    cands = np.concatenate([[u[0] - pad], (u[:-1] + u[1:]) / 2.0, [u[-1] + pad]])
    # Candidate k predicts 1 exactly for scores >= u[k]: correct ones are the
    # negatives below u[k] plus the positives at or above it (O(n log n)).
    pos = np.bincount(inverse, weights=y.astype(float), minlength=u.size)
    neg = np.bincount(inverse, minlength=u.size) - pos
    neg_below = np.concatenate([[0.0], np.cumsum(neg)])
    pos_above = pos.sum() - np.concatenate([[0.0], np.cumsum(pos)])
    acc = (neg_below + pos_above) / y.size
    # Candidate k gives the same predictions as any t in [lows[k], highs[k]).
    lows = np.concatenate([[-np.inf], u])
    highs = np.concatenate([u, [np.inf]])
    holds_zero = (lows <= 0) & (highs > 0)
    dist = np.minimum(np.abs(lows), np.abs(highs))
    best = np.lexsort((np.abs(cands), dist, ~holds_zero, -np.round(acc, 12)))[0]
    return float(cands[best])
