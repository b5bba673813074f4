"""Statistics of the results table: Pearson correlation with its 95 % interval."""

from __future__ import annotations

import math

import numpy as np


def pearson(x: np.ndarray, y: np.ndarray, z: float = 1.96) -> dict[str, float | None]:
    """Pearson r of paired values with a 95 % interval by Fisher's z transform (needs n >= 4).

    ``r`` is None when either side is constant (correlation undefined).
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"need two equal-length 1-D arrays, got {x.shape} and {y.shape}")
    n = len(x)
    out: dict[str, float | None] = {"n": n, "r": None, "ci_low": None, "ci_high": None}
    if n < 2 or np.std(x) == 0 or np.std(y) == 0:
        return out
    r = float(np.corrcoef(x, y)[0, 1])
    out["r"] = r
    if n >= 4:
        fz = math.atanh(max(min(r, 0.999999), -0.999999))
        half = z / math.sqrt(n - 3)
        out["ci_low"], out["ci_high"] = math.tanh(fz - half), math.tanh(fz + half)
    return out
