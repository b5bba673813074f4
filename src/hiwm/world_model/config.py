"""Typed, JSON-serialisable configurations of the world model, its training and the state probe."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass
class ModelConfig:
    """Sizes of the world model. The latent is a ``latent_channels`` x (image_size / 8)^2 grid."""

    image_size: int = 96
    context: int = 2  # latent frames the dynamics sees (the newest last)
    latent_channels: int = 16
    enc_channels: tuple[int, int, int] = (32, 64, 64)  # after each stride-2 stage: 48, 24, 12
    dyn_channels: int = 64
    dyn_blocks: int = 3
    dec_channels: tuple[int, int, int] = (64, 32, 16)  # at 12, 24, 48 (pixel shuffle up to the image)
    action_dim: int = 2
    action_scale: float = 512.0  # actions live in [0, action_scale]
    noise_std: float = 0.0  # latent noise per step (drawn from the session's generator); 0: deterministic

    def __post_init__(self) -> None:
        self.enc_channels = tuple(self.enc_channels)  # type: ignore[assignment]
        self.dec_channels = tuple(self.dec_channels)  # type: ignore[assignment]
        if self.image_size % 8 or self.image_size < 16:
            raise ValueError(f"image_size must be a multiple of 8 and >= 16, got {self.image_size}")
        if self.context < 1:
            raise ValueError(f"context must be >= 1, got {self.context}")
        if len(self.enc_channels) != 3 or len(self.dec_channels) != 3:
            raise ValueError("enc_channels and dec_channels need 3 entries each")
        if min(self.latent_channels, self.dyn_channels, self.dyn_blocks, *self.enc_channels, *self.dec_channels) < 1:
            raise ValueError("sizes must be >= 1")

    @property
    def grid(self) -> int:
        return self.image_size // 8


@dataclass
class WorldModelTrainConfig:
    """One training run; ``steps`` optimiser steps of ``batch`` windows of ``rollout`` predicted frames."""

    steps: int = 3000
    batch: int = 32
    rollout: int = 4  # open-loop steps unrolled in latent space per training window
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup: int = 100
    grad_clip: float = 1.0
    latent_weight: float = 0.1  # predicted latent vs. encoded next frame
    fg_weight: float = 20.0  # extra weight of agent/block pixels (away from the background or moving)
    val_fraction: float = 0.15  # share of episodes held out (by episode, never by frame)
    val_every: int = 500
    val_windows: int = 24  # open-loop windows per validation
    horizons: tuple[int, ...] = (1, 10, 50)
    checkpoint_every: int = 500
    seed: int = 0
    threads: int = 1  # a shared small CPU: one thread beats two fighting for busy cores
    probe_steps: int = 3000  # state probe training after the world model (0: none)
    probe_calibration: int = 60  # fresh real episodes to fit the probe's success threshold on (0: keep 0.95)
    max_minutes: float = 0.0  # stop early (checkpointing) after this wall time; 0: no limit
    init: str = ""  # start from this checkpoint's weights (same model config); optimiser fresh
    # Optional phases around the joint one (``steps``): on a CPU most of a joint step re-encodes
    # and decodes frames, so an autoencoder phase (single frames) before it and a dynamics phase on
    # cached latents after it train each part several times faster per wall-clock minute.
    ae_minutes: float = 0.0  # encoder + decoder alone, ``ae_batch`` single frames per step
    ae_batch: int = 64
    latent_minutes: float = 0.0  # dynamics alone on frozen-encoder latents, ``latent_rollout`` open-loop steps
    latent_batch: int = 64
    latent_rollout: int = 8

    def __post_init__(self) -> None:
        self.horizons = tuple(int(h) for h in self.horizons)
        if self.steps < 0 or self.batch < 1 or self.rollout < 1:
            raise ValueError("steps >= 0, batch >= 1 and rollout >= 1 required")
        if min(self.ae_minutes, self.latent_minutes) < 0 or min(self.ae_batch, self.latent_batch) < 1:
            raise ValueError("ae_minutes, latent_minutes >= 0 and ae_batch, latent_batch >= 1 required")
        if self.latent_rollout < 1:
            raise ValueError(f"latent_rollout must be >= 1, got {self.latent_rollout}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")


@dataclass
class ProbeConfig:
    """The state probe: a small CNN from a frame to agent xy, block xy, sin/cos of the block angle."""

    image_size: int = 96
    channels: tuple[int, int, int, int] = (16, 32, 64, 64)
    hidden: int = 128
    success_threshold: float = 0.95  # probe coverage counted as success: the env's until fitted (verdict.py)

    def __post_init__(self) -> None:
        self.channels = tuple(self.channels)  # type: ignore[assignment]


def to_dict(cfg: Any) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def from_dict(cls: type[T], doc: dict) -> T:
    """Build a config dataclass from a dict, refusing unknown keys (a foreign or newer file)."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(doc) - names)
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown keys {unknown}")
    return cls(**doc)
