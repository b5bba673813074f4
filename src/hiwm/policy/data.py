"""Training windows from LeRobot datasets: observation history + action sequence, weighted and mixed.

Each dataset is held in memory (frames resized to the model's image size, uint8). A sample is one
frame t of a training episode: the ``n_obs_steps`` observations ending at t (the first repeated
before the episode start) and ``horizon`` actions from ``t - action_start`` (the last repeated past
the episode end, and flagged in ``action_pad``). Batches draw their dataset by the mixing ratios,
then a frame uniformly; each sample carries a loss weight (``intervention_weight`` on frames a
human corrected). A policy with the auxiliary state head (a task's policy option) also gets, where a
dataset records the true state (``observation.environment_state``), that state as the head's
target (NaN where unknown).

Cameras are the dataset's video features (:func:`camera_features`), stacked along the channels of
one image: (N, 3 x cameras, S, S).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from hiwm.data import LeRobotDataset
from hiwm.policy.encoder import resize_images
from hiwm.world_model.probe import state_to_targets

ENV_STATE_KEY = "observation.environment_state"
SINGLE_IMAGE_KEY = "observation.image"  # a one-camera dataset's video (LeRobot's older layout): camera "image"
IMAGES_PREFIX = "observation.images."


def camera_features(features: dict[str, dict]) -> dict[str, str]:
    """``{camera name: video feature}`` of a dataset, in its order (``observation.image`` is "image")."""
    out = {}
    for key, feature in features.items():
        if feature.get("dtype") != "video":
            continue
        if key == SINGLE_IMAGE_KEY:
            out["image"] = key
        elif key.startswith(IMAGES_PREFIX):
            out[key.removeprefix(IMAGES_PREFIX)] = key
    return out


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

    image: np.ndarray  # (N, 3 x cameras, S, S) uint8
    state: np.ndarray  # (N, state_dim) float32
    action: np.ndarray  # (N, action_dim) float32
    env_state: np.ndarray  # (N, 5) true agent xy, block xy, angle, NaN rows where unknown; (N, 0): no targets
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
    cameras: tuple[str, ...] = ("image",),
    state_targets: bool = True,
) -> tuple[FrameStore, FrameStore | None]:
    """(train, val) frame stores of one dataset; val holds whole held-out episodes (None if none).

    ``cameras`` are the camera names of :func:`camera_features`, stacked in that order;
    ``state_targets`` loads the true states for the auxiliary state head."""
    ds = LeRobotDataset(root)
    have = camera_features(ds.features)
    missing = [c for c in cameras if c not in have]
    if missing:
        raise ValueError(f"{root}: dataset has no camera {missing} (its cameras: {sorted(have)})")
    n = ds.num_episodes if max_episodes is None else min(max_episodes, ds.num_episodes)
    if n == 0:
        raise ValueError(f"{root}: dataset has no episodes")
    order = np.random.default_rng(seed).permutation(n)
    n_val = round(n * val_fraction) if n > 1 else 0
    val_ids = set(order[:n_val].tolist())
    parts: dict[bool, list[dict[str, np.ndarray]]] = {False: [], True: []}
    for i in tqdm(range(n), desc=f"load {Path(root).name}", leave=False):
        ep = ds.episode(i)
        views = []
        for cam in cameras:
            view = torch.from_numpy(ep[have[cam]]).permute(0, 3, 1, 2).float()
            views.append(resize_images(view, image_size).round().clamp(0, 255).to(torch.uint8).numpy())
        img = np.concatenate(views, axis=1)
        inter = ep.get("intervention", np.zeros(len(img))).reshape(len(img), -1)[:, 0].astype(bool)
        env_state = np.full((len(img), 5 if state_targets else 0), np.nan, np.float32)
        if ENV_STATE_KEY in ep and state_targets:
            known = np.asarray(ep[ENV_STATE_KEY], np.float32).reshape(len(img), -1)
            # recorders without a block pose write zeros (see data.episodes): no target there
            env_state = np.where(np.any(known != 0, axis=1, keepdims=True), known, np.nan).astype(np.float32)
        parts[i in val_ids].append(
            {
                "image": img,
                "state": ep["observation.state"].astype(np.float32).reshape(len(img), -1),
                "action": ep["action"].astype(np.float32).reshape(len(img), -1),
                "env_state": env_state,
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


def action_window(store: FrameStore, idx: np.ndarray, horizon: int, action_start: int) -> tuple[np.ndarray, np.ndarray]:
    """Frame indices (len(idx), horizon) of the actions of the windows at ``idx``: as wanted (may run
    past the episode's end), and clamped to the episode (the last action repeats)."""
    wanted = idx[:, None] - action_start + np.arange(horizon)
    return wanted, np.clip(wanted, store.lo[idx, None], store.hi[idx, None] - 1)


def gather(store: FrameStore, idx: np.ndarray, n_obs: int, horizon: int, action_start: int) -> dict[str, torch.Tensor]:
    """The batch of windows ending (observations) at frames ``idx``."""
    lo, hi = store.lo[idx, None], store.hi[idx, None]
    obs = np.clip(idx[:, None] + np.arange(-n_obs + 1, 1), lo, hi - 1)
    act_raw, act = action_window(store, idx, horizon, action_start)
    batch = {
        "image": torch.from_numpy(store.image[obs]),
        "state": torch.from_numpy(store.state[obs]),
        "action": torch.from_numpy(store.action[act]),
        "action_pad": torch.from_numpy(act_raw >= hi),
        "weight": torch.from_numpy(store.weight[idx]),
    }
    if store.env_state.shape[1]:  # the state head's targets
        batch["aux_target"] = torch.from_numpy(aux_targets(store.env_state[obs].reshape(-1, 5)).reshape(*obs.shape, -1))
    return batch


def action_offsets(store: FrameStore, horizon: int, action_start: int) -> np.ndarray:
    """(N, horizon, action_dim): every window's actions minus the agent state at its current frame.

    What a policy with relative actions predicts, so its normaliser is fitted on these.
    """
    idx = np.arange(len(store))
    _, act = action_window(store, idx, horizon, action_start)
    return store.action[act] - store.state[idx, None, :]


def aux_targets(env_state: np.ndarray) -> np.ndarray:
    """(N, 5) true states -> (N, 6) targets of the auxiliary state head: positions in [-1, 1], sin, cos."""
    t = state_to_targets(env_state)  # positions / 512, sin, cos; NaN rows stay NaN
    t[:, :4] = 2 * t[:, :4] - 1
    return t


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
