"""The :class:`Policy` seam and the runtime that turns a model into one.

A policy sees one observation at a time, ``{"image": (H, W, 3) uint8 RGB, "state": (state_dim,)
proprio}`` (e.g. an agent's x, y), or with several cameras ``{"images": {camera: (H, W, 3)}, "state":
...}``, and answers a chunk of actions ``(k, action_dim)`` (the task's action space) to execute in
order. Callers that run a chunk of several steps pass the observations in between to ``observe``
(when the policy has it) so histories stay complete.
"""

from __future__ import annotations

import importlib
from collections import deque
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from hiwm.policy.checkpoint import load_model
from hiwm.policy.encoder import resize_images


@runtime_checkable
class Policy(Protocol):
    def reset(self) -> None:
        """Forget the episode so far (history, queued chunks)."""

    def act(self, observation: dict[str, np.ndarray]) -> np.ndarray:
        """The action chunk (k >= 1, action_dim) for this observation, in the task's action units."""


def check_observation(
    observation: dict[str, Any], state_dim: int = 2, cameras: tuple[str, ...] = ("image",)
) -> tuple[list[np.ndarray], np.ndarray]:
    """Validated (one uint8 HxWx3 image per camera, state float (state_dim,)); ValueError with a
    clear message otherwise. A one-camera policy takes ``image``; ``images`` names every camera."""
    named = observation.get("images")
    if isinstance(named, dict) and all(c in named for c in cameras):
        images = [np.asarray(named[c]) for c in cameras]
    elif len(cameras) == 1 and observation.get("image") is not None:
        images = [np.asarray(observation.get("image"))]
    else:
        raise ValueError(f"observation needs images of cameras {list(cameras)} ('images': {{camera: image}})")
    for cam, image in zip(cameras, images, strict=True):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"observation image {cam!r} must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
    state = np.asarray(observation.get("state"), dtype=np.float64).reshape(-1)
    if state.shape != (state_dim,) or not np.all(np.isfinite(state)):
        raise ValueError(f"observation state must be {state_dim} finite numbers, got {state.tolist()}")
    return images, state


class ModelPolicy:
    """A trained model behind the :class:`Policy` interface: history, resizing, chunk selection, ensembling."""

    def __init__(self, model: torch.nn.Module, source: str = "", device: str = "cpu", seed: int = 0) -> None:
        self.model, self.cfg, self.source, self.device = model.eval(), model.cfg, source, torch.device(device)
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.history: deque[tuple[torch.Tensor, torch.Tensor]] = deque(maxlen=self.cfg.n_obs_steps)
        self.ensemble = getattr(self.cfg, "temporal_ensemble", -1.0)
        self.ensemble_window = getattr(self.cfg, "ensemble_window", None)  # None: whole chunks
        self.reset()

    @property
    def n_obs_steps(self) -> int:
        return self.cfg.n_obs_steps

    def reset(self) -> None:
        self.history.clear()
        self._avg: np.ndarray | None = None  # running ensembled actions for the coming steps
        self._wsum: np.ndarray | None = None
        self._count: np.ndarray | None = None

    def warm_up(self) -> None:
        """One query on a blank frame, then a reset: builds what the first real query would (the
        frozen sampler graph takes about 2 s), so the first chunk is not late."""
        size = self.cfg.image_size
        blank = np.zeros((size, size, 3), np.uint8)
        # any state will do (the output is dropped): the middle of the normaliser's range
        state = self.model.state_norm.inverse(torch.zeros(self.cfg.state_dim)).numpy()
        self.act({"images": dict.fromkeys(self.cfg.cameras, blank), "image": blank, "state": state})
        self.reset()

    def observe(self, observation: dict[str, np.ndarray]) -> None:
        images, state = check_observation(observation, self.cfg.state_dim, self.cfg.cameras)
        views = []
        for image in images:
            img = torch.from_numpy(np.array(image)).permute(2, 0, 1).float()  # a copy: message buffers are read-only
            views.append(resize_images(img, self.cfg.image_size).round().clamp(0, 255).to(torch.uint8))
        self.history.append((torch.cat(views), torch.tensor(state, dtype=torch.float32)))

    def predict(self) -> np.ndarray:
        """The whole predicted sequence (horizon, action_dim) for the current history."""
        frames = list(self.history)
        frames = [frames[0]] * (self.cfg.n_obs_steps - len(frames)) + frames  # pad at episode start
        images = torch.stack([f[0] for f in frames])[None].to(self.device)
        states = torch.stack([f[1] for f in frames])[None].to(self.device)
        return self.model.predict(images, states, generator=self.generator)[0].float().cpu().numpy()

    def act(self, observation: dict[str, np.ndarray]) -> np.ndarray:
        self.observe(observation)
        seq = self.predict()
        if self.ensemble >= 0:
            return self._ensembled(seq[: self.ensemble_window])[None]
        start = self.cfg.action_start
        return seq[start : start + self.cfg.n_action_steps].astype(np.float32)

    def _ensembled(self, chunk: np.ndarray) -> np.ndarray:
        """ACT's temporal ensemble, online: each step's action averages every chunk that predicted it,
        weighted exp(-m i) with i = 0 for the oldest prediction."""
        if self._avg is None:
            self._avg, self._wsum, self._count = chunk.copy(), np.ones(len(chunk)), np.ones(len(chunk))
        else:
            n = len(self._avg)
            w = np.exp(-self.ensemble * self._count)
            self._avg = (self._avg * self._wsum[:, None] + chunk[:n] * w[:, None]) / (self._wsum + w)[:, None]
            self._wsum, self._count = self._wsum + w, self._count + 1
            self._avg = np.concatenate([self._avg, chunk[n:]])
            self._wsum = np.concatenate([self._wsum, np.ones(len(chunk) - n)])
            self._count = np.concatenate([self._count, np.ones(len(chunk) - n)])
        action = self._avg[0].astype(np.float32)
        self._avg, self._wsum, self._count = self._avg[1:], self._wsum[1:], self._count[1:]
        return action


def load_policy(spec: str | Path, device: str = "cpu", **kwargs: Any) -> Policy:
    """A policy from a checkpoint folder, or an outside one from ``"package.module:Class"``.

    ``module:Class`` is instantiated as ``Class(**kwargs)`` and must have ``reset()`` and
    ``act(observation)`` (see docs/POLICY_ADAPTER.md).
    """
    text = str(spec)
    if ":" in text and not Path(text).exists():
        module_name, _, attr = text.partition(":")
        try:
            cls = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"cannot import outside policy {text!r}: {exc}") from exc
        policy = cls(**kwargs)
        if not isinstance(policy, Policy):
            raise TypeError(f"{text} has no reset() and act(observation): not a hiwm Policy")
        return policy
    return ModelPolicy(load_model(text, device), source=text, device=device, **kwargs)
