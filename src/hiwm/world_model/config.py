"""Typed, JSON-serialisable configurations of the world model, its training and the state probe."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, TypeVar

from hiwm.tasks import DEFAULT_TASK, Task, get_task

T = TypeVar("T")


CONDITIONING = ("bump", "mlp")
# fields added after the first checkpoints: at their defaults they name the default task's model
# those checkpoints hold, so a snapshot's model fingerprint leaves them out (session.py)
LATER_FIELDS = (
    "action_low", "action_high", "action_conditioning", "proprio_dim", "proprio_low", "proprio_high",
    "cameras", "cond_hidden", "action_map_channels", "task",
)  # fmt: skip


@dataclass
class ModelConfig:
    """Sizes and interface of the world model: actions, proprio and cameras are plain fields.

    Each camera's frames are encoded to a ``latent_channels`` x (height / 8) x (width / 8) grid.
    ``cameras`` lists (name, height, width); empty means one square camera ``image`` of
    ``image_size`` (read from a dataset's ``observation.image``). Actions are normalised to [-1, 1]
    by ``action_low``/``action_high`` (empty: 0 and ``action_scale`` on every axis) and condition
    the dynamics through an MLP (FiLM of every residual block); ``action_conditioning="bump"``
    adds a Gaussian bump on the first camera's grid where the action's first two values point (an
    action that is a point in the image, such as a target on a table seen from above), ``"mlp"``
    instead adds a learned spatial map of the action embedding. ``proprio_dim`` > 0: proprio state goes in and the next
    one is predicted. ``task`` names the task (:mod:`hiwm.tasks`) the model is a world of: the
    world-model node serves that task's topics (:func:`check_task_interface`).
    """

    image_size: int = 96
    context: int = 2  # latent frames the dynamics sees (the newest last)
    latent_channels: int = 16
    enc_channels: tuple[int, int, int] = (32, 64, 64)  # after each stride-2 stage: 48, 24, 12
    dyn_channels: int = 64
    dyn_blocks: int = 3
    dec_channels: tuple[int, int, int] = (64, 32, 16)  # at 12, 24, 48 (pixel shuffle up to the image)
    action_dim: int = 2
    action_scale: float = 512.0  # without action_low/high: actions live in [0, action_scale]
    noise_std: float = 0.0  # latent noise per step (drawn from the session's generator); 0: deterministic
    action_low: tuple[float, ...] = ()  # per action axis; empty: 0
    action_high: tuple[float, ...] = ()  # per action axis; empty: action_scale
    action_conditioning: str = "bump"  # "bump" (a point in the first camera's image) or "mlp"
    proprio_dim: int = 0
    proprio_low: tuple[float, ...] = ()  # per proprio axis, for normalisation; empty: -1
    proprio_high: tuple[float, ...] = ()  # empty: 1
    cameras: tuple[tuple[str, int, int], ...] = ()  # (name, height, width); empty: ("image", image_size, image_size)
    cond_hidden: int = 64  # width of the action (and proprio) embedding
    action_map_channels: int = 4  # "mlp": channels of the spatial action map per camera
    task: str = DEFAULT_TASK  # the task it is a world of (checkpoints before the field: the default task)

    def __post_init__(self) -> None:
        get_task(self.task)  # ValueError naming the known tasks
        self.enc_channels = tuple(self.enc_channels)  # type: ignore[assignment]
        self.dec_channels = tuple(self.dec_channels)  # type: ignore[assignment]
        self.action_low = tuple(float(v) for v in self.action_low)
        self.action_high = tuple(float(v) for v in self.action_high)
        self.proprio_low = tuple(float(v) for v in self.proprio_low)
        self.proprio_high = tuple(float(v) for v in self.proprio_high)
        try:
            self.cameras = tuple((str(n), int(h), int(w)) for n, h, w in self.cameras)
        except (TypeError, ValueError):
            raise ValueError(f"cameras must be (name, height, width) triples, got {self.cameras!r}") from None
        if self.image_size % 8 or self.image_size < 16:
            raise ValueError(f"image_size must be a multiple of 8 and >= 16, got {self.image_size}")
        for name, h, w in self.cameras:
            if h % 8 or w % 8 or min(h, w) < 16 or max(h, w) > 512:
                raise ValueError(f"camera {name!r}: height and width must be multiples of 8 in [16, 512], got {h}x{w}")
        names = [n for n, _, _ in self.camera_list]
        if len(set(names)) != len(names) or not all(names):
            raise ValueError(f"camera names must be distinct and non-empty, got {names}")
        if self.context < 1:
            raise ValueError(f"context must be >= 1, got {self.context}")
        if len(self.enc_channels) != 3 or len(self.dec_channels) != 3:
            raise ValueError("enc_channels and dec_channels need 3 entries each")
        sizes = (self.latent_channels, self.dyn_channels, self.dyn_blocks, self.action_dim, self.cond_hidden)
        if (
            min(*sizes, *self.enc_channels, *self.dec_channels) < 1
            or min(self.proprio_dim, self.action_map_channels) < 0
        ):
            raise ValueError("sizes must be >= 1 (proprio_dim and action_map_channels >= 0)")
        if self.action_conditioning not in CONDITIONING:
            raise ValueError(f"action_conditioning must be one of {CONDITIONING}, got {self.action_conditioning!r}")
        if self.action_conditioning == "bump" and self.action_dim < 2:
            raise ValueError("action_conditioning 'bump' needs an action of 2 or more values (image x, y first)")
        for name, values, n in (
            ("action_low", self.action_low, self.action_dim),
            ("action_high", self.action_high, self.action_dim),
            ("proprio_low", self.proprio_low, self.proprio_dim),
            ("proprio_high", self.proprio_high, self.proprio_dim),
        ):
            if values and len(values) != n:
                raise ValueError(f"{name} needs {n} values, got {len(values)}")
        for kind, low, high in (("action", self.low, self.high), ("proprio", *self.proprio_limits)):
            if not all(h > lo for lo, h in zip(low, high, strict=True)):
                raise ValueError(f"{kind} limits: every high must exceed its low, got {low} and {high}")

    @property
    def grid(self) -> int:
        """The first camera's latent grid height (the grid of a square camera)."""
        return self.camera_list[0][1] // 8

    @property
    def camera_list(self) -> list[tuple[str, int, int]]:
        return list(self.cameras) or [("image", self.image_size, self.image_size)]

    @property
    def grids(self) -> list[tuple[int, int]]:
        """Each camera's latent grid (height, width)."""
        return [(h // 8, w // 8) for _, h, w in self.camera_list]

    @property
    def low(self) -> tuple[float, ...]:
        return self.action_low or (0.0,) * self.action_dim

    @property
    def high(self) -> tuple[float, ...]:
        return self.action_high or (float(self.action_scale),) * self.action_dim

    @property
    def proprio_limits(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        return self.proprio_low or (-1.0,) * self.proprio_dim, self.proprio_high or (1.0,) * self.proprio_dim


# Named sizes; a preset's fields can be overridden (the interface fields always are the task's).
PRESETS: dict[str, dict[str, Any]] = {
    # the CPU default (tests, the 2-core bench): a few tens of MFLOPs a step
    "small": {},
    # a GPU model of ~35 M parameters, trained under torchrun with --preset gpu (docs/ARCHITECTURE.md)
    "gpu": {
        "latent_channels": 32,
        "enc_channels": (128, 256, 384),
        "dyn_channels": 384,
        "dyn_blocks": 8,
        "dec_channels": (384, 192, 96),
        "cond_hidden": 512,
        "action_map_channels": 16,
    },
}


def preset(name: str = "small", **fields: Any) -> ModelConfig:
    """A :class:`ModelConfig` of a named size with ``fields`` (sizes or the task's interface) on top."""
    if name not in PRESETS:
        raise ValueError(f"unknown world-model preset {name!r}; known: {sorted(PRESETS)}")
    return ModelConfig(**{**PRESETS[name], **fields})


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
    proprio_weight: float = 1.0  # predicted vs. recorded next proprio (normalised), when the model has proprio
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


def check_task_interface(cfg: ModelConfig, task: Task) -> None:
    """ValueError unless a model of ``cfg`` can stand in for ``task``'s world: the task's action
    dimension, no proprio or the task's, and one camera per task camera (in the task's order)."""
    problems = []
    if cfg.action_dim != task.action_dim:
        problems.append(f"action_dim {cfg.action_dim}, the task's actions are {task.action_dim} ({task.action.names})")
    if cfg.proprio_dim not in (0, task.proprio_dim):
        problems.append(f"proprio_dim {cfg.proprio_dim}, the task's proprio is {task.proprio_dim} (or none)")
    if len(cfg.camera_list) != len(task.cameras):
        problems.append(f"{len(cfg.camera_list)} camera(s), the task has {len(task.cameras)}")
    if problems:
        raise ValueError(f"a world model of task {task.name!r} needs its interface: " + "; ".join(problems))


@dataclass
class ProbeConfig:
    """The state probe: a small CNN from a frame to the task's true state, coded as the task world's
    :meth:`~hiwm.tasks.world.TaskWorld.state_coding` says."""

    image_size: int = 96
    channels: tuple[int, int, int, int] = (16, 32, 64, 64)
    hidden: int = 128
    # the state's metric counted as success: the task's threshold until fitted (verdict.py)
    success_threshold: float = 0.95
    task: str = DEFAULT_TASK  # whose state it reads (probes before the field: the default task's)

    def __post_init__(self) -> None:
        self.channels = tuple(self.channels)  # type: ignore[assignment]
        get_task(self.task)


def to_dict(cfg: Any) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def from_dict(cls: type[T], doc: dict) -> T:
    """Build a config dataclass from a dict, refusing unknown keys (a foreign or newer file)."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(doc) - names)
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown keys {unknown}")
    return cls(**doc)
