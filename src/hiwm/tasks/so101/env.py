"""SO-101 pick-cube on MuJoCo: joint-position control of the six servos, one camera, exact restore.

One control step is 0.1 s (10 Hz): the action is the six position targets (radians, the servos'
own ranges), held for 50 physics steps of 2 ms by the arm's position actuators. The episode is a
success once the cube is :data:`LIFT_SUCCESS` above where it started and held between the jaws.
``get_state`` / ``set_state`` carry everything that decides the future (MuJoCo's integration state:
time, positions, velocities, controls and the solver's warm start, plus the episode's step and the
cube's start height), so a restored episode continues bit for bit as the original.
"""

from __future__ import annotations

import atexit
import math
import weakref
from dataclasses import dataclass, field

import mujoco
import numpy as np

from hiwm.tasks.so101 import IMAGE_SIZE, JOINTS, TASK
from hiwm.tasks.so101.scene import ARM_JOINTS, CUBE, CUBE_HALF, OFF_FLAGS, PADS, build_model

CONTROL_HZ = TASK.fps
PHYSICS_DT = 0.002
MAX_STEPS = TASK.episode_steps
LIFT_SUCCESS = TASK.success.threshold  # m above the cube's start height
HOLD_DISTANCE = 0.03  # m from the cube's centre to the midpoint of the two jaw pads
#: Where a cube starts: centre x, y (m, base frame) and yaw. Past x = 0.28 m the wrist can no longer
#: point the jaws straight down, which a top-down grasp needs.
CUBE_X, CUBE_Y, CUBE_YAW = (0.15, 0.28), (-0.10, 0.10), (-math.pi / 4, math.pi / 4)
START_NOISE = 0.05  # rad, uniform noise on the start pose of each arm joint
GRIPPER_START = 0.3  # rad, jaw slightly open
LIMIT_TOLERANCE = 1e-6  # rad: float32 round-off of a target at a limit is not "out of limits"
CAMERA = TASK.cameras[0].name
_STATE_SPEC = mujoco.mjtState.mjSTATE_INTEGRATION


def _close_if_alive(env: weakref.ref) -> None:
    alive = env()
    if alive is not None:
        alive.close()


@dataclass(frozen=True, eq=False)  # arrays: no element-wise ==
class ArmObservation:
    """What the arm reports after a reset or a step."""

    images: dict[str, np.ndarray]  # camera name -> (H, W, 3) uint8; empty when built with render=False
    joints: np.ndarray  # (6,) joint positions, rad, in JOINTS order (the proprio)
    velocities: np.ndarray  # (6,) joint velocities, rad/s
    cube_pose: np.ndarray  # (7,) cube centre x, y, z (m) and orientation quaternion w, x, y, z
    lift: float  # m, cube height above its start
    success: bool
    step: int
    done: bool  # success, or MAX_STEPS steps taken
    state: np.ndarray = field(init=False)  # (13,) joints then cube pose: what the scripted expert reads

    def __post_init__(self) -> None:
        object.__setattr__(self, "state", np.concatenate([self.joints, self.cube_pose]))


