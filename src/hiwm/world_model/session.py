"""Inference sessions: reset, step, and exact snapshot/restore of a world-model rollout.

A session's whole state is each camera's latent context (``context`` latents), the previous
action, the proprio state, the action history, the step count and its random generator;
:meth:`Session.snapshot` packs exactly that into a small versioned binary record (no pickle)
and :meth:`Session.restore` puts it back, so replaying the same actions after a restore gives
bit-identical frames and proprio on the same device.

Snapshot layout (little endian), version 2::

    magic  8s  b"HIWMSNAP"
    version H, flags H (bit 0: noise is on)
    fingerprint 8s   first 8 bytes of sha256(model config + weights): refuses foreign snapshots
    step I, context B, cameras B, latent_channels H, action_dim H, proprio_dim H, n_actions I, rng_bytes I
    grids    cameras * (height H, width H) latent grid of each camera
    prev_action action_dim f, proprio proprio_dim f
    latents  per camera context * latent_channels * height * width float32
    actions  n_actions * action_dim float32 (the newest last; at most HISTORY_BYTES of them kept)
    rng      rng_bytes of torch.Generator state
    crc32 I of everything before it

Version 1 (one camera, 2-D actions, no proprio: the first models, of the default task) is still read.
"""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, fields

import numpy as np
import torch

from hiwm.tasks.world import TaskWorld
from hiwm.world_model.config import LATER_FIELDS, ModelConfig
from hiwm.world_model.model import WorldModel

MAGIC = b"HIWMSNAP"
VERSION = 2
HISTORY_BYTES = 8192  # action history kept in a snapshot: 1024 steps of 2-D actions, 292 of 7-D ones
_HEAD = struct.Struct("<8sHH8sIBBHHHII")
_HEAD_V1 = struct.Struct("<8sHH8sIBBHHII2f")
_GRID = struct.Struct("<HH")
_CRC = struct.Struct("<I")


class SnapshotError(ValueError):
    """A snapshot that is damaged, from another model or of an unknown version."""


def model_fingerprint(model: WorldModel) -> bytes:
    """8 bytes naming a model's config and weights (cached on the model; recompute after training).

    Config fields added after the first checkpoints count only away from their defaults, so a
    model of those keeps the fingerprint its snapshots were written with.
    """
    cached = getattr(model, "_hiwm_fingerprint", None)
    if cached is not None:
        return cached
    doc = asdict(model.cfg)
    defaults = {f.name: f.default for f in fields(ModelConfig)}
    for name in LATER_FIELDS:
        if doc[name] == defaults[name]:
            del doc[name]
    h = hashlib.sha256(json.dumps(doc, sort_keys=True).encode())
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().to("cpu").contiguous().numpy().tobytes())
    model._hiwm_fingerprint = h.digest()[:8]  # type: ignore[attr-defined]
    return model._hiwm_fingerprint  # type: ignore[attr-defined]


