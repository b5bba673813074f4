"""Episodes of one or more LeRobot datasets in memory, split by episode, sampled as training windows."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from hiwm.data import LeRobotDataset

IMAGE_KEY = "observation.image"


@dataclass
class Episode:
    frames: np.ndarray  # (T, H, W, 3) uint8
    actions: np.ndarray  # (T, 2) float32: the action taken at frame t (leads to frame t + 1)
    states: np.ndarray  # (T, 5) float64: agent x, y, block x, y, angle at frame t
    source: str  # dataset root and episode index
    success: bool = False  # the real episode reached success (any ``next.success``)


def load_episodes(roots: list[str | Path], progress: bool = True) -> list[Episode]:
    out: list[Episode] = []
    for root in roots:
        ds = LeRobotDataset(root)
        if IMAGE_KEY not in ds.features:
            raise ValueError(f"{root}: no {IMAGE_KEY!r} feature; a Push-T dataset is needed")
        for i in tqdm(range(ds.num_episodes), desc=f"load {Path(root).name}", disable=not progress, leave=False):
            ep = ds.episode(i)
            out.append(
                Episode(
                    frames=np.ascontiguousarray(ep[IMAGE_KEY]),
                    actions=np.asarray(ep["action"], dtype=np.float32),
                    states=np.asarray(ep["observation.environment_state"], dtype=np.float64),
                    source=f"{root}#{i}",
                    success=bool(np.any(ep["next.success"])) if "next.success" in ep else False,
                )
            )
    if not out:
        raise ValueError(f"no episodes in {[str(r) for r in roots]}")
    return out


def split_episodes(episodes: list[Episode], val_fraction: float, seed: int) -> tuple[list[Episode], list[Episode]]:
    """Hold out whole episodes (a seeded shuffle), at least one each side when there are two or more."""
    order = np.random.default_rng(seed).permutation(len(episodes))
    n_val = round(len(episodes) * val_fraction)
    if val_fraction > 0 and len(episodes) >= 2:
        n_val = min(max(1, n_val), len(episodes) - 1)
    val = [episodes[i] for i in sorted(order[:n_val])]
    train = [episodes[i] for i in sorted(order[n_val:])]
    return train, val


class WindowSampler:
    """Random windows of ``length`` consecutive frames with their actions, from episodes long enough."""

    def __init__(self, episodes: list[Episode], length: int, seed: int) -> None:
        self.episodes = [e for e in episodes if len(e.frames) >= length]
        if not self.episodes:
            raise ValueError(f"no episode has {length} frames or more")
        self.length = length
        starts = np.array([len(e.frames) - length + 1 for e in self.episodes])
        self.weights = starts / starts.sum()  # every window equally likely
        self.rng = np.random.default_rng(seed)

    def sample(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(frames (B, L, H, W, 3) uint8, actions (B, L, 2)); actions[:, t] leads from frame t to t + 1."""
        frames, actions = [], []
        for e in self.rng.choice(len(self.episodes), size=batch, p=self.weights):
            ep = self.episodes[e]
            t = self.rng.integers(0, len(ep.frames) - self.length + 1)
            frames.append(ep.frames[t : t + self.length])
            actions.append(ep.actions[t : t + self.length])
        return torch.from_numpy(np.stack(frames)), torch.from_numpy(np.stack(actions))
