"""The policy server's core, without middleware: observations in, action chunks out, latency kept.

It queries the policy when an observation arrives and the previous chunk is used up (one
observation per executed row), shows the policy the observations in between (``observe``), and
resets the policy when a new episode starts. It never knows whether the observations come from
the robot or the world model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hiwm.policy.runtime import Policy


class BadPolicyOutput(ValueError):
    """The policy answered something that is not a finite (k, action_dim) chunk."""


@dataclass
class ServerStats:
    observations: int = 0
    queries: int = 0
    episodes: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    resized: int = 0
    warm_up_ms: float | None = None  # the policy's warm-up query, before the first observation
    latencies_ms: list[float] = field(default_factory=list)

    def refuse(self, kind: str) -> None:
        self.refused[kind] = self.refused.get(kind, 0) + 1

    def summary(self) -> dict[str, Any]:
        lat = np.asarray(self.latencies_ms[-1000:])
        return {
            "observations": self.observations,
            "queries": self.queries,
            "episodes": self.episodes,
            "refused": dict(self.refused),
            "resized": self.resized,
            "warm_up_ms": self.warm_up_ms,
            "latency_ms_p50": float(np.percentile(lat, 50)) if lat.size else None,
            "latency_ms_p99": float(np.percentile(lat, 99)) if lat.size else None,
            "latency_ms_max": float(lat.max()) if lat.size else None,
        }


class PolicyServer:
    """Decides when to query ``policy`` and checks what it answers."""

    def __init__(self, policy: Policy, execute_steps: int = 0, action_dim: int = 2) -> None:
        if execute_steps < 0:
            raise ValueError(f"execute_steps must be >= 0, got {execute_steps}")
        self.policy, self.execute_steps, self.action_dim = policy, execute_steps, action_dim
        self.stats = ServerStats()
        self.episode: str | None = None
        self.remaining = 0  # observations still to come from the chunk in flight
        self._observe = getattr(policy, "observe", None)
        warm_up = getattr(policy, "warm_up", None)  # optional: outside policies may have none
        if warm_up is not None:
            start = time.perf_counter()
            warm_up()
            self.stats.warm_up_ms = (time.perf_counter() - start) * 1e3

    def new_episode(self, episode: str) -> None:
        self.policy.reset()
        self.episode, self.remaining = episode, 0
        self.stats.episodes += 1

    def on_observation(
        self,
        image: np.ndarray,
        state: np.ndarray,
        episode: str = "",
        done: bool = False,
        images: dict[str, np.ndarray] | None = None,
    ):
        """The chunk (k, action_dim) float32 to publish now, or None (chunk still running, or episode over).

        ``images`` names every camera's frame (``image`` is the first), for policies of several cameras."""
        self.stats.observations += 1
        if episode != self.episode:
            self.new_episode(episode)
        obs = {"image": image, "state": state} if images is None else {"images": images, "image": image, "state": state}
        if self.remaining > 0:
            self.remaining -= 1
        if done:
            return None
        if self.remaining > 0:
            if self._observe is not None:
                self._observe(obs)
            return None
        start = time.perf_counter()
        chunk = self.policy.act(obs)
        self.stats.latencies_ms.append((time.perf_counter() - start) * 1e3)
        del self.stats.latencies_ms[:-10000]
        self.stats.queries += 1
        chunk = np.asarray(chunk, dtype=np.float32)
        if chunk.ndim == 1:
            chunk = chunk[None]
        if chunk.ndim != 2 or chunk.shape[1] != self.action_dim or chunk.shape[0] < 1:
            raise BadPolicyOutput(f"policy answered shape {chunk.shape}, expected (k >= 1, {self.action_dim})")
        if not np.all(np.isfinite(chunk)):
            raise BadPolicyOutput(f"policy answered non-finite actions {chunk.tolist()}")
        if self.execute_steps:
            chunk = chunk[: self.execute_steps]
        self.remaining = len(chunk)
        return chunk
