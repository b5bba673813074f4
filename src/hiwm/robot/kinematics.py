"""Serial kinematic chains described like URDF joints, forward kinematics with transforms3d, and DLS IK.

Each joint: a fixed ``origin`` (xyz, rpy as URDF: fixed axes X, Y, Z) from the previous frame, then a
motion about (revolute) or along (prismatic) ``axis``. A ``tip`` offset places the end effector.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
from transforms3d.affines import compose
from transforms3d.axangles import axangle2mat
from transforms3d.euler import euler2mat


@dataclass(frozen=True)
class ChainJoint:
    name: str
    origin_xyz: tuple[float, float, float] = (0.0, 0.0, 0.0)
    origin_rpy: tuple[float, float, float] = (0.0, 0.0, 0.0)
    axis: tuple[float, float, float] = (0.0, 0.0, 1.0)
    type: str = "revolute"  # or "prismatic"

    def __post_init__(self) -> None:
        if self.type not in ("revolute", "prismatic"):
            raise ValueError(f"joint {self.name!r}: type must be revolute or prismatic, got {self.type!r}")
        if not np.linalg.norm(self.axis) > 0:
            raise ValueError(f"joint {self.name!r}: axis must be non-zero")

    @cached_property
    def unit_axis(self) -> np.ndarray:
        return np.asarray(self.axis, float) / np.linalg.norm(self.axis)

    def origin(self) -> np.ndarray:
        return compose(np.asarray(self.origin_xyz, float), euler2mat(*self.origin_rpy, axes="sxyz"), np.ones(3))

    def motion(self, q: float) -> np.ndarray:
        out = np.eye(4)
        if self.type == "revolute":
            out[:3, :3] = axangle2mat(self.unit_axis, q, is_normalized=True)
        else:
            out[:3, 3] = self.unit_axis * q
        return out


@dataclass
class Chain:
    joints: list[ChainJoint]
    tip_xyz: tuple[float, float, float] = (0.0, 0.0, 0.0)
    _origins: list[np.ndarray] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.joints:
            raise ValueError("a kinematic chain needs at least one joint")
        self._origins = [j.origin() for j in self.joints]

    @property
    def names(self) -> list[str]:
        return [j.name for j in self.joints]

    def _frames(self, q: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        """Each joint's frame (after its origin, before its motion) and the tip pose."""
        q = np.asarray(q, float)
        if q.shape != (len(self.joints),):
            raise ValueError(f"expected {len(self.joints)} joint positions, got shape {q.shape}")
        pose, frames = np.eye(4), []
        for origin, joint, qi in zip(self._origins, self.joints, q, strict=True):
            pose = pose @ origin
            frames.append(pose)
            pose = pose @ joint.motion(qi)
        tip = np.eye(4)
        tip[:3, 3] = self.tip_xyz
        return frames, pose @ tip

    def fk(self, q: np.ndarray) -> np.ndarray:
        """The 4x4 pose of the tip for joint positions ``q``."""
        return self._frames(q)[1]

    def position(self, q: np.ndarray) -> np.ndarray:
        return self.fk(q)[:3, 3]

    def jacobian(self, q: np.ndarray) -> np.ndarray:
        """Position Jacobian (3 x n): axis x (tip - joint) for revolute joints, the axis for prismatic ones."""
        return self._jacobian(*self._frames(q))

    def _jacobian(self, frames: list[np.ndarray], tip: np.ndarray) -> np.ndarray:
        cols = []
        for frame, joint in zip(frames, self.joints, strict=True):
            axis = frame[:3, :3] @ joint.unit_axis
            cols.append(np.cross(axis, tip[:3, 3] - frame[:3, 3]) if joint.type == "revolute" else axis)
        return np.stack(cols, axis=1)

    def ik(
        self,
        target: np.ndarray,
        q0: np.ndarray,
        dims: tuple[int, ...] = (0, 1, 2),
        damping: float = 0.01,
        iters: int = 200,
        tol: float = 1e-5,
        max_step: float = 0.2,
        lower: np.ndarray | None = None,
        upper: np.ndarray | None = None,
    ) -> tuple[np.ndarray, float]:
        """Damped least squares for the tip position along ``dims``; returns (q, residual norm)."""
        q = np.asarray(q0, float).copy()
        target = np.asarray(target, float)
        dims_idx = list(dims)
        lower = np.full(len(q), -np.inf) if lower is None else lower
        upper = np.full(len(q), np.inf) if upper is None else upper
        for i in range(iters + 1):
            frames, tip = self._frames(q)  # one forward pass gives both the error and the Jacobian
            err = target - tip[dims_idx, 3]
            if np.linalg.norm(err) < tol or i == iters:
                break
            jac = self._jacobian(frames, tip)[dims_idx]
            step = jac.T @ np.linalg.solve(jac @ jac.T + damping**2 * np.eye(len(dims_idx)), err)
            norm = np.linalg.norm(step)
            q = np.clip(q + (step * (max_step / norm) if norm > max_step else step), lower, upper)  # small steps
        return q, float(np.linalg.norm(err))


def chain_from_dicts(joints: list[dict[str, Any]], tip_xyz: Any = (0.0, 0.0, 0.0)) -> Chain:
    """A chain from plain data (a YAML list of ``{name, origin_xyz, origin_rpy, axis, type}``)."""
    out = []
    for i, spec in enumerate(joints):
        if not isinstance(spec, dict) or "name" not in spec:
            raise ValueError(f"chain joint {i} must be a mapping with a 'name'")
        unknown = set(spec) - {"name", "origin_xyz", "origin_rpy", "axis", "type"}
        if unknown:
            raise ValueError(f"chain joint {spec['name']!r}: unknown keys {sorted(unknown)}")
        kw = {k: tuple(float(v) for v in spec[k]) for k in ("origin_xyz", "origin_rpy", "axis") if k in spec}
        for key, value in kw.items():
            if len(value) != 3:
                raise ValueError(f"chain joint {spec['name']!r}: {key} needs 3 numbers, got {len(value)}")
        out.append(ChainJoint(str(spec["name"]), type=str(spec.get("type", "revolute")), **kw))
    return Chain(out, tuple(float(v) for v in tip_xyz))


def planar_chain(link_lengths: list[float], names: list[str] | None = None) -> Chain:
    """Revolute joints about z, each link along x: the classic planar arm in the xy plane."""
    names = names or [f"joint{i + 1}" for i in range(len(link_lengths))]
    if len(names) != len(link_lengths):
        raise ValueError(f"{len(names)} joint names for {len(link_lengths)} links")
    joints = [ChainJoint(names[0])]
    joints += [
        ChainJoint(n, origin_xyz=(float(length), 0.0, 0.0))
        for n, length in zip(names[1:], link_lengths[:-1], strict=True)
    ]
    return Chain(joints, (float(link_lengths[-1]), 0.0, 0.0))
