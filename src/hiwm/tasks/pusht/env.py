"""Push-T on real 2-D physics: a thin, typed wrapper around gym-pusht.

The wrapper fixes what the robot node and the recorder need from gym-pusht: one
:class:`Observation` per step (image rendered at the configured size, agent and
block state, coverage, success), a 300-step episode, action validation, and a
``reset(state=...)`` that reproduces a reported state exactly.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # pygame/pkg_resources deprecation noise on import
    from gym_pusht.envs.pusht import PushTEnv as _GymPushT
    from gym_pusht.envs.pusht import pymunk_to_shapely

#: Workspace bounds of an action (target agent position, pixels of the 512x512 table).
ACTION_LOW, ACTION_HIGH = 0.0, 512.0
#: Episode length at 10 Hz, as in gym-pusht's registration and the LeRobot datasets.
MAX_STEPS = 300
CONTROL_HZ = 10.0
SUCCESS_COVERAGE = 0.95


def outcome_fields(coverage: float, success: bool, done: bool) -> dict[str, float | bool]:
    """A recorded frame's ``next.*`` values (LeRobot's Push-T reward: coverage / 0.95, clipped)."""
    reward = min(1.0, max(0.0, coverage / SUCCESS_COVERAGE))
    return {"next.reward": reward, "next.coverage": coverage, "next.success": success, "next.done": done}


#: Goal pose of the T block: x, y, angle.
GOAL_POSE = np.array([256.0, 256.0, math.pi / 4])
#: Centre of gravity of the T in its body frame (gym-pusht's ``add_tee``): (0, 45).
BLOCK_COG = np.array([0.0, 45.0])


@dataclass
class Observation:
    """Everything the robot reports after a reset or a step."""

    image: np.ndarray | None  # (H, W, 3) uint8; None only when the env was built with render=False
    agent_pos: np.ndarray  # (2,)
    agent_vel: np.ndarray  # (2,)
    block_pose: np.ndarray  # (3,) x, y (body origin, as gym-pusht reports it), angle in [0, 2 pi)
    state: np.ndarray  # (5,) agent x, y, block x, y, angle: the layout reset(state=...) takes
    coverage: float
    success: bool
    step: int
    done: bool  # success, or MAX_STEPS steps taken
    max_coverage: float = 0.0  # highest coverage so far in this episode


def validate_action(action: object) -> tuple[np.ndarray, str | None]:
    """Check one action (target agent x, y). Returns (clean action, warning or None).

    Raises ValueError for a wrong shape or a NaN/infinite value; values outside the
    workspace [0, 512] are clamped and reported in the warning.
    """
    try:
        arr = np.asarray(action, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"action must be 2 numbers (target x, y), got {action!r}") from exc
    if arr.shape != (2,):
        raise ValueError(f"action must have 2 values (target x, y), got {arr.size}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"action must be finite, got {arr.tolist()}")
    clean = np.clip(arr, ACTION_LOW, ACTION_HIGH)
    if np.any(clean != arr):
        return clean, f"action {arr.tolist()} outside the workspace [0, 512]; clamped to {clean.tolist()}"
    return clean, None


def validate_state(state: object) -> np.ndarray:
    """Check an explicit Push-T state (agent x, y, block x, y, block angle) before resetting to it.

    Unlike a command's target, which is clamped, a state outside the workspace is refused:
    ValueError for a wrong shape, a NaN/infinite value, a position outside [0, 512] or an angle
    outside [-2 pi, 2 pi].
    """
    try:
        arr = np.asarray(state, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"state must be 5 numbers (agent x, y, block x, y, angle), got {state!r}") from exc
    if arr.shape != (5,) or not np.all(np.isfinite(arr)):
        raise ValueError(f"state must be 5 finite numbers (agent x, y, block x, y, angle), got {arr.tolist()}")
    if np.any(arr[:4] < ACTION_LOW) or np.any(arr[:4] > ACTION_HIGH):
        raise ValueError(
            f"state {arr.tolist()}: agent and block positions must lie in the workspace [0, 512]; reset refused"
        )
    if abs(arr[4]) > 2 * math.pi:
        raise ValueError(f"state {arr.tolist()}: block angle must lie in [-2 pi, 2 pi] radians; reset refused")
    return arr


def gym_reset_state(state: np.ndarray) -> np.ndarray:
    """The ``reset_to_state`` input that makes gym-pusht report ``state`` back.

    gym-pusht sets the block position before its angle, and the angle turns the block
    about its centre of gravity, so the reported origin moves by (I - R) cog. This
    undoes that shift.
    """
    out = np.array(state, dtype=np.float64)
    c, s = math.cos(out[4]), math.sin(out[4])
    rotated = np.array([c * BLOCK_COG[0] - s * BLOCK_COG[1], s * BLOCK_COG[0] + c * BLOCK_COG[1]])
    out[2:4] = out[2:4] - BLOCK_COG + rotated
    return out


@lru_cache(maxsize=1)
def _tee_geometry() -> tuple[list, object, float]:
    """gym-pusht's own T shapes and goal polygon (built once from its env class)."""
    env = _GymPushT(obs_type="state")
    env.reset(seed=0)
    shapes = list(env.block.shapes)
    goal = pymunk_to_shapely(_GymPushT.get_goal_pose_body(np.asarray(env.goal_pose, dtype=np.float64)), shapes)
    env.close()
    return shapes, goal, float(goal.area)


