"""Inference sessions: reset, step, and exact snapshot/restore of a world-model rollout.

A session's whole state is its latent context (``context`` latents), the previous action,
the action history, the step count and its random generator; :meth:`Session.snapshot`
packs exactly that into a small versioned binary record (no pickle) and
:meth:`Session.restore` puts it back, so replaying the same actions after a restore gives
bit-identical frames on the same device.

Snapshot layout (little endian), version 1::

    magic  8s  b"HIWMSNAP"
    version H, flags H (bit 0: noise is on)
    fingerprint 8s   first 8 bytes of sha256(model config + weights): refuses foreign snapshots
    step I, context B, pad B, latent_channels H, grid H, n_actions I, rng_bytes I
    prev_action 2f
    latents  context * latent_channels * grid^2 float32
    actions  n_actions * 2 float32 (the newest last; at most MAX_HISTORY kept)
    rng      rng_bytes of torch.Generator state
    crc32 I of everything before it
"""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from collections.abc import Sequence
from dataclasses import asdict

import numpy as np
import torch

from hiwm.pusht.env import validate_action, validate_state
from hiwm.world_model.model import WorldModel

MAGIC = b"HIWMSNAP"
VERSION = 1
MAX_HISTORY = 1024  # actions kept in a snapshot (a Push-T episode is 300)
_HEAD = struct.Struct("<8sHH8sIBBHHII2f")
_CRC = struct.Struct("<I")


class SnapshotError(ValueError):
    """A snapshot that is damaged, from another model or of an unknown version."""


def model_fingerprint(model: WorldModel) -> bytes:
    """8 bytes naming a model's config and weights (cached on the model; recompute after training)."""
    cached = getattr(model, "_hiwm_fingerprint", None)
    if cached is not None:
        return cached
    h = hashlib.sha256(json.dumps(asdict(model.cfg), sort_keys=True).encode())
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().to("cpu").contiguous().numpy().tobytes())
    model._hiwm_fingerprint = h.digest()[:8]  # type: ignore[attr-defined]
    return model._hiwm_fingerprint  # type: ignore[attr-defined]


_RENDER_ENVS: dict[int, object] = {}


def render_state(state: np.ndarray, image_size: int) -> np.ndarray:
    """The real camera frame of a Push-T state (gym-pusht renders it)."""
    from hiwm.pusht.env import PushTEnv

    if image_size not in _RENDER_ENVS:
        _RENDER_ENVS[image_size] = PushTEnv(image_size=image_size)
    return _RENDER_ENVS[image_size].reset(state=np.asarray(state, dtype=np.float64)).image


