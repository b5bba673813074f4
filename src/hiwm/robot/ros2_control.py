"""The ros2_control bridge's core: action chunks -> limited joint-space waypoints, and the stale-command hold.

Actions are either Cartesian (``x, y[, z]`` in the task's action box, mapped linearly onto a workspace box
in metres and solved by damped-least-squares IK through a :class:`~hiwm.robot.kinematics.Chain`) or joint
positions. Every plan respects the joint limits (clamped) and the velocity limits (waypoint times are
stretched, never shortened), starting from the measured joint positions. Messages for
joint_trajectory_controller (``trajectory_msgs/JointTrajectory``) and forward command controllers
(``std_msgs/Float64MultiArray``) are built here too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hiwm.comm.interfaces import new_message
from hiwm.robot import BadCommand
from hiwm.robot.kinematics import Chain

ACTION_SPACES = ("cartesian", "joint")
COORDS = {"x": 0, "y": 1, "z": 2}


@dataclass
class Plan:
    times: np.ndarray  # seconds from now, strictly increasing, > 0
    positions: np.ndarray  # horizon x joints
    warnings: list[str] = field(default_factory=list)


@dataclass
class BridgeLimits:
    lower: np.ndarray  # joint positions
    upper: np.ndarray
    max_velocity: np.ndarray  # per joint, > 0
    workspace_low: np.ndarray  # metres, one per Cartesian axis
    workspace_high: np.ndarray


class Ros2ControlBridge:
    def __init__(
        self,
        joint_names: list[str],
        limits: BridgeLimits,
        action_space: str = "cartesian",
        chain: Chain | None = None,
        axes: list[str] | None = None,
        fixed: dict[str, float] | None = None,
        action_low: np.ndarray | None = None,
        action_high: np.ndarray | None = None,
        stale_after_s: float = 1.0,
        ik_tolerance: float = 1e-3,
    ) -> None:
        n = len(joint_names)
        if n == 0 or len(set(joint_names)) != n:
            raise ValueError(f"joint_names must be non-empty and unique, got {joint_names}")
        if action_space not in ACTION_SPACES:
            raise ValueError(f"action_space must be one of {ACTION_SPACES}, got {action_space!r}")
        for key in ("lower", "upper", "max_velocity"):
            if np.shape(getattr(limits, key)) != (n,):
                raise ValueError(f"{key} needs one value per joint ({n}), got {np.shape(getattr(limits, key))}")
        if not np.all(limits.lower < limits.upper) or not np.all(limits.max_velocity > 0):
            raise ValueError("joint limits need lower < upper and max_velocity > 0")
        self.joint_names, self.limits, self.action_space = list(joint_names), limits, action_space
        self.stale_after_s, self.ik_tolerance = stale_after_s, ik_tolerance
        if action_space == "cartesian":
            if chain is None:
                raise ValueError("Cartesian actions need a kinematic chain")
            if chain.names != self.joint_names:
                raise ValueError(f"the chain's joints {chain.names} must be joint_names {self.joint_names}")
            axes = axes or ["x", "y"]
            unknown = [a for a in axes if a not in COORDS]
            if unknown or len(set(axes)) != len(axes):
                raise ValueError(f"axes must be distinct names from x, y, z; got {axes}")
            d = len(axes)
            fixed = fixed or {}
            if set(fixed) - set(COORDS) or set(fixed) & set(axes):
                raise ValueError(f"fixed coordinates {sorted(fixed)} must be among x, y, z and not in axes {axes}")
            # Coordinates the action does not set but the IK holds (e.g. the table height for x, y actions).
            self.dims = tuple(COORDS[a] for a in axes) + tuple(COORDS[a] for a in fixed)
            self.fixed = np.asarray(list(fixed.values()), dtype=np.float64)
            self.action_low = np.zeros(d) if action_low is None else np.asarray(action_low, float)
            self.action_high = np.full(d, 512.0) if action_high is None else np.asarray(action_high, float)
            for key in ("action_low", "action_high"):
                if getattr(self, key).shape != (d,):
                    raise ValueError(f"{key} needs one value per axis {axes}")
            if limits.workspace_low.shape != (d,) or limits.workspace_high.shape != (d,):
                raise ValueError(f"workspace_low/high need one value per axis {axes}")
            if not np.all(self.action_low < self.action_high) or not np.all(
                limits.workspace_low < limits.workspace_high
            ):
                raise ValueError("action and workspace boxes need low < high")
            self.action_dim = d
        else:
            self.action_dim = n
        self.chain = chain
        mid, half = (limits.lower + limits.upper) / 2, (limits.upper - limits.lower) / 2
        rng = np.random.default_rng(0)  # fixed restarts: the same command always gives the same plan
        self._restarts = [mid] + [mid + half * rng.uniform(-0.8, 0.8, n) for _ in range(6)]
        self.current: np.ndarray | None = None  # measured joint positions, in joint_names order
        self.last_command: float | None = None
        self.holding = False

    # -- state ---------------------------------------------------------------------------------
    def on_joint_state(self, names: list[str], positions: Any) -> str | None:
        """Take the joints we drive from a JointState; returns a warning if some are missing."""
        index = {name: i for i, name in enumerate(names)}
        missing = [j for j in self.joint_names if j not in index]
        if missing or len(positions) != len(names):
            return (
                f"joint_states lacks {missing}"
                if missing
                else "joint_states has names and positions of different length"
            )
        q = np.array([positions[index[j]] for j in self.joint_names], dtype=np.float64)
        if not np.all(np.isfinite(q)):
            return "joint_states has non-finite positions"
        self.current = q
        return None

    def stale(self, now: float) -> bool:
        """True once per silence: commands stopped for ``stale_after_s`` and no hold was sent yet."""
        if self.holding or self.last_command is None or self.current is None:
            return False
        if now - self.last_command > self.stale_after_s:
            self.holding = True
            return True
        return False

    def action_position(self) -> np.ndarray | None:
        """Where the arm is, in the action space (the tool mapped back into the action box, or the joints):
        what the policy reads on ``robot/state``. None before the first joint_states."""
        if self.current is None:
            return None
        if self.action_space != "cartesian":
            return self.current.copy()
        d = len(self.action_low)
        tip = self.chain.position(self.current)[list(self.dims[:d])]
        frac = (tip - self.limits.workspace_low) / (self.limits.workspace_high - self.limits.workspace_low)
        return self.action_low + frac * (self.action_high - self.action_low)

    # -- planning ------------------------------------------------------------------------------
    def workspace_point(self, action: np.ndarray) -> np.ndarray:
        frac = (action - self.action_low) / (self.action_high - self.action_low)
        point = self.limits.workspace_low + frac * (self.limits.workspace_high - self.limits.workspace_low)
        return np.concatenate([point, self.fixed])

    def solve(self, point: np.ndarray, seed: np.ndarray) -> tuple[np.ndarray, float]:
        """IK from ``seed`` (the continuous choice); if that gets stuck on a joint limit, from fixed restarts."""
        lo, hi = self.limits.lower, self.limits.upper
        best = self.chain.ik(point, seed, self.dims, lower=lo, upper=hi)
        for restart in self._restarts:
            if best[1] <= self.ik_tolerance:
                break
            q, residual = self.chain.ik(point, restart, self.dims, lower=lo, upper=hi)
            if residual < best[1]:
                best = (q, residual)
        return best

    def plan(self, horizon: int, action_dim: int, dt: float, data: Any, now: float) -> Plan:
        if self.current is None:
            raise BadCommand("no_state", "no joint_states received yet: cannot plan from an unknown position")
        if horizon < 1:
            raise BadCommand("shape", f"horizon must be >= 1, got {horizon}")
        if action_dim != self.action_dim:
            raise BadCommand("shape", f"action_dim {action_dim} != {self.action_dim} ({self.action_space} actions)")
        rows = np.asarray(data, dtype=np.float64)
        if rows.size != horizon * action_dim:
            raise BadCommand(
                "shape", f"expected {horizon}x{action_dim} = {horizon * action_dim} values, got {rows.size}"
            )
        if not np.all(np.isfinite(rows)):
            raise BadCommand("finite", "actions must be finite (NaN or infinity refused)")
        if not dt > 0:
            raise BadCommand("dt", f"dt must be > 0 s, got {dt}")
        rows = rows.reshape(horizon, action_dim)
        warnings: list[str] = []
        if self.action_space == "cartesian":
            clipped = np.clip(rows, self.action_low, self.action_high)
            if np.any(clipped != rows):
                warnings.append(
                    f"workspace limit: {int(np.sum(np.any(clipped != rows, 1)))} action(s) clamped into the box"
                )
            targets = np.empty((horizon, len(self.joint_names)))
            q = self.current
            for i, action in enumerate(clipped):
                q, residual = self.solve(self.workspace_point(action), q)
                if residual > self.ik_tolerance:
                    warnings.append(
                        f"workspace limit: row {i} unreachable by {residual * 1000:.1f} mm; nearest reachable used"
                    )
                targets[i] = q
        else:
            targets = rows
        limited = np.clip(targets, self.limits.lower, self.limits.upper)
        if np.any(limited != targets):
            warnings.append("joint limit: positions clamped into [lower, upper]")
        # Velocity limit: each step takes at least max(|dq| / v_max); never faster than the chunk's dt.
        steps = np.diff(np.vstack([self.current, limited]), axis=0)
        needed = np.max(np.abs(steps) / self.limits.max_velocity, axis=1)
        durations = np.maximum(dt, needed)
        if np.any(needed > dt):
            warnings.append(f"velocity limit: chunk stretched from {horizon * dt:.2f} s to {durations.sum():.2f} s")
        self.last_command, self.holding = now, False
        return Plan(np.cumsum(durations), limited, warnings)

    def hold_positions(self) -> np.ndarray | None:
        return None if self.current is None else self.current.copy()


def duration(seconds: float) -> Any:
    ns = round(seconds * 1e9)
    return new_message("builtin_interfaces/msg/Duration", sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def joint_trajectory(joint_names: list[str], times: np.ndarray, positions: np.ndarray, header: Any) -> Any:
    """What joint_trajectory_controller takes: position waypoints at increasing times from start.

    A zero header stamp means "start on receipt"; velocities are left empty so the controller
    interpolates between positions.
    """
    points = [
        new_message(
            "trajectory_msgs/msg/JointTrajectoryPoint",
            positions=np.asarray(p, dtype=np.float64),
            velocities=np.zeros(0),
            accelerations=np.zeros(0),
            effort=np.zeros(0),
            time_from_start=duration(float(t)),
        )
        for t, p in zip(times, positions, strict=True)
    ]
    return new_message(
        "trajectory_msgs/msg/JointTrajectory", header=header, joint_names=list(joint_names), points=points
    )


def forward_command(positions: np.ndarray) -> Any:
    """What a forward command controller (e.g. forward_position_controller) takes: one value per joint."""
    layout = new_message("std_msgs/msg/MultiArrayLayout", dim=[], data_offset=0)
    return new_message("std_msgs/msg/Float64MultiArray", layout=layout, data=np.asarray(positions, dtype=np.float64))
