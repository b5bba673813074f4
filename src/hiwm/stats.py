"""Statistics of evaluations: Wilson intervals, Pearson r, and paired differences of two checkpoints
evaluated on the same seeds (paired bootstrap interval, McNemar's exact test).

Below every layer that reports figures (policy evaluation, the experiment's report), so both read
the same numbers the same way.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0  # fixed: the same outcomes give the same interval on every machine and rerun
ALPHA = 0.05


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a binomial proportion."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def majority_rate(successes: int, n: int) -> float:
    """The agreement of a constant answer (the majority outcome for every one of ``n`` episodes with
    ``successes`` successes): what a verdict must beat to tell anything (0 for no episodes)."""
    return max(successes, n - successes) / n if n else 0.0


def pearson(x: np.ndarray, y: np.ndarray, z: float = 1.96) -> dict[str, float | None]:
    """Pearson r of paired values with a 95 % interval by Fisher's z transform (needs n >= 4).

    ``r`` is None when either side is constant or there are fewer than three pairs (two points always
    give +-1: the correlation is undefined).
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"need two equal-length 1-D arrays, got {x.shape} and {y.shape}")
    n = len(x)
    out: dict[str, float | None] = {"n": n, "r": None, "ci_low": None, "ci_high": None}
    if n < 3 or np.std(x) == 0 or np.std(y) == 0:
        return out
    r = float(np.corrcoef(x, y)[0, 1])
    out["r"] = r
    if n >= 4:
        fz = math.atanh(max(min(r, 0.999999), -0.999999))
        half = z / math.sqrt(n - 3)
        out["ci_low"], out["ci_high"] = math.tanh(fz - half), math.tanh(fz + half)
    return out


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p: the binomial test of ``only_a`` against ``only_b`` discordant
    pairs (seeds one checkpoint solved and the other did not) at p = 1/2; 1.0 with none."""
    if only_a < 0 or only_b < 0:
        raise ValueError(f"discordant counts must be >= 0, got {only_a} and {only_b}")
    n = only_a + only_b
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(only_a, only_b) + 1))
    return min(1.0, 2 * tail / 2**n)  # exact integers until the one division


def paired_bootstrap(
    a: np.ndarray, b: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED, level: float = 0.95
) -> tuple[float, float]:
    """Percentile interval of mean(a - b), resampling the pairs (seeds) with replacement."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if d.ndim != 1 or len(d) == 0:
        raise ValueError(f"need two equal-length, non-empty 1-D arrays, got {np.shape(a)} and {np.shape(b)}")
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    chunk = max(1, 2_000_000 // len(d))  # bounded memory for any number of seeds
    for start in range(0, resamples, chunk):
        stop = min(resamples, start + chunk)
        means[start:stop] = d[rng.integers(0, len(d), size=(stop - start, len(d)))].mean(axis=1)
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def outcomes_by_seed(per_seed: list[Mapping[str, Any]]) -> dict[int, bool]:
    """``[{"seed": s, "success": x}, ...]`` (an evaluation's per-seed rows) -> {seed: success}."""
    out: dict[int, bool] = {}
    for row in per_seed:
        seed = int(row["seed"])
        if seed in out:
            raise ValueError(f"seed {seed} appears twice in one evaluation")
        out[seed] = bool(row["success"])
    return out


def paired_difference(
    a: Mapping[int, bool], b: Mapping[int, bool], resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED
) -> dict[str, Any]:
    """Success of ``a`` minus success of ``b`` on the seeds both were evaluated on, in points.

    ``ci``: paired bootstrap 95 % interval (points); ``p``: McNemar's exact test; ``significant``:
    the interval excludes 0 and p < 0.05. ``only_a``/``only_b``: the discordant seeds; ``missing``:
    seeds only one side has (compared checkpoints should have none).
    """
    common = sorted(set(a) & set(b))
    if not common:
        raise ValueError("the two evaluations share no seed: nothing to pair")
    x = np.array([a[s] for s in common], dtype=np.float64)
    y = np.array([b[s] for s in common], dtype=np.float64)
    only_a, only_b = int(np.sum((x == 1) & (y == 0))), int(np.sum((x == 0) & (y == 1)))
    low, high = paired_bootstrap(x, y, resamples, seed)
    p = mcnemar_exact(only_a, only_b)
    return {
        "diff": round(100 * float(np.mean(x - y)), 2),
        "ci": [round(100 * low, 2), round(100 * high, 2)],
        "p": p,
        "significant": bool((low > 0 or high < 0) and p < ALPHA),
        "n": len(common),
        "only_a": only_a,
        "only_b": only_b,
        "missing": len(set(a) ^ set(b)),
    }
