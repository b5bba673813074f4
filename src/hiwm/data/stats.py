"""Feature statistics as LeRobot stores them: min, max, mean, std, count.

Per-episode stats live in the episodes parquet; ``meta/stats.json`` is their
count-weighted aggregate. Images (video features) get per-channel stats of pixel
values scaled to [0, 1], shaped (3, 1, 1) like LeRobot's.
"""

from __future__ import annotations

import numpy as np

STAT_KEYS = ("min", "max", "mean", "std", "count")


def feature_stats(values: np.ndarray, is_image: bool = False) -> dict[str, np.ndarray]:
    """Stats over the first axis (frames); images (N, H, W, C) reduce to per-channel (C, 1, 1)."""
    if is_image:
        data = values.reshape(-1, values.shape[-1]).astype(np.float64) / 255.0
        shape = (values.shape[-1], 1, 1)
    else:
        data = values.reshape(len(values), -1).astype(np.float64)
        shape = (data.shape[1],)
    return {
        "min": data.min(axis=0).reshape(shape),
        "max": data.max(axis=0).reshape(shape),
        "mean": data.mean(axis=0).reshape(shape),
        "std": data.std(axis=0).reshape(shape),
        "count": np.array([len(values)], dtype=np.int64),
    }


def aggregate(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Combine per-episode stats exactly (pooled mean and variance, weighted by frame count)."""
    counts = np.array([float(p["count"][0]) for p in parts])
    total = counts.sum()
    means = np.stack([np.asarray(p["mean"], dtype=np.float64) for p in parts])
    stds = np.stack([np.asarray(p["std"], dtype=np.float64) for p in parts])
    w = (counts / total).reshape(-1, *([1] * (means.ndim - 1)))
    mean = (w * means).sum(axis=0)
    var = (w * (stds**2 + (means - mean) ** 2)).sum(axis=0)
    return {
        "min": np.min(np.stack([np.asarray(p["min"]) for p in parts]), axis=0),
        "max": np.max(np.stack([np.asarray(p["max"]) for p in parts]), axis=0),
        "mean": mean,
        "std": np.sqrt(np.maximum(var, 0.0)),
        "count": np.array([int(total)], dtype=np.int64),
    }


def to_json(stats: dict[str, dict[str, np.ndarray]]) -> dict:
    return {key: {k: np.asarray(v).tolist() for k, v in s.items()} for key, s in stats.items()}