class So101PickEnv:
    """The pick task; ``image_size`` is the camera's (square) size, ``render=False`` skips images."""

    def __init__(self, image_size: int = IMAGE_SIZE, seed: int | None = None, render: bool = True) -> None:
        if image_size < 8:
            raise ValueError(f"image_size must be >= 8, got {image_size}")
        self.image_size = int(image_size)
        self.render_images = render
        self.model = build_model(self.image_size, self.image_size)
        self.model.opt.timestep = PHYSICS_DT
        self.data = mujoco.MjData(self.model)
        self.substeps = round(1.0 / CONTROL_HZ / PHYSICS_DT)
        self._qpos = np.array([self.model.joint(n).qposadr[0] for n in JOINTS])
        self._qvel = np.array([self.model.joint(n).dofadr[0] for n in JOINTS])
        self._ctrl = np.array([self.model.actuator(n).id for n in JOINTS])
        self.low = self.model.actuator_ctrlrange[self._ctrl, 0].copy()
        self.high = self.model.actuator_ctrlrange[self._ctrl, 1].copy()
        self._cube_qpos = self.model.joint(CUBE).qposadr[0]
        self._pads = [self.model.geom(n).id for n in PADS]
        self._state_size = mujoco.mj_stateSize(self.model, _STATE_SPEC)
        self._renderer: mujoco.Renderer | None = None
        self._rng = np.random.default_rng(seed)
        self._step = 0
        self._z0 = CUBE_HALF
        self._last: ArmObservation | None = None

    @property
    def last(self) -> ArmObservation:
        if self._last is None:
            raise RuntimeError("call reset() first")
        return self._last

    @property
    def state_size(self) -> int:
        """Length of a :meth:`get_state` vector."""
        return 2 + self._state_size

    # -- episodes -------------------------------------------------------------------------------
    def reset(self, seed: int | None = None, state: object = None) -> ArmObservation:
        """Start an episode: arm near its zero pose, cube at a random place and yaw (from ``seed``).

        ``state`` (the 13 numbers of ``ArmObservation.state``: joints, then the cube's position and
        orientation) places the arm and the cube there instead, at rest; ValueError, and nothing
        changed, if it is not such a vector or the joints are out of limits.
        """
        if state is not None:
            joints, cube_pose = self._check_task_state(state)
        else:
            rng = np.random.default_rng(seed) if seed is not None else self._rng
            joints = np.zeros(len(JOINTS))
            joints[: len(ARM_JOINTS)] = rng.uniform(-START_NOISE, START_NOISE, len(ARM_JOINTS))
            joints[-1] = GRIPPER_START
            yaw = rng.uniform(*CUBE_YAW)
            x, y = rng.uniform(CUBE_X[0], CUBE_X[1]), rng.uniform(*CUBE_Y)
            cube_pose = np.array([x, y, CUBE_HALF, math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)])
        mujoco.mj_resetData(self.model, self.data)
        self.data.qpos[self._qpos] = joints
        self.data.ctrl[self._ctrl] = joints
        self.data.qpos[self._cube_qpos : self._cube_qpos + 7] = cube_pose
        mujoco.mj_forward(self.model, self.data)
        self._step, self._z0 = 0, float(cube_pose[2])
        return self._observe()

    def restore(self, state: object, step: int, start_height: float = CUBE_HALF) -> ArmObservation:
        """Continue an episode from a task state (the 13 numbers of ``ArmObservation.state``) at
        ``step``, its cube having started ``start_height`` up (its centre on the table by default, as
        every reset by seed has it): the arm and the cube at rest there, the episode's clock and the
        lift's baseline as that episode had them. What decides the future beyond the task state
        (velocities, the solver's warm start) restarts at zero; :meth:`set_state` restores those too.
        ValueError, and nothing changed, for a state :meth:`reset` refuses or a negative step."""
        if step < 0 or step != int(step):
            raise ValueError(f"step must be a whole number >= 0, got {step}")
        try:
            arr = np.array(state, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            arr = state  # reset says why it is not a state
        if isinstance(arr, np.ndarray) and arr.size == len(JOINTS) + 7:
            # a joint the physics pressed a little past its limit (soft constraints) comes back at the limit
            arr[: len(JOINTS)] = np.clip(arr[: len(JOINTS)], self.low, self.high)
        self.reset(state=arr)  # validates before anything changes
        self._step, self._z0 = int(step), float(start_height)
        return self._observe()

    def _check_task_state(self, state: object) -> tuple[np.ndarray, np.ndarray]:
        n = len(JOINTS) + 7
        try:
            arr = np.asarray(state, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"state must be {n} numbers (joints, cube x y z qw qx qy qz), got {state!r}") from exc
        if arr.shape != (n,) or not np.all(np.isfinite(arr)):
            raise ValueError(f"state must be {n} finite numbers (joints, cube x y z qw qx qy qz), got {arr.size}")
        joints = self.validate_action(arr[: len(JOINTS)])
        quat = arr[len(JOINTS) + 3 :]
        norm = float(np.linalg.norm(quat))
        if norm < 1e-6:
            raise ValueError("state's cube orientation must be a non-zero quaternion")
        if abs(norm - 1.0) > 1e-12:  # a unit one kept bit for bit: a restored state is the snapshot's own
            quat = quat / norm
        return joints, np.concatenate([arr[len(JOINTS) : len(JOINTS) + 3], quat])

    def step(self, action: object) -> ArmObservation:
        """One control step: the six joint targets ``action`` (rad) held for 0.1 s."""
        target = self.validate_action(action)
        if self._last is None:
            raise RuntimeError("call reset() first")
        self.data.ctrl[self._ctrl] = target
        mujoco.mj_step(self.model, self.data, nstep=self.substeps)
        self._step += 1
        return self._observe()

    def validate_action(self, action: object) -> np.ndarray:
        """The action as float64 (6,); ValueError for a wrong length, a NaN/inf or a target out of limits."""
        try:
            arr = np.asarray(action, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"action must be {len(JOINTS)} joint targets (rad), got {action!r}") from exc
        if arr.shape != (len(JOINTS),):
            raise ValueError(f"action must have {len(JOINTS)} values ({', '.join(JOINTS)}), got {arr.size}")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"action must be finite, got {arr.tolist()}")
        bad = (arr < self.low - LIMIT_TOLERANCE) | (arr > self.high + LIMIT_TOLERANCE)
        if np.any(bad):
            names = ", ".join(
                f"{JOINTS[i]}={arr[i]:.4f} not in [{self.low[i]:.4f}, {self.high[i]:.4f}]" for i in np.flatnonzero(bad)
            )
            raise ValueError(f"action out of joint limits (rad): {names}")
        return np.clip(arr, self.low, self.high)

    # -- exact restore --------------------------------------------------------------------------
    def get_state(self) -> np.ndarray:
        """Everything :meth:`set_state` needs to continue this episode exactly (float64 vector)."""
        sim = np.empty(self._state_size)
        mujoco.mj_getState(self.model, self.data, sim, _STATE_SPEC)
        return np.concatenate([[float(self._step), self._z0], sim])

    def set_state(self, state: object) -> ArmObservation:
        """Continue from a :meth:`get_state` vector; ValueError (and nothing changed) if it is not one."""
        try:
            arr = np.asarray(state, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"state must be {self.state_size} numbers (from get_state), got {state!r}") from exc
        if arr.shape != (self.state_size,) or not np.all(np.isfinite(arr)):
            raise ValueError(f"state must be {self.state_size} finite numbers (from get_state), got {arr.size}")
        step = arr[0]
        if step < 0 or step != int(step):
            raise ValueError(f"state's step must be a whole number >= 0, got {step}")
        mujoco.mj_setState(self.model, self.data, arr[2:], _STATE_SPEC)
        mujoco.mj_forward(self.model, self.data)
        self._step, self._z0 = int(step), float(arr[1])
        return self._observe()

    # -- observation ----------------------------------------------------------------------------
    def camera_fovy(self) -> dict[str, float]:
        """The camera's vertical field of view (degrees); MuJoCo's pixels are square."""
        return {CAMERA: float(self.model.cam_fovy[self.model.camera(CAMERA).id])}

    def render(self) -> dict[str, np.ndarray]:
        """Every camera's image, ``{name: (H, W, 3) uint8}``."""
        if self._renderer is None:
            try:
                self._renderer = mujoco.Renderer(self.model, self.image_size, self.image_size)
            except (mujoco.FatalError, RuntimeError) as exc:
                raise RuntimeError(
                    f"no OpenGL context for MuJoCo ({exc}); headless, it needs MUJOCO_GL=egl or osmesa set before"
                    " MuJoCo is first imported and Mesa's libraries (tools/install-mujoco.sh)"
                ) from exc
            # exit handlers run last-registered first: this one, registered after the renderer's first
            # context registered the display's termination, frees the context while the display lives
            atexit.register(_close_if_alive, weakref.ref(self))
        self._renderer.update_scene(self.data, camera=CAMERA)
        for flag in OFF_FLAGS:
            self._renderer.scene.flags[flag] = 0
        return {CAMERA: self._renderer.render().copy()}

    def grasp_point(self) -> np.ndarray:
        """World position midway between the two jaw pads."""
        return self.data.geom_xpos[self._pads].mean(axis=0)

    def _observe(self) -> ArmObservation:
        cube = self.data.qpos[self._cube_qpos : self._cube_qpos + 7].copy()
        lift = float(cube[2] - self._z0)
        held = float(np.linalg.norm(cube[:3] - self.grasp_point())) < HOLD_DISTANCE
        success = bool(lift > LIFT_SUCCESS and held)
        self._last = ArmObservation(
            images=self.render() if self.render_images else {},
            joints=self.data.qpos[self._qpos].copy(),
            velocities=self.data.qvel[self._qvel].copy(),
            cube_pose=cube,
            lift=lift,
            success=success,
            step=self._step,
            done=success or self._step >= MAX_STEPS,
        )
        return self._last

    def close(self) -> None:
        """Free the OpenGL context (an unfreed one complains at interpreter exit)."""
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