def clean_action(action: object, low: Sequence[float], high: Sequence[float]) -> np.ndarray:
    """One action as float32 within [low, high] (clamped). ValueError for a wrong length or a non-finite value."""
    n = len(low)
    try:
        arr = np.asarray(action, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"action must be {n} numbers, got {action!r}") from exc
    if arr.shape != (n,):
        raise ValueError(f"action must have {n} values, got {arr.size}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"action must be finite, got {arr.tolist()}")
    return np.clip(arr, low, high).astype(np.float32)


def clean_proprio(proprio: object, n: int) -> np.ndarray:
    """A proprio state as float32 (no clamping: a state is what it is). ValueError if malformed."""
    try:
        arr = np.asarray(proprio, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"proprio must be {n} numbers, got {proprio!r}") from exc
    if arr.shape != (n,) or not np.all(np.isfinite(arr)):
        raise ValueError(f"proprio must be {n} finite numbers, got {arr.tolist()}")
    return arr.astype(np.float32)


def model_world(cfg: ModelConfig) -> TaskWorld:
    """The world of the task a model is of (imports its physics on first use)."""
    from hiwm.world_model.probe import task_world

    return task_world(cfg.task)


def render_state(cfg: ModelConfig, state: object) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A true state of the model's task, validated, and every model camera's real frame of it by
    name (the task's env renders them at the first camera's size; the task's cameras in order are
    the model's)."""
    world = model_world(cfg)
    cameras = [name for name, _, _ in cfg.camera_list]
    if len(cameras) != len(world.task.cameras):
        raise ValueError(f"the model has {len(cameras)} camera(s), task {cfg.task!r} {len(world.task.cameras)}")
    st = world.validate_state(state)
    frames = world.render_state(st, cfg.camera_list[0][1])
    return st, {name: frames[c.name] for name, c in zip(cameras, world.task.cameras, strict=True)}


class Session:
    """One rollout in the world model. Not thread-safe; batch many with :func:`step_many`."""

    def __init__(self, model: WorldModel, seed: int = 0) -> None:
        self.model = model
        self.cfg = model.cfg
        self.device = next(model.parameters()).device
        self.fingerprint = model_fingerprint(model)
        self.generator = torch.Generator(device="cpu")
        self.generator.manual_seed(seed)
        self.context: list[torch.Tensor] | None = None  # per camera (K, Z, h, w) on the model's device
        self.prev_action = np.zeros(self.cfg.action_dim, dtype=np.float32)
        self.proprio = np.zeros(self.cfg.proprio_dim, dtype=np.float32)  # the current proprio state
        self.actions: list[np.ndarray] = []
        self.step_count = 0
        self._views: list[np.ndarray] | None = None

    # state -----------------------------------------------------------------
    def _check_frames(self, frames: object) -> list[np.ndarray]:
        """Each camera's newest ``context`` frames, from one array (one camera), a sequence or a name -> array map."""
        cameras = self.cfg.camera_list
        if isinstance(frames, Mapping):
            missing = [n for n, _, _ in cameras if n not in frames]
            if missing or len(frames) != len(cameras):
                raise ValueError(f"frames must name the cameras {[n for n, _, _ in cameras]}, got {sorted(frames)}")
            per_camera = [frames[n] for n, _, _ in cameras]
        elif len(cameras) == 1:
            per_camera = [frames]
        else:
            per_camera = list(frames)  # type: ignore[call-overload]
            if len(per_camera) != len(cameras):
                raise ValueError(f"frames for {len(cameras)} cameras needed, got {len(per_camera)}")
        out, k = [], self.cfg.context
        for (name, h, w), f in zip(cameras, per_camera, strict=True):
            arr = np.asarray(f)
            if arr.ndim == 3:
                arr = arr[None]
            if arr.ndim != 4 or arr.shape[1:] != (h, w, 3) or arr.dtype != np.uint8 or len(arr) == 0:
                want = f"uint8 (N, {h}, {w}, 3) or ({h}, {w}, 3)"
                raise ValueError(f"camera {name!r}: frames must be {want}, got {arr.dtype} {arr.shape}")
            if len(arr) < k:  # too short a history: the first frame held still
                arr = np.concatenate([np.repeat(arr[:1], k - len(arr), axis=0), arr])
            out.append(arr[-k:])
        return out

    @torch.inference_mode()
    def reset(
        self,
        frames: object = None,
        state: np.ndarray | None = None,
        prev_action: Sequence[float] | None = None,
        seed: int | None = None,
        proprio: Sequence[float] | None = None,
    ) -> np.ndarray:
        """Start from real frames (oldest first) or a true state of the model's task (rendered by its
        env); returns the first camera's frame.

        ``frames``: one camera's array, or one per camera (a sequence in the config's order, or
        a name -> array map). ``prev_action`` is the action that led to the newest frame; by
        default, from a state, its entries named as the actions (holding still), else the middle of
        the action limits. ``proprio`` is required when the model has proprio (from a state: its
        proprio entries by default).
        """
        if (frames is None) == (state is None):
            raise ValueError("reset needs exactly one of frames or state")
        if state is not None:
            st, frames = render_state(self.cfg, state)
            task_world = model_world(self.cfg)
            if prev_action is None:
                prev_action = task_world.state_entries(st, task_world.task.action.names)
            if proprio is None and self.cfg.proprio_dim:
                proprio = task_world.state_entries(st, task_world.task.observations.proprio)
        views = self._check_frames(frames)
        low, high = self.cfg.low, self.cfg.high
        if prev_action is None:
            prev_action = [(lo + hi) / 2 for lo, hi in zip(low, high, strict=True)]
        clean_prev = clean_action(prev_action, low, high)
        if self.cfg.proprio_dim and proprio is None:
            raise ValueError(f"this model needs the proprio state ({self.cfg.proprio_dim} values) at reset")
        clean_prop = clean_proprio(proprio if self.cfg.proprio_dim else [], self.cfg.proprio_dim)
        x = [WorldModel.to_input(torch.from_numpy(np.ascontiguousarray(v)).to(self.device)) for v in views]
        self.context = [self.model.encode(v).contiguous() for v in x]
        self.prev_action, self.proprio = clean_prev, clean_prop
        if seed is not None:
            self.generator.manual_seed(seed)
        self.actions, self.step_count = [], 0
        self._views = None
        return self.frame

    @property
    def views(self) -> dict[str, np.ndarray]:
        """Every camera's current frame (H, W, 3) uint8 by name, decoded from its newest latent (cached)."""
        if self.context is None:
            raise RuntimeError("call reset() first")
        if self._views is None:
            with torch.inference_mode():
                self._views = [
                    WorldModel.to_frames(self.model.decode(c[-1:], cam).float())[0].cpu().numpy()
                    for cam, c in enumerate(self.context)
                ]
        return {name: v for (name, _, _), v in zip(self.cfg.camera_list, self._views, strict=True)}

    @property
    def frame(self) -> np.ndarray:
        """The first camera's current frame (H, W, 3) uint8."""
        return next(iter(self.views.values()))

    def step(self, action: Sequence[float]) -> np.ndarray:
        """One control step with ``action`` (the task's action); returns the first camera's next frame."""
        return step_many([self], [action])[0]

    # snapshot / restore ----------------------------------------------------
    def snapshot(self) -> bytes:
        if self.context is None:
            raise RuntimeError("call reset() first")
        cfg = self.cfg
        grids = b"".join(_GRID.pack(*c.shape[-2:]) for c in self.context)
        latents = b"".join(c.detach().to("cpu", torch.float32).contiguous().numpy().tobytes() for c in self.context)
        history = self.actions[-(HISTORY_BYTES // (4 * cfg.action_dim)) :]
        acts = np.asarray(history, dtype=np.float32).reshape(-1, cfg.action_dim).tobytes()
        rng = self.generator.get_state().numpy().tobytes()
        flags = 1 if cfg.noise_std > 0 else 0
        head = _HEAD.pack(
            MAGIC, VERSION, flags, self.fingerprint, self.step_count, cfg.context, len(self.context),
            cfg.latent_channels, cfg.action_dim, cfg.proprio_dim, len(history), len(rng),
        )  # fmt: skip
        body = b"".join((head, grids, self.prev_action.tobytes(), self.proprio.tobytes(), latents, acts, rng))
        return body + _CRC.pack(zlib.crc32(body))

    def _parse(self, data: bytes) -> tuple[int, np.ndarray, np.ndarray, list[torch.Tensor], np.ndarray, torch.Tensor]:
        """(step, previous action, proprio, latents per camera, action history, rng state) of a checked snapshot."""
        cfg = self.cfg
        if len(data) < _HEAD_V1.size + _CRC.size:
            raise SnapshotError(f"snapshot too short ({len(data)} bytes)")
        magic, version = struct.unpack_from("<8sH", data)
        if magic != MAGIC:
            raise SnapshotError("not a world-model snapshot (bad magic)")
        if version not in (1, VERSION):
            raise SnapshotError(f"snapshot version {version}, this build reads 1 and {VERSION}")
        (crc,) = _CRC.unpack_from(data, len(data) - _CRC.size)
        if zlib.crc32(data[: -_CRC.size]) != crc:
            raise SnapshotError("snapshot is corrupt (checksum mismatch)")
        if version == 1:
            _, _, _, fingerprint, step, k, _, z, g, n_actions, n_rng, px, py = _HEAD_V1.unpack_from(data)
            n_cams, a_dim, p_dim, grids, off = 1, 2, 0, [(g, g)], _HEAD_V1.size
        else:
            _, _, _, fingerprint, step, k, n_cams, z, a_dim, p_dim, n_actions, n_rng = _HEAD.unpack_from(data)
            off = _HEAD.size + n_cams * _GRID.size
            if len(data) < off + _CRC.size:
                raise SnapshotError(f"snapshot too short ({len(data)} bytes) for {n_cams} cameras")
            grids = [_GRID.unpack_from(data, _HEAD.size + i * _GRID.size) for i in range(n_cams)]
        if fingerprint != self.fingerprint:
            raise SnapshotError(
                f"snapshot is from another model ({fingerprint.hex()}), this session runs {self.fingerprint.hex()}"
            )
        found = (k, z, a_dim, p_dim, [tuple(g) for g in grids])
        shape = (cfg.context, cfg.latent_channels, cfg.action_dim, cfg.proprio_dim, cfg.grids)
        if found != shape:
            raise SnapshotError(
                f"snapshot (context, latent, action, proprio, grids) {found} does not fit the model {shape}"
            )
        n_lat = sum(k * z * h * w for h, w in grids) * 4
        vectors = 0 if version == 1 else (a_dim + p_dim) * 4
        expected = off + vectors + n_lat + n_actions * a_dim * 4 + n_rng + _CRC.size
        if len(data) != expected:
            raise SnapshotError(f"snapshot has {len(data)} bytes, its header says {expected}")
        if version == 1:
            prev, proprio = np.array([px, py], dtype=np.float32), np.zeros(0, np.float32)
        else:
            prev = np.frombuffer(data, np.float32, a_dim, off).copy()
            proprio = np.frombuffer(data, np.float32, p_dim, off + a_dim * 4).copy()
            off += vectors
        latents = []
        for h, w in grids:
            n = k * z * h * w * 4
            latents.append(torch.frombuffer(bytearray(data[off : off + n]), dtype=torch.float32).view(k, z, h, w))
            off += n
        acts = np.frombuffer(data, np.float32, n_actions * a_dim, off).reshape(-1, a_dim).copy()
        off += n_actions * a_dim * 4
        rng = torch.frombuffer(bytearray(data[off : off + n_rng]), dtype=torch.uint8)
        return int(step), prev, proprio, latents, acts, rng

    def restore(self, data: bytes) -> None:
        """Put the session back into a snapshot's state. Raises :class:`SnapshotError` and changes nothing if bad."""
        step, prev, proprio, latents, acts, rng = self._parse(bytes(data))
        state = self.generator.get_state()
        try:
            self.generator.set_state(rng)
        except RuntimeError as exc:
            self.generator.set_state(state)
            raise SnapshotError(f"snapshot random state is invalid ({exc})") from exc
        self.context = [lat.to(self.device) for lat in latents]
        self.prev_action, self.proprio = prev, proprio
        self.actions = list(acts)
        self.step_count = step
        self._views = None


@torch.inference_mode()
def step_many(sessions: Sequence[Session], actions: Sequence[Sequence[float]]) -> list[np.ndarray]:
    """Step many sessions of one model at once (one batched forward pass); returns their first camera's frames
    (every camera's are in each session's ``views``, the predicted proprio in its ``proprio``).

    Every action is checked before anything runs (ValueError for a malformed one; values
    outside the action limits are clamped), so a bad action changes no session.
    """
    if len(sessions) != len(actions):
        raise ValueError(f"{len(sessions)} sessions but {len(actions)} actions")
    if not sessions:
        return []
    model = sessions[0].model
    if any(s.model is not model for s in sessions):
        raise ValueError("step_many needs sessions of one model")
    if any(s.context is None for s in sessions):
        raise RuntimeError("call reset() on every session first")
    cfg = model.cfg
    clean = np.stack([clean_action(a, cfg.low, cfg.high) for a in actions])
    device = sessions[0].device
    n_cams = len(cfg.camera_list)
    contexts = [torch.stack([s.context[cam] for s in sessions]).contiguous() for cam in range(n_cams)]  # type: ignore[index]
    act = torch.from_numpy(clean).to(device)
    prev = torch.from_numpy(np.stack([s.prev_action for s in sessions])).to(device)
    proprio = torch.from_numpy(np.stack([s.proprio for s in sessions])).to(device) if cfg.proprio_dim else None
    noise = None
    if cfg.noise_std > 0:  # each session's draws, camera after camera, from its own generator
        draws = [[torch.randn(c.shape[2:], generator=s.generator) for c in contexts] for s in sessions]
        noise = [torch.stack([d[cam] for d in draws]).to(device) * cfg.noise_std for cam in range(n_cams)]
    zs, next_proprio = model.step_all(contexts, act, prev, proprio, noise)
    views = [WorldModel.to_frames(model.decode(z, cam).float()).cpu().numpy() for cam, z in enumerate(zs)]
    props = next_proprio.float().cpu().numpy() if next_proprio is not None else None
    for i, s in enumerate(sessions):
        s.context = [torch.cat([c[1:], z[i : i + 1]]).contiguous() for c, z in zip(s.context, zs, strict=True)]  # type: ignore[arg-type]
        s.prev_action = clean[i]
        if props is not None:
            s.proprio = props[i].copy()
        s.actions.append(clean[i])
        s.step_count += 1
        s._views = [v[i] for v in views]
    return list(views[0])
