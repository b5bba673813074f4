"""What a task is, as data: its action space, observations, episode, success and operator devices.

A :class:`Task` is everything outside the task's own world needs to know to record it, train on it,
teleoperate it and serve it over topics, with no import of the world's physics. Instances are frozen
and validated on construction; :meth:`Task.summary` is their JSON form (``hiwm tasks --json``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal


def _check_names(what: str, names: tuple[str, ...]) -> None:
    if not names or any(not isinstance(n, str) or not n for n in names):
        raise ValueError(f"{what} must be non-empty strings, got {names!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"{what} must be unique, got {names!r}")


@dataclass(frozen=True)
class ActionSpace:
    """Absolute targets, one per named dimension, sent at ``fps``."""

    names: tuple[str, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]
    units: tuple[str, ...]  # one per dimension, e.g. "px", "rad"
    fps: float  # control rate, Hz

    def __post_init__(self) -> None:
        _check_names("action names", self.names)
        n = len(self.names)
        if not len(self.low) == len(self.high) == len(self.units) == n:
            raise ValueError(f"action low, high and units need {n} values each (one per name)")
        for name, lo, hi in zip(self.names, self.low, self.high, strict=True):
            if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
                raise ValueError(f"action {name!r}: need finite low < high, got [{lo}, {hi}]")
        if not (math.isfinite(self.fps) and self.fps > 0):
            raise ValueError(f"fps must be > 0, got {self.fps}")

    @property
    def dim(self) -> int:
        return len(self.names)


def realsense_topic(camera: str) -> str:
    """realsense-ros's colour topic for a camera launched with ``camera_name:=<camera>`` (namespace ``camera``)."""
    return f"camera/{camera}/color/image_raw"


@dataclass(frozen=True)
class Camera:
    """One rgb8 camera; ``topic`` (relative) defaults to the realsense-ros name for ``name``."""

    name: str
    height: int
    width: int
    topic: str = ""

    def __post_init__(self) -> None:
        _check_names("camera name", (self.name,))
        if self.height < 1 or self.width < 1:
            raise ValueError(f"camera {self.name!r}: size must be >= 1, got {self.height}x{self.width}")
        if not self.topic:
            object.__setattr__(self, "topic", realsense_topic(self.name))


@dataclass(frozen=True)
class Observations:
    """What a policy sees (cameras and proprio on ``robot/state``) and the privileged world state.

    ``state`` names the entries of ``task/state``: the true state a lab gets from a tracker, which
    the scripted expert reads and a reset by state takes.
    """

    cameras: tuple[Camera, ...]
    proprio: tuple[str, ...]
    state: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.cameras:
            raise ValueError("a task needs at least one camera")
        _check_names("camera names", tuple(c.name for c in self.cameras))
        _check_names("proprio names", self.proprio)
        _check_names("state names", self.state)


@dataclass(frozen=True)
class Success:
    """How the world reports success: ``metric`` (on ``task/status``) above ``threshold``."""

    metric: str
    threshold: float
    description: str

    def __post_init__(self) -> None:
        _check_names("success metric", (self.metric,))
        if not math.isfinite(self.threshold):
            raise ValueError(f"success threshold must be finite, got {self.threshold}")


@dataclass(frozen=True)
class LeaderJoint:
    """One leader-arm joint driving one action dimension: ``action = offset + scale * angle``."""

    joint: str  # the leader's joint name (its calibration YAML's)
    action: str  # the action dimension it drives
    scale: float = 1.0  # action units per radian
    offset: float = 0.0


@dataclass(frozen=True)
class LeaderArmMap:
    """How a leader arm of kind ``robot`` (e.g. "so101") drives the action space."""

    robot: str
    joints: tuple[LeaderJoint, ...]

    def __post_init__(self) -> None:
        _check_names("leader joints", tuple(j.joint for j in self.joints))
        _check_names("leader-driven actions", tuple(j.action for j in self.joints))
        for j in self.joints:
            if not (math.isfinite(j.scale) and j.scale != 0 and math.isfinite(j.offset)):
                raise ValueError(f"leader joint {j.joint!r}: scale must be finite and non-zero, offset finite")


@dataclass(frozen=True)
class JogKey:
    """One key (keyboard and playground alike) moving ``axis`` by ``step`` per press."""

    key: str
    axis: str  # an action name, or an end-effector axis ee_x / ee_y / ee_z (metres, robot base frame)
    step: float
    label: str = ""  # what the key does, for the key help ("up", "open"); the axis and sign otherwise

    @property
    def help(self) -> str:
        return self.label or f"{self.axis} {'+' if self.step > 0 else '-'}"


EE_AXES = ("ee_x", "ee_y", "ee_z")


@dataclass(frozen=True)
class JogMap:
    """Keys that jog the target: in the action space itself, or the end effector through IK.

    An ``end_effector`` map names its task's kinematics: ``kinematics()`` builds an
    :class:`~hiwm.tasks.jog.EndEffector` (importing the task's physics only then, so the
    description stays pure data).
    """

    space: Literal["action", "end_effector"]
    keys: tuple[JogKey, ...]
    kinematics: Callable[[], Any] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.space not in ("action", "end_effector"):
            raise ValueError(f"jog space must be 'action' or 'end_effector', got {self.space!r}")
        if self.space == "end_effector" and self.kinematics is None:
            raise ValueError("an end_effector jog map needs the task's kinematics (a factory of its IK)")
        keys = tuple(k.key for k in self.keys)
        _check_names("jog keys", keys)
        if any(len(k) != 1 for k in keys):
            raise ValueError(f"jog keys must be single characters, got {keys!r}")
        for k in self.keys:
            if not (math.isfinite(k.step) and k.step != 0):
                raise ValueError(f"jog key {k.key!r}: step must be finite and non-zero")


