"""Episodes of one or more LeRobot datasets in memory, split by episode, sampled as training windows."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from hiwm.data import LeRobotDataset

IMAGE_KEY = "observation.image"
PROPRIO_KEY = "observation.state"
TASK_STATE_KEY = "observation.environment_state"


def image_key(features: dict, camera: str) -> str:
    """The dataset feature holding a camera's frames: LeRobot's ``observation.images.<name>``, or
    ``observation.<name>`` (older single-camera datasets keep ``observation.image``)."""
    for key in (f"observation.images.{camera}", f"observation.{camera}"):
        if key in features:
            return key
    raise ValueError(f"no frames of camera {camera!r} (observation.images.{camera} or observation.{camera})")


@dataclass
class Episode:
    frames: np.ndarray  # (T, H, W, 3) uint8: the first camera
    actions: np.ndarray  # (T, A) float32: the action taken at frame t (leads to frame t + 1)
    states: np.ndarray  # (T, S) float64: the task's true state at frame t ((T, 0) where not recorded)
    source: str  # dataset root and episode index
    success: bool = False  # the real episode reached success (any ``next.success``)
    proprio: np.ndarray | None = None  # (T, P) float32: the robot's state at frame t, for a model with proprio
    more_frames: tuple[np.ndarray, ...] = ()  # the further cameras' frames, in the model's camera order

    @property
    def views(self) -> list[np.ndarray]:
        return [self.frames, *self.more_frames]


def load_episodes(
    roots: list[str | Path],
    progress: bool = True,
    cameras: list[str] | None = None,
    proprio_dim: int = 0,
    action_dim: int | None = None,
    only: Collection[int] | None = None,
) -> list[Episode]:
    """Every episode of the datasets (or ``only`` those, numbered across the datasets in order; the
    others are not decoded): frames of ``cameras`` (default the one ``image``), actions, the task
    state where recorded, and ``proprio_dim`` values of ``observation.state`` when > 0."""
    cameras = cameras or ["image"]
    out: list[Episode] = []
    first = 0  # the number of the dataset's first episode across the datasets
    for root in roots:
        ds = LeRobotDataset(root)
        keys = [image_key(ds.features, c) for c in cameras]
        if proprio_dim and PROPRIO_KEY not in ds.features:
            raise ValueError(f"{root}: no {PROPRIO_KEY!r} feature for the model's {proprio_dim} proprio values")
        wanted = [i for i in range(ds.num_episodes) if only is None or first + i in only]
        first += ds.num_episodes
        for i in tqdm(wanted, desc=f"load {Path(root).name}", disable=not progress, leave=False):
            ep = ds.episode(i)
            actions = np.asarray(ep["action"], dtype=np.float32)
            t = len(actions)
            if action_dim is not None and actions.shape[1:] != (action_dim,):
                raise ValueError(f"{root}: actions are {actions.shape[1:]}, the model takes {action_dim} values")
            proprio = None
            if proprio_dim:
                proprio = np.asarray(ep[PROPRIO_KEY], dtype=np.float32).reshape(t, -1)
                if proprio.shape[1] != proprio_dim:
                    raise ValueError(f"{root}: {PROPRIO_KEY} has {proprio.shape[1]} values, the model {proprio_dim}")
            states = ep[TASK_STATE_KEY] if TASK_STATE_KEY in ep else np.zeros((t, 0))
            out.append(
                Episode(
                    frames=np.ascontiguousarray(ep[keys[0]]),
                    actions=actions,
                    states=np.asarray(states, dtype=np.float64),
                    source=f"{root}#{i}",
                    success=bool(np.any(ep["next.success"])) if "next.success" in ep else False,
                    proprio=proprio,
                    more_frames=tuple(np.ascontiguousarray(ep[k]) for k in keys[1:]),
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


@dataclass
class Windows:
    """A batch of windows: every camera's frames (B, L, H, W, 3) (or latents), actions (B, L, A) with
    ``actions[:, t]`` leading from frame t to t + 1, and proprio (B, L, P) where the episodes have it."""

    views: list[torch.Tensor]
    actions: torch.Tensor
    proprio: torch.Tensor | None = None

    @property
    def frames(self) -> torch.Tensor:
        """The first camera's."""
        return self.views[0]

    def to(self, device: torch.device | str) -> Windows:
        proprio = None if self.proprio is None else self.proprio.to(device)
        return Windows([v.to(device) for v in self.views], self.actions.to(device), proprio)


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

    def sample(self, batch: int) -> Windows:
        picks = []
        for e in self.rng.choice(len(self.episodes), size=batch, p=self.weights):
            ep = self.episodes[e]
            picks.append((ep, int(self.rng.integers(0, len(ep.frames) - self.length + 1))))
        n = self.length

        def stack(get: Callable[[Episode], np.ndarray]) -> torch.Tensor:
            return torch.from_numpy(np.stack([get(ep)[t : t + n] for ep, t in picks]))

        n_views = len(picks[0][0].views)
        views = [stack(lambda ep, c=c: ep.views[c]) for c in range(n_views)]
        has_proprio = picks[0][0].proprio is not None
        proprio = stack(lambda ep: ep.proprio) if has_proprio else None  # type: ignore[arg-type, return-value]
        return Windows(views, stack(lambda ep: ep.actions), proprio)
