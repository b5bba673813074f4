"""Training windows from LeRobot datasets: observation history + action sequence, weighted and mixed.

Each dataset is held in memory (frames resized to the model's image size, uint8). A sample is one
frame t of a training episode: the ``n_obs_steps`` observations ending at t (the first repeated
before the episode start) and ``horizon`` actions from ``t - action_start`` (the last repeated past
the episode end, and flagged in ``action_pad``). Batches draw their dataset by the mixing ratios,
then a frame uniformly; each sample carries a loss weight (``intervention_weight`` on frames a
human corrected).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from hiwm.data import LeRobotDataset
from hiwm.policy.encoder import resize_images


def parse_data_spec(spec: str) -> tuple[str, float]:
    """``path`` or ``path:ratio`` (ratio > 0) -> (path, ratio)."""
    path, sep, ratio = spec.rpartition(":")
    if sep and path and not Path(spec).exists():
        try:
            value = float(ratio)
        except ValueError as exc:
            raise ValueError(f"data spec {spec!r}: ratio {ratio!r} is not a number") from exc
        if not value > 0:
            raise ValueError(f"data spec {spec!r}: ratio must be > 0")
        return path, value
    return spec, 1.0


@dataclass
class FrameStore:
    """The frames of some episodes of one dataset, back to back."""

    image: np.ndarray  # (N, 3, S, S) uint8
    state: np.ndarray  # (N, 2) float32
    action: np.ndarray  # (N, 2) float32
    weight: np.ndarray  # (N,) float32
    lo: np.ndarray  # (N,) first frame index of each frame's episode
    hi: np.ndarray  # (N,) one past its last frame
    episodes: int

    def __len__(self) -> int:
        return len(self.state)


def load_dataset(
    root: str | Path,
    image_size: int,
    val_fraction: float = 0.1,
    intervention_weight: float = 1.0,
    seed: int = 0,
    max_episodes: int | None = None,
) -> tuple[FrameStore, FrameStore | None]:
    """(train, val) frame stores of one dataset; val holds whole held-out episodes (None if none)."""
    ds = LeRobotDataset(root)
    n = ds.num_episodes if max_episodes is None else min(max_episodes, ds.num_episodes)
    if n == 0:
        raise ValueError(f"{root}: dataset has no episodes")
    order = np.random.default_rng(seed).permutation(n)
    n_val = round(n * val_fraction) if n > 1 else 0
    val_ids = set(order[:n_val].tolist())
    parts: dict[bool, list[dict[str, np.ndarray]]] = {False: [], True: []}
    for i in tqdm(range(n), desc=f"load {Path(root).name}", leave=False):
        ep = ds.episode(i)
        img = torch.from_numpy(ep["observation.image"]).permute(0, 3, 1, 2).float()
        img = resize_images(img, image_size).round().clamp(0, 255).to(torch.uint8).numpy()
        inter = ep.get("intervention", np.zeros(len(img))).reshape(len(img), -1)[:, 0].astype(bool)
        parts[i in val_ids].append(
            {
                "image": img,
                "state": ep["observation.state"].astype(np.float32).reshape(len(img), -1),
                "action": ep["action"].astype(np.float32).reshape(len(img), -1),
                "weight": np.where(inter, intervention_weight, 1.0).astype(np.float32),
            }
        )
    return _store(parts[False]), (_store(parts[True]) if parts[True] else None)


def _store(eps: list[dict[str, np.ndarray]]) -> FrameStore:
    lengths = np.array([len(e["state"]) for e in eps])
    ends = np.cumsum(lengths)
    starts = ends - lengths
    cat = {k: np.concatenate([e[k] for e in eps]) for k in eps[0]}
    for key in ("state", "action"):
        if not np.all(np.isfinite(cat[key])):
            raise ValueError(f"dataset has non-finite values in {key}")
    return FrameStore(**cat, lo=np.repeat(starts, lengths), hi=np.repeat(ends, lengths), episodes=len(eps))


def gather(store: FrameStore, idx: np.ndarray, n_obs: int, horizon: int, action_start: int) -> dict[str, torch.Tensor]:
    """The batch of windows ending (observations) at frames ``idx``."""
    lo, hi = store.lo[idx, None], store.hi[idx, None]
    obs = np.clip(idx[:, None] + np.arange(-n_obs + 1, 1), lo, hi - 1)
    act_raw = idx[:, None] - action_start + np.arange(horizon)
    act = np.clip(act_raw, lo, hi - 1)
    return {
        "image": torch.from_numpy(store.image[obs]),
        "state": torch.from_numpy(store.state[obs]),
        "action": torch.from_numpy(store.action[act]),
        "action_pad": torch.from_numpy(act_raw >= hi),
        "weight": torch.from_numpy(store.weight[idx]),
    }


class MixedSampler:
    """Random batches: dataset by ratio, then a frame uniformly within it."""

    def __init__(self, stores: list[FrameStore], ratios: list[float], seed: int = 0) -> None:
        if len(stores) != len(ratios) or not stores:
            raise ValueError("one ratio per dataset")
        self.stores = stores
        self.p = np.asarray(ratios, dtype=np.float64) / np.sum(ratios)
        self.rng = np.random.default_rng(seed)

    def batch(self, size: int, n_obs: int, horizon: int, action_start: int) -> dict[str, torch.Tensor]:
        which = self.rng.choice(len(self.stores), size=size, p=self.p)
        parts = []
        for k, store in enumerate(self.stores):
            m = int((which == k).sum())
            if m:
                parts.append(gather(store, self.rng.integers(0, len(store), m), n_obs, horizon, action_start))
        return {key: torch.cat([p[key] for p in parts]) for key in parts[0]}
