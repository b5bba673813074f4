"""A task's world as recording and evaluation see it: env, scripted expert, dataset columns, topics.

:class:`TaskWorld` is the seam between a task's own physics (its env and expert, with their own
observation types) and everything generic: ``hiwm collect`` runs any task's expert through it,
``hiwm eval`` runs any task's env. A task names the module holding its world in
:attr:`hiwm.tasks.base.Task.world` (a module-level ``WORLD``); :func:`load_world` imports it on
first use, so the description stays free of physics engines.

The generic methods describe a recording the LeRobot way: one ``observation.images.<camera>``
video per camera, ``observation.state`` the task's proprio, ``action`` the action space,
``observation.environment_state`` the privileged state and ``next.<success metric>``; a task
with older datasets overrides :meth:`TaskWorld.features` and :meth:`TaskWorld.frame`.
"""

from __future__ import annotations

import importlib
from typing import Any, Protocol

import numpy as np

from hiwm.comm.images import numpy_to_image
from hiwm.comm.interfaces import new_message
from hiwm.tasks import contract
from hiwm.tasks.base import Task
from hiwm.tasks.chunks import chunk_message

#: LeRobot's names of the action-source codes (hiwm_msgs/ActionChunk's SOURCE_*).
SOURCE_NAMES = ["policy", "human", "scripted"]


class Expert(Protocol):
    def reset(self) -> None: ...

    def act(self, state: np.ndarray) -> np.ndarray:
        """The next action from the task's true state (``task.observations.state`` order)."""


def camera_key(camera: str) -> str:
    """The dataset feature of a camera's video."""
    return f"observation.images.{camera}"