@dataclass(frozen=True)
class PolicyOptions:
    """What a task asks of the policies trained on it (defaults for ``hiwm train policy --task``)."""

    #: An auxiliary head reads the task's true state off the image, trained on the dataset's
    #: ``observation.environment_state`` (a policy that pushes an object must find its pose first).
    state_head: bool = False
    #: Predict actions as offsets from the current proprio (needs actions in the proprio's space).
    relative_actions: bool = False


DETECTORS = ("probe", "learned")


@dataclass(frozen=True)
class LoopOptions:
    """What the Hi-WM loop (``hiwm experiment``) does on a task unless its profile says otherwise."""

    #: The world model's success verdict: ``"probe"``, the task's metric of the state its probe reads
    #: off a generated frame; ``"learned"``, a success detector trained on the loop's real episodes
    #: (:mod:`hiwm.world_model.detector`), where that metric alone misses what success is.
    detector: str = "probe"
    #: The learned detector reads the proprio beside the frame.
    detector_proprio: bool = False
    #: It reads the frames (False: the proprio alone, where the frames only let it memorise).
    detector_frames: bool = True
    #: Hidden layers of its proprio MLP (a joint pose to a gripper's height needs two).
    detector_proprio_layers: int = 1
    #: > 0: a second head regresses the task's success metric on every frame (its threshold at 1), this
    #: much of the loss; with ``detector_score="metric"`` that head's highest reading in an episode is
    #: what is calibrated, a dense target where successes are a frame per episode.
    detector_metric_weight: float = 0.0
    detector_score: str = "success"

    def __post_init__(self) -> None:
        if self.detector not in DETECTORS:
            raise ValueError(f"detector must be one of {DETECTORS}, got {self.detector!r}")
        if not (self.detector_frames or self.detector_proprio):
            raise ValueError("a detector reads the frames, the proprio or both")
        if self.detector_proprio_layers < 1 or not self.detector_metric_weight >= 0:
            raise ValueError("detector_proprio_layers must be >= 1 and detector_metric_weight >= 0")
        if self.detector_score not in ("success", "metric") or (
            self.detector_score == "metric" and not self.detector_metric_weight > 0
        ):
            raise ValueError("detector_score must be 'success' or 'metric' (which needs detector_metric_weight > 0)")


@dataclass(frozen=True)
class Task:
    """One task: everything but its world's physics.

    ``world`` names the module holding the task's world (``WORLD``, a
    :class:`hiwm.tasks.world.TaskWorld`: env, scripted expert, dataset features), imported only
    when a world is needed (:func:`hiwm.tasks.world.load_world`).
    """

    name: str
    description: str
    action: ActionSpace
    observations: Observations
    episode_steps: int  # at action.fps
    success: Success
    jog: JogMap
    leader_arm: LeaderArmMap | None = None
    world: str = ""
    policy: PolicyOptions = PolicyOptions()
    loop: LoopOptions = LoopOptions()

    def __post_init__(self) -> None:
        _check_names("task name", (self.name,))
        if self.episode_steps < 1:
            raise ValueError(f"episode_steps must be >= 1, got {self.episode_steps}")
        actions = set(self.action.names)
        if self.leader_arm is not None:
            unknown = [j.action for j in self.leader_arm.joints if j.action not in actions]
            if unknown:
                raise ValueError(f"leader arm drives unknown actions {unknown}; actions are {self.action.names}")
        allowed = actions | set(EE_AXES) if self.jog.space == "end_effector" else actions
        unknown = [k.axis for k in self.jog.keys if k.axis not in allowed]
        if unknown:
            raise ValueError(f"jog keys move unknown axes {unknown}; allowed: {sorted(allowed)}")
        if self.policy.relative_actions and self.action.names != self.observations.proprio:
            raise ValueError("relative actions need actions in the proprio's space (the same names)")

    @property
    def action_dim(self) -> int:
        return self.action.dim

    @property
    def fps(self) -> float:
        return self.action.fps

    @property
    def cameras(self) -> tuple[Camera, ...]:
        return self.observations.cameras

    @property
    def proprio_dim(self) -> int:
        return len(self.observations.proprio)

    def summary(self) -> dict[str, Any]:
        """The task as plain JSON types."""
        leader = self.leader_arm
        return {
            "name": self.name,
            "description": self.description,
            "action_dim": self.action_dim,
            "action_names": list(self.action.names),
            "action_low": list(self.action.low),
            "action_high": list(self.action.high),
            "action_units": list(self.action.units),
            "fps": self.fps,
            "cameras": [{"name": c.name, "height": c.height, "width": c.width, "topic": c.topic} for c in self.cameras],
            "proprio_dim": self.proprio_dim,
            "proprio_names": list(self.observations.proprio),
            "state_names": list(self.observations.state),
            "episode_steps": self.episode_steps,
            "success": {
                "metric": self.success.metric,
                "threshold": self.success.threshold,
                "description": self.success.description,
            },
            "leader_arm": None
            if leader is None
            else {
                "robot": leader.robot,
                "joints": [
                    {"joint": j.joint, "action": j.action, "scale": j.scale, "offset": j.offset} for j in leader.joints
                ],
            },
            "jog": {
                "space": self.jog.space,
                "keys": [{"key": k.key, "axis": k.axis, "step": k.step, "label": k.help} for k in self.jog.keys],
            },
            "loop": asdict(self.loop),
        }

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.summary(), indent=indent)
