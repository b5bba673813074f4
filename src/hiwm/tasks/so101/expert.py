"""A scripted SO-101 pick expert from the true state, with knobs for noise and sub-optimality.

It reads the task state (six joint angles, cube pose) and plans in Cartesian space for the point
midway between the jaw pads: hover over the cube, descend, close, lift, and from the top again if
the cube is not between the jaws while lifting. Each step that point's target becomes joint targets
through damped least squares on MuJoCo's Jacobian (lerobot-env-so101's solver, with the jaws held
pointing down and turned square to two faces of the cube). The position servos sag under gravity
by torque / kp, so the expert adds that offset (MuJoCo's gravity torques at the planned pose) to
its command, and limits how far each joint target moves per step.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import mujoco
import numpy as np
from lerobot_env_so101.ik_control import roll_to_align_axis

from hiwm.tasks.so101 import JOINTS
from hiwm.tasks.so101.kinematics import ArmKinematics

GRIPPER_OPEN = 1.1  # rad: the pads about 70 mm apart, room around a 40 mm cube
GRIPPER_CLOSED = -0.17  # rad: the lower limit; the servo's force limit sets the grip
_JAW_AXIS = 2  # the gripperframe site's axis the jaws close along
#: The package's grasp point is midway between the pads 40 mm apart: flush with a 40 mm cube's faces.
#: Aiming this much further from the fixed jaw leaves it clear of the cube on the way down.
JAW_CLEARANCE = 0.012


class Phase(enum.Enum):
    HOVER = "hover"
    DESCEND = "descend"
    CLOSE = "close"
    LIFT = "lift"
    HOLD = "hold"
    DISTRACTED = "distracted"


_NEXT = {Phase.HOVER: Phase.DESCEND, Phase.DESCEND: Phase.CLOSE, Phase.CLOSE: Phase.LIFT, Phase.LIFT: Phase.HOLD}


def _up(height: float) -> np.ndarray:
    return np.array([0.0, 0.0, height])


@dataclass
class ArmExpertConfig:
    """Expert behaviour. The defaults are the noise-free expert; the rest degrades it on purpose."""

    action_noise_std: float = 0.0  # rad, Gaussian noise on every joint target
    position_error: float = 0.0  # m, std of a per-episode error on where the expert believes the cube is
    yaw_error: float = 0.0  # rad, std of a per-episode error on the cube's yaw
    distraction_prob: float = 0.0  # chance per step of starting a random "distraction" segment
    distraction_steps: tuple[int, int] = (5, 15)  # length range of a distraction (steps)
    # controller tuning (rarely changed)
    hover_height: float = 0.07  # m of the grasp point above the cube's centre before descending
    grasp_height: float = 0.008  # m of the grasp point above the cube's centre when closing
    lift_height: float = 0.10  # m to raise the cube
    tolerance: float = 0.008  # m, how close to a waypoint counts as there
    close_steps: int = 5  # steps to close the jaws before lifting
    drop_distance: float = 0.04  # m between cube and grasp point that, while lifting, means it is not held
    phase_timeout: int = 40  # steps at most in one moving phase
    max_joint_step: float = 0.25  # rad, largest change of a joint target per step

    def __post_init__(self) -> None:
        if min(self.action_noise_std, self.position_error, self.yaw_error) < 0:
            raise ValueError("noise standard deviations must be >= 0")
        if not 0.0 <= self.distraction_prob <= 1.0:
            raise ValueError(f"distraction_prob must be in [0, 1], got {self.distraction_prob}")
        lo, hi = self.distraction_steps
        if not 1 <= lo <= hi:
            raise ValueError(f"distraction_steps must be 1 <= lo <= hi, got {self.distraction_steps}")
        if self.max_joint_step <= 0 or self.tolerance <= 0:
            raise ValueError("max_joint_step and tolerance must be > 0")

    @classmethod
    def noisy(cls, level: float) -> ArmExpertConfig:
        """A preset: 0 is the clean expert, 1 a sloppy one, 2 and up mostly failing."""
        if level < 0:
            raise ValueError(f"noise level must be >= 0, got {level}")
        return cls(
            action_noise_std=0.02 * level,
            position_error=0.008 * level,
            yaw_error=0.15 * level,
            distraction_prob=0.02 * level,
        )


class ArmExpert:
    """Picks the cube from the task state ``[6 joints, cube x, y, z, qw, qx, qy, qz]``; deterministic given ``seed``."""

    def __init__(self, config: ArmExpertConfig | None = None, seed: int | None = None) -> None:
        self.config = config or ArmExpertConfig()
        self.kinematics = ArmKinematics(JAW_CLEARANCE, _JAW_AXIS)  # scratch kinematics, never stepped
        self.model, self.data = self.kinematics.model, self.kinematics.data
        self._site, self._arm = self.kinematics.site, self.kinematics.arm
        self._roll = self.model.joint("wrist_roll").id
        self.low, self.high = self.kinematics.low, self.kinematics.high
        self.rng = np.random.default_rng(seed)
        self.reset()

    def reset(self) -> None:
        """Start a new episode (call before its first ``act``)."""
        cfg = self.config
        self.phase = Phase.HOVER
        self.steps_in_phase = 0
        self.command: np.ndarray | None = None
        self.lift_from: np.ndarray | None = None
        self.distraction_left = 0
        self.distraction_target = np.zeros(len(JOINTS))
        self.cube_error = np.zeros(3)
        if cfg.position_error:
            self.cube_error[:2] = self.rng.normal(0.0, cfg.position_error, 2)
        self.yaw_offset = float(self.rng.normal(0.0, cfg.yaw_error)) if cfg.yaw_error else 0.0

    # -- the policy -----------------------------------------------------------------------------
    def act(self, state: np.ndarray) -> np.ndarray:
        """The next action: six joint targets (rad) within the joint limits."""
        state = np.asarray(state, dtype=np.float64).reshape(-1)
        if state.shape != (13,) or not np.all(np.isfinite(state)):
            raise ValueError(f"state must be 13 finite numbers (6 joints, cube position, quaternion), got {state.size}")
        cfg = self.config
        joints, cube_pos, cube_quat = state[:6], state[6:9] + self.cube_error, state[9:13]
        if self.command is None:
            self.command = joints.copy()
        if self.distraction_left == 0 and cfg.distraction_prob > 0 and self.rng.random() < cfg.distraction_prob:
            lo, hi = cfg.distraction_steps
            self.distraction_left = int(self.rng.integers(lo, hi + 1))
            self.distraction_target = joints + self.rng.uniform(-0.5, 0.5, len(JOINTS))
            self.distraction_target[-1] = GRIPPER_OPEN  # a distraction lets go, so a grasp starts over
        if self.distraction_left > 0:
            self.distraction_left -= 1
            wanted = self.distraction_target
            if self.distraction_left == 0:
                self._enter(Phase.HOVER)
            else:
                self.phase = Phase.DISTRACTED
        else:
            wanted = self._plan(joints, cube_pos, cube_quat)
        step = np.clip(wanted - self.command, -cfg.max_joint_step, cfg.max_joint_step)
        step[-1] = wanted[-1] - self.command[-1]  # the gripper moves at once: its servo force is what limits it
        self.command = np.clip(self.command + step, self.low, self.high)
        action = self.command
        if cfg.action_noise_std > 0:
            action = action + self.rng.normal(0.0, cfg.action_noise_std, len(JOINTS))
        return np.clip(action, self.low, self.high)

    def _enter(self, phase: Phase) -> None:
        self.phase, self.steps_in_phase = phase, 0

    def _plan(self, joints: np.ndarray, cube_pos: np.ndarray, cube_quat: np.ndarray) -> np.ndarray:
        cfg = self.config
        grasp = self._grasp_point(joints)
        gripper = GRIPPER_OPEN
        for _ in range(len(Phase)):  # advance through every phase whose goal is already met
            if self.phase is Phase.HOVER:
                target = cube_pos + _up(cfg.hover_height)
            elif self.phase is Phase.DESCEND:
                target = cube_pos + _up(cfg.grasp_height)
            elif self.phase is Phase.CLOSE:
                target, gripper = self.lift_from, GRIPPER_CLOSED
            else:  # LIFT, HOLD
                if np.linalg.norm(cube_pos - grasp) > cfg.drop_distance:  # slipped out or never caught: again
                    self._enter(Phase.HOVER)
                    continue
                target, gripper = self.lift_from + _up(cfg.lift_height), GRIPPER_CLOSED
            if self.phase is Phase.CLOSE:
                done = self.steps_in_phase >= cfg.close_steps
            elif self.phase is Phase.HOLD:
                done = False
            else:
                done = np.linalg.norm(target - grasp) < cfg.tolerance or self.steps_in_phase >= cfg.phase_timeout
            if not done:
                break
            if self.phase is Phase.DESCEND:
                self.lift_from = cube_pos + _up(cfg.grasp_height)
            self._enter(_NEXT[self.phase])
        self.steps_in_phase += 1
        arm = self._ik(joints, target, cube_quat)
        return np.append(arm + self._sag(arm), gripper)

    # -- kinematics -----------------------------------------------------------------------------
    def _grasp_point(self, joints: np.ndarray) -> np.ndarray:
        return self.kinematics.grasp_point(joints)

    def _ik(self, joints: np.ndarray, target: np.ndarray, cube_quat: np.ndarray) -> np.ndarray:
        """Arm joint angles putting the grasp point at ``target``, jaws down and square to the cube."""
        self.data.qpos[self._arm] = joints[: len(self._arm)]
        mujoco.mj_forward(self.model, self.data)
        # The jaws close along the site's z axis; either horizontal face normal of the cube (and its
        # opposite) will do, so take the one the wrist reaches with the smallest roll.
        rot = np.zeros(9)
        mujoco.mju_quat2Mat(rot, cube_quat)
        rot = rot.reshape(3, 3)
        yaw = math.atan2(rot[1, 0], rot[0, 0]) + self.yaw_offset
        seed = joints[: len(self._arm)].copy()
        lo, hi = self.model.jnt_range[self._roll]
        best = None
        for k in range(4):
            normal = np.array([math.cos(yaw + k * math.pi / 2), math.sin(yaw + k * math.pi / 2), 0.0])
            roll = seed[-1] + roll_to_align_axis(self.data, self._site, self._roll, _JAW_AXIS, normal)
            if lo <= roll <= hi and (best is None or abs(roll - seed[-1]) < abs(best - seed[-1])):
                best = roll
        if best is not None:
            seed[-1] = best
        return self.kinematics.solve(seed, target)

    def _sag(self, arm: np.ndarray) -> np.ndarray:
        return self.kinematics.sag(arm)