def coverage_from_pose(block_pose: object) -> float:
    """Coverage of a block pose (x, y of the body origin, angle), computed as gym-pusht does.

    The T's polygons come from gym-pusht's env; the block is placed like its goal body and
    intersected with the goal with shapely, so the result equals ``info["coverage"]``.
    """
    pose = np.asarray(block_pose, dtype=np.float64).reshape(-1)
    if pose.shape != (3,) or not np.all(np.isfinite(pose)):
        raise ValueError(f"block_pose must be 3 finite numbers (x, y, angle), got {pose.tolist()}")
    shapes, goal, area = _tee_geometry()
    block = pymunk_to_shapely(_GymPushT.get_goal_pose_body(pose), shapes)
    return float(goal.intersection(block).area / area)


class PushTEnv:
    """gym-pusht with a typed observation; ``image_size`` is the rendered size (square)."""

    def __init__(self, image_size: int = 96, seed: int | None = None, render: bool = True) -> None:
        if image_size < 8:
            raise ValueError(f"image_size must be >= 8, got {image_size}")
        self.image_size = image_size
        self.render = render
        self._env = _GymPushT(
            obs_type="pixels_agent_pos" if render else "state",
            observation_width=image_size,
            observation_height=image_size,
        )
        self._seed = seed
        self._step = 0
        self._max_coverage = 0.0
        self._last: Observation | None = None

    @property
    def last(self) -> Observation:
        """The latest observation (after at least one reset)."""
        if self._last is None:
            raise RuntimeError("call reset() first")
        return self._last

    def reset(self, seed: int | None = None, state: np.ndarray | None = None) -> Observation:
        """Start an episode from a seed (random initial state) or an explicit 5-vector state."""
        if seed is None:
            seed, self._seed = self._seed, None  # the constructor's seed applies to the first reset
        return self._start(seed, state, 0, 0.0)

    def restore(self, state: np.ndarray, step: int, max_coverage: float) -> Observation:
        """Continue an episode from a saved point: ``state`` (as reset takes it) at ``step`` with its
        best coverage so far. Velocities restart at zero."""
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        return self._start(None, state, int(step), float(max_coverage))

    def _start(self, seed: int | None, state: np.ndarray | None, step: int, max_coverage: float) -> Observation:
        options = None
        if state is not None:
            options = {"reset_to_state": gym_reset_state(validate_state(state))}
        obs, info = self._env.reset(seed=seed, options=options)
        self._step, self._max_coverage = step, max_coverage
        coverage = float(self._env._get_coverage())  # reset's info has no coverage
        return self._observe(obs, info, coverage)

    def step(self, action: np.ndarray) -> Observation:
        """One control step (0.1 s): the PD controller tracks ``action`` for 10 physics steps."""
        clean, _ = validate_action(action)
        if self._last is None:
            raise RuntimeError("call reset() first")
        obs, _, _, _, info = self._env.step(clean)
        self._step += 1
        return self._observe(obs, info, float(info["coverage"]))

    def _observe(self, obs: object, info: dict, coverage: float) -> Observation:
        agent = np.asarray(info["pos_agent"], dtype=np.float64)
        block = np.asarray(info["block_pose"], dtype=np.float64)
        block[2] %= 2 * math.pi
        success = coverage > SUCCESS_COVERAGE
        self._max_coverage = max(self._max_coverage, coverage)
        self._last = Observation(
            image=obs["pixels"] if self.render else None,
            agent_pos=agent,
            agent_vel=np.asarray(info["vel_agent"], dtype=np.float64),
            block_pose=block,
            state=np.concatenate([agent, block]),
            coverage=coverage,
            success=success,
            step=self._step,
            done=success or self._step >= MAX_STEPS,
            max_coverage=self._max_coverage,
        )
        return self._last

    def close(self) -> None:
        self._env.close()