class TaskWorld:
    """The generic side of one task's world; subclasses supply the env, the expert and the accessors."""

    def __init__(self, task: Task, instruction: str = "") -> None:
        self.task = task
        self.instruction = instruction or task.description  # the language task of its recorded episodes

    # -- the task's own world (subclasses) ------------------------------------------------------
    def make_env(self, image_size: int | None = None) -> Any:
        """An env with ``reset(seed=...)`` and ``step(action)``, both returning an observation."""
        raise NotImplementedError

    def make_expert(self, noise: float = 0.0, seed: int | None = None) -> Expert:
        """The scripted expert at noise level ``noise`` (0 clean, 1 sloppy, 2+ mostly failing)."""
        raise NotImplementedError

    def images(self, obs: Any) -> dict[str, np.ndarray]:
        """Every camera's frame of an observation, ``{camera: (H, W, 3) uint8}``, in the task's order."""
        raise NotImplementedError

    def proprio(self, obs: Any) -> np.ndarray:
        raise NotImplementedError

    def velocity(self, obs: Any) -> np.ndarray:
        """Rates of the proprio entries (``robot/state`` velocity)."""
        return np.zeros(self.task.proprio_dim)

    def state(self, obs: Any) -> np.ndarray:
        """The privileged true state (``task.observations.state`` order): what the expert reads."""
        return np.asarray(obs.state, dtype=np.float64)

    def metric(self, obs: Any) -> float:
        """The task's success metric (``task.success.metric``) at this observation."""
        raise NotImplementedError

    # -- generic ----------------------------------------------------------------------------------
    def image_size(self, image_size: int | None = None) -> int:
        return int(image_size or self.task.cameras[0].height)

    def features(self, image_size: int | None = None) -> dict[str, dict]:
        """The LeRobot features of an expert recording (cameras at ``image_size`` when given)."""
        task = self.task
        features: dict[str, dict] = {}
        for cam in task.cameras:
            h, w = (image_size, image_size) if image_size else (cam.height, cam.width)
            features[camera_key(cam.name)] = {
                "dtype": "video",
                "shape": [h, w, 3],
                "names": ["height", "width", "channels"],
            }
        proprio, actions, state = task.observations.proprio, task.action.names, task.observations.state
        features["observation.state"] = {"dtype": "float32", "shape": [len(proprio)], "names": list(proprio)}
        features["action"] = {"dtype": "float32", "shape": [len(actions)], "names": list(actions)}
        features["intervention"] = {"dtype": "bool", "shape": [1], "names": None}
        features["action.source"] = {"dtype": "int8", "shape": [1], "names": list(SOURCE_NAMES)}
        features["observation.environment_state"] = {"dtype": "float32", "shape": [len(state)], "names": list(state)}
        outcomes = (("reward", "float32"), (task.success.metric, "float32"), ("success", "bool"), ("done", "bool"))
        for key, dtype in outcomes:
            features[f"next.{key}"] = {"dtype": dtype, "shape": [1], "names": None}
        return features

    def frame(self, obs: Any, action: np.ndarray, nxt: Any, done: bool) -> dict[str, Any]:
        """One recorded frame: observation ``obs``, the ``action`` taken there, its outcome ``nxt``
        (every feature of :meth:`features` but ``intervention`` and ``action.source``)."""
        row: dict[str, Any] = {camera_key(k): v for k, v in self.images(obs).items()}
        success = bool(nxt.success)
        row.update(
            {
                "observation.state": self.proprio(obs),
                "action": np.asarray(action),
                "observation.environment_state": self.state(obs),
                "next.reward": float(success),
                f"next.{self.task.success.metric}": self.metric(nxt),
                "next.success": success,
                "next.done": bool(done),
            }
        )
        return row

    def policy_observation(self, obs: Any) -> dict[str, Any]:
        """What a policy sees: ``images`` per camera, ``image`` (the first camera) and ``state`` (proprio)."""
        images = self.images(obs)
        return {"images": images, "image": next(iter(images.values())), "state": self.proprio(obs)}

    def topics(self) -> dict[str, str]:
        """Relative topic names and types of the robot contract (:mod:`hiwm.tasks.contract`)."""
        return contract.topics(self.task)

    def state_velocity(self, obs: Any) -> np.ndarray:
        """Rates of the privileged state entries (``task/state`` velocity); empty: not reported."""
        return np.zeros(0)

    def hold_action(self, obs: Any) -> np.ndarray:
        """The action that holds the robot where it is: what a robot core sends until its first command.

        By default the proprio, for a task whose actions are targets in the proprio's space."""
        if self.task.action.names != self.task.observations.proprio:
            raise NotImplementedError(f"task {self.task.name!r}: actions are not proprio targets; override hold_action")
        return np.asarray(self.proprio(obs), dtype=np.float64).copy()

    def observation_messages(
        self,
        obs: Any,
        episode_id: str,
        stamp_ns: int,
        done: bool,
        max_metric: float,
        world: str = "real",
        frame_id: str = "camera",
    ) -> dict[str, Any]:
        """The messages of one observation on the contract's topics, in publish order (images last, so a
        reader that has a step's last image has all of that step), every one with the same header.

        ``task/status`` carries the task's success metric in its ``coverage`` fields and ``max_metric``
        (the episode's best) in ``max_coverage``. An observation whose ``state`` is None (a world model
        without a state probe) has no ``task/state`` message.
        """
        head = contract.header(stamp_ns, frame_id)
        task = self.task
        out: dict[str, Any] = {
            contract.ROBOT_STATE: new_message(
                "sensor_msgs/msg/JointState",
                header=head,
                name=list(task.observations.proprio),
                position=np.asarray(self.proprio(obs), dtype=np.float64),
                velocity=np.asarray(self.velocity(obs), dtype=np.float64),
                effort=np.zeros(0),
            )
        }
        if getattr(obs, "state", 0) is not None:
            out[contract.TASK_STATE] = new_message(
                "sensor_msgs/msg/JointState",
                header=head,
                name=list(task.observations.state),
                position=np.asarray(self.state(obs), dtype=np.float64),
                velocity=np.asarray(self.state_velocity(obs), dtype=np.float64),
                effort=np.zeros(0),
            )
        out[contract.TASK_STATUS] = new_message(
            "hiwm_msgs/msg/TaskStatus",
            header=head,
            episode_id=episode_id,
            step=int(obs.step),
            coverage=float(self.metric(obs)),
            max_coverage=float(max_metric),
            success=bool(obs.success),
            done=bool(done),
            world=world,
        )
        images = self.images(obs)
        for cam in task.cameras:
            out[cam.topic] = numpy_to_image(images[cam.name], head)
        return out

    def action_chunk(self, rows: np.ndarray, stamp_ns: int, source: int, source_id: str = "") -> Any:
        """An ActionChunk carrying ``rows`` (horizon x action_dim, or one action) at the task's rate."""
        rows = np.asarray(rows, dtype=np.float32).reshape(-1, self.task.action_dim)
        return chunk_message(rows, stamp_ns, source, source_id, dt=1.0 / self.task.fps)


def load_world(task: Task) -> TaskWorld:
    """The world of ``task`` (imports its module); ValueError if the task has none."""
    if not task.world:
        raise ValueError(f"task {task.name!r} has no world module (Task.world)")
    try:
        world = importlib.import_module(task.world).WORLD
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"task {task.name!r}: cannot load its world {task.world!r} ({exc})") from exc
    if not isinstance(world, TaskWorld):
        raise ValueError(f"task {task.name!r}: {task.world}.WORLD is not a TaskWorld")
    return world