class Session:
    """One rollout in the world model. Not thread-safe; batch many with :func:`step_many`."""

    def __init__(self, model: WorldModel, seed: int = 0) -> None:
        self.model = model
        self.cfg = model.cfg
        self.device = next(model.parameters()).device
        self.fingerprint = model_fingerprint(model)
        self.generator = torch.Generator(device="cpu")
        self.generator.manual_seed(seed)
        self.context: torch.Tensor | None = None  # (K, Z, g, g) on the model's device
        self.prev_action = np.zeros(2, dtype=np.float32)
        self.actions: list[np.ndarray] = []
        self.step_count = 0
        self._frame: np.ndarray | None = None

    # state -----------------------------------------------------------------
    def _check_frames(self, frames: np.ndarray) -> np.ndarray:
        arr = np.asarray(frames)
        if arr.ndim == 3:
            arr = arr[None]
        s = self.cfg.image_size
        if arr.ndim != 4 or arr.shape[1:] != (s, s, 3) or arr.dtype != np.uint8 or len(arr) == 0:
            raise ValueError(f"frames must be uint8 (N, {s}, {s}, 3) or ({s}, {s}, 3), got {arr.dtype} {arr.shape}")
        k = self.cfg.context
        if len(arr) < k:  # too short a history: the first frame held still
            arr = np.concatenate([np.repeat(arr[:1], k - len(arr), axis=0), arr])
        return arr[-k:]

    @torch.inference_mode()
    def reset(
        self,
        frames: np.ndarray | None = None,
        state: np.ndarray | None = None,
        prev_action: Sequence[float] | None = None,
        seed: int | None = None,
    ) -> np.ndarray:
        """Start from real frames (oldest first) or a real Push-T state (rendered); returns the current frame.

        ``prev_action`` is the action that led to the newest frame; by default the agent's
        position for a state (holding still), else the centre of the workspace.
        """
        if (frames is None) == (state is None):
            raise ValueError("reset needs exactly one of frames or state")
        if state is not None:
            st = validate_state(state)
            frames = render_state(st, self.cfg.image_size)
            if prev_action is None:
                prev_action = st[:2]
        arr = self._check_frames(frames)
        if prev_action is None:
            prev_action = (self.cfg.action_scale / 2,) * 2
        self.prev_action, _ = validate_action(prev_action)
        self.prev_action = self.prev_action.astype(np.float32)
        x = WorldModel.to_input(torch.from_numpy(np.ascontiguousarray(arr)).to(self.device))
        self.context = self.model.encode(x).contiguous()
        if seed is not None:
            self.generator.manual_seed(seed)
        self.actions, self.step_count = [], 0
        self._frame = None
        return self.frame

    @property
    def frame(self) -> np.ndarray:
        """The current frame (H, W, 3) uint8, decoded from the newest latent (cached)."""
        if self.context is None:
            raise RuntimeError("call reset() first")
        if self._frame is None:
            with torch.inference_mode():
                self._frame = WorldModel.to_frames(self.model.decode(self.context[-1:]).float())[0].cpu().numpy()
        return self._frame

    def step(self, action: Sequence[float]) -> np.ndarray:
        """One control step (0.1 s) with ``action`` (target agent x, y); returns the next frame."""
        return step_many([self], [action])[0]

    # snapshot / restore ----------------------------------------------------
    def snapshot(self) -> bytes:
        if self.context is None:
            raise RuntimeError("call reset() first")
        k, z, g, _ = self.context.shape
        latents = self.context.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()
        history = self.actions[-MAX_HISTORY:]
        acts = np.asarray(history, dtype=np.float32).reshape(-1, 2).tobytes()
        rng = self.generator.get_state().numpy().tobytes()
        flags = 1 if self.cfg.noise_std > 0 else 0
        head = _HEAD.pack(
            MAGIC, VERSION, flags, self.fingerprint, self.step_count, k, 0, z, g, len(history), len(rng),
            *self.prev_action.tolist(),
        )  # fmt: skip
        body = b"".join((head, latents, acts, rng))
        return body + _CRC.pack(zlib.crc32(body))

    def restore(self, data: bytes) -> None:
        """Put the session back into a snapshot's state. Raises :class:`SnapshotError` and changes nothing if bad."""
        data = bytes(data)
        if len(data) < _HEAD.size + _CRC.size:
            raise SnapshotError(f"snapshot too short ({len(data)} bytes)")
        magic, version, _, fingerprint, step, k, _, z, g, n_actions, n_rng, px, py = _HEAD.unpack_from(data)
        if magic != MAGIC:
            raise SnapshotError("not a world-model snapshot (bad magic)")
        if version != VERSION:
            raise SnapshotError(f"snapshot version {version}, this build reads {VERSION}")
        (crc,) = _CRC.unpack_from(data, len(data) - _CRC.size)
        if zlib.crc32(data[: -_CRC.size]) != crc:
            raise SnapshotError("snapshot is corrupt (checksum mismatch)")
        if fingerprint != self.fingerprint:
            raise SnapshotError(
                f"snapshot is from another model ({fingerprint.hex()}), this session runs {self.fingerprint.hex()}"
            )
        shape = (self.cfg.context, self.cfg.latent_channels, self.cfg.grid, self.cfg.grid)
        if (k, z, g, g) != shape:
            raise SnapshotError(f"snapshot latent shape {(k, z, g, g)} does not fit the model {shape}")
        n_lat = k * z * g * g * 4
        expected = _HEAD.size + n_lat + n_actions * 8 + n_rng + _CRC.size
        if len(data) != expected:
            raise SnapshotError(f"snapshot has {len(data)} bytes, its header says {expected}")
        off = _HEAD.size
        latents = torch.frombuffer(bytearray(data[off : off + n_lat]), dtype=torch.float32).view(shape)
        off += n_lat
        acts = np.frombuffer(data, dtype=np.float32, count=n_actions * 2, offset=off).reshape(-1, 2)
        off += n_actions * 8
        rng = torch.frombuffer(bytearray(data[off : off + n_rng]), dtype=torch.uint8)
        try:
            self.generator.set_state(rng)
        except RuntimeError as exc:
            raise SnapshotError(f"snapshot random state is invalid ({exc})") from exc
        self.context = latents.to(self.device)
        self.prev_action = np.array([px, py], dtype=np.float32)
        self.actions = list(acts.copy())
        self.step_count = int(step)
        self._frame = None


@torch.inference_mode()
def step_many(sessions: Sequence[Session], actions: Sequence[Sequence[float]]) -> list[np.ndarray]:
    """Step many sessions of one model at once (one batched forward pass); returns their frames.

    Every action is checked before anything runs (ValueError for a malformed one; values
    outside the workspace are clamped), so a bad action changes no session.
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
    clean = np.stack([validate_action(a)[0] for a in actions]).astype(np.float32)
    device = sessions[0].device
    context = torch.stack([s.context for s in sessions]).contiguous()
    act = torch.from_numpy(clean).to(device)
    prev = torch.from_numpy(np.stack([s.prev_action for s in sessions])).to(device)
    noise = None
    if model.cfg.noise_std > 0:
        shape = context.shape[2:]
        noise = torch.stack([torch.randn(shape, generator=s.generator) for s in sessions]).to(device)
        noise = noise * model.cfg.noise_std
    z = model.step(context, act, prev, noise)
    frames = WorldModel.to_frames(model.decode(z).float()).cpu().numpy()
    for i, s in enumerate(sessions):
        s.context = torch.cat([s.context[1:], z[i : i + 1]]).contiguous()
        s.prev_action = clean[i]
        s.actions.append(clean[i])
        s.step_count += 1
        s._frame = frames[i]
    return list(frames)
