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

import atexit
import importlib
import math
from dataclasses import dataclass
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


@dataclass(frozen=True)
class StateCoding:
    """How a net regresses a task's true state (the world model's state probe, a policy's state head).

    Each state entry is a position, regressed as ``value / scale``, or one of the ``angles``, regressed
    as its (sin, cos) and read back into [0, 2 pi). Targets are the positions in state order, then
    each angle's sin and cos. The loss is ``position_weight`` x the MSE of the positions plus
    ``angle_weight`` x the MSE of the (sin, cos) pairs: the weights say what an error in each costs
    the task's success metric.
    """

    scale: tuple[float, ...]  # one per state entry (an angle's is unused)
    angles: tuple[int, ...] = ()
    position_weight: float = 1.0
    angle_weight: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "scale", tuple(float(v) for v in self.scale))
        object.__setattr__(self, "angles", tuple(int(i) for i in self.angles))
        if not self.scale or not all(math.isfinite(v) and v > 0 for v in self.scale):
            raise ValueError(f"state coding: scales must be finite and > 0, got {self.scale}")
        if len(set(self.angles)) != len(self.angles) or any(not 0 <= i < len(self.scale) for i in self.angles):
            raise ValueError(f"state coding: angles must be distinct entries of {len(self.scale)}, got {self.angles}")
        if not (math.isfinite(self.position_weight) and math.isfinite(self.angle_weight)):
            raise ValueError("state coding: loss weights must be finite")

    @property
    def positions(self) -> tuple[int, ...]:
        """The state entries regressed as scaled values, in state order."""
        return tuple(i for i in range(len(self.scale)) if i not in self.angles)

    @property
    def state_dim(self) -> int:
        return len(self.scale)

    @property
    def dim(self) -> int:
        """Targets per state: one per position, two per angle."""
        return len(self.positions) + 2 * len(self.angles)

    def targets(self, states: np.ndarray) -> np.ndarray:
        """(N, state_dim) true states -> (N, dim) float32 regression targets (NaN rows stay NaN)."""
        s = np.asarray(states, dtype=np.float64)
        if s.ndim != 2 or s.shape[1] != self.state_dim:
            raise ValueError(f"states must be (N, {self.state_dim}), got {s.shape}")
        pos = list(self.positions)
        parts = [s[:, pos] / np.asarray(self.scale)[pos]]
        for a in self.angles:
            parts += [np.sin(s[:, a : a + 1]), np.cos(s[:, a : a + 1])]
        return np.concatenate(parts, axis=1).astype(np.float32)

    def states(self, outputs: np.ndarray) -> np.ndarray:
        """(N, dim) regressed targets -> (N, state_dim) states, in the outputs' float type."""
        y = np.asarray(outputs)
        if y.ndim != 2 or y.shape[1] != self.dim:
            raise ValueError(f"outputs must be (N, {self.dim}), got {y.shape}")
        pos, n = list(self.positions), len(self.positions)
        out = np.empty((len(y), self.state_dim), dtype=y.dtype)
        out[:, pos] = y[:, :n] * np.asarray(self.scale, dtype=y.dtype)[pos]
        for k, a in enumerate(self.angles):
            out[:, a] = np.arctan2(y[:, n + 2 * k], y[:, n + 2 * k + 1]) % (2 * math.pi)
        return out


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

    # -- what a world without the task's physics asks of it (the world model) -----------------------
    # A learned world has frames, perhaps proprio, and the state its probe reads off a frame; these
    # hooks turn that into the task's own observations, metric and resets. Defaults that need the
    # physics use one cached env per image size (``make_env``).
    def _cached_env(self, image_size: int | None = None) -> Any:
        envs = self.__dict__.setdefault("_envs", {})
        size = self.image_size(image_size)
        if size not in envs:
            first = not envs
            envs[size] = self.make_env(size)
            if first:
                # registered after the env exists, so it runs before the exit hooks its libraries
                # registered when it loaded them (MuJoCo's EGL terminates its display in one)
                atexit.register(self.close_envs)
        return envs[size]

    def close_envs(self) -> None:
        """Close the envs the hooks below cached."""
        for env in self.__dict__.pop("_envs", {}).values():
            close = getattr(env, "close", None)
            if close is not None:
                close()

    def initial_state(self, seed: int) -> np.ndarray:
        """The true state an episode of ``make_env`` reset with ``seed`` starts from."""
        return self.state(self._cached_env().reset(seed=int(seed)))

    def validate_state(self, state: object) -> np.ndarray:
        """A true state (``task.observations.state`` order) as float64; ValueError if it is not one.

        The default checks its length and that it is finite; a task refuses states outside its workspace."""
        names = self.task.observations.state
        try:
            arr = np.asarray(state, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"state must be {len(names)} numbers ({', '.join(names)}), got {state!r}") from exc
        if arr.shape != (len(names),) or not np.all(np.isfinite(arr)):
            raise ValueError(f"state must be {len(names)} finite numbers ({', '.join(names)}), got {arr.tolist()}")
        return arr

    def render_state(self, state: np.ndarray, image_size: int | None = None) -> dict[str, np.ndarray]:
        """Every camera's real frame of a true state, ``{camera: (H, W, 3) uint8}`` (the env reset to it)."""
        return self.images(self._cached_env(image_size).reset(state=np.asarray(state, dtype=np.float64)))

    def state_entries(self, state: np.ndarray | None, names: tuple[str, ...]) -> np.ndarray | None:
        """The entries ``names`` of a true state (float64), None without a state or if it lacks one."""
        order = self.task.observations.state
        if state is None or any(n not in order for n in names):
            return None
        return np.asarray(state, dtype=np.float64)[[order.index(n) for n in names]]

    def metric_from_state(self, state: np.ndarray) -> float:
        """The success metric (``task.success.metric``) of a true state: how a state probe's reading is judged."""
        raise NotImplementedError(f"task {self.task.name!r} cannot compute its {self.task.success.metric} from a state")

    def state_coding(self) -> StateCoding:
        """How a net regresses this task's state; the default: every entry a position at scale 1."""
        return StateCoding(scale=(1.0,) * len(self.task.observations.state))

    def state_errors(self, read: np.ndarray, true: np.ndarray) -> dict[str, float]:
        """How far (N, S) read states are from the true ones, named for the logs; the default: the mean
        absolute error of each entry (``<name>_err``)."""
        diff = np.abs(np.asarray(read, dtype=np.float64) - np.asarray(true, dtype=np.float64))
        return {f"{name}_err": float(diff[:, i].mean()) for i, name in enumerate(self.task.observations.state)}

    def make_observation(
        self,
        images: dict[str, np.ndarray],
        proprio: np.ndarray,
        velocity: np.ndarray,
        state: np.ndarray | None,
        metric: float,
        success: bool,
        step: int,
        done: bool,
        max_metric: float,
    ) -> Any:
        """The task's own observation from its parts: what a world without its physics reports, so the
        accessors above and :meth:`observation_messages` read it as the env's. ``state`` is None when
        unknown (a world model without a state probe)."""
        raise NotImplementedError(f"task {self.task.name!r} cannot build an observation from its parts")

    def restore_env(self, env: Any, state: np.ndarray, step: int, max_metric: float) -> Any:
        """Continue an episode of ``env`` from a true state at ``step`` with its best metric so far
        (velocities restart at zero); the observation there."""
        raise NotImplementedError(f"task {self.task.name!r} cannot restore an episode from a state")

    def model_interface(self) -> dict[str, Any]:
        """The fields of a world model's config (:class:`hiwm.world_model.config.ModelConfig`) that
        make it this task's: actions and their limits, proprio, one camera per task camera (sized by
        the dataset where it records them)."""
        task = self.task
        fields: dict[str, Any] = {
            "action_dim": task.action_dim,
            "action_low": list(task.action.low),
            "action_high": list(task.action.high),
            "action_conditioning": "mlp",
            "proprio_dim": task.proprio_dim,
            "cameras": [[c.name, c.height, c.width] for c in task.cameras],
        }
        if task.observations.proprio == task.action.names:  # joint positions: the targets' limits fit them
            fields.update(proprio_low=list(task.action.low), proprio_high=list(task.action.high))
        return fields

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

    def camera_features(self) -> dict[str, str]:
        """``{camera name: its video feature}`` in the task's camera order (what :meth:`features` names)."""
        return {c.name: camera_key(c.name) for c in self.task.cameras}

    def outcome(self, metric: float, success: bool, done: bool) -> dict[str, float | bool]:
        """A recorded frame's ``next.*`` values from the outcome of its action: the success metric's
        value, success and the episode's end (the ``next.*`` features of :meth:`features`)."""
        return {
            "next.reward": float(success),
            f"next.{self.task.success.metric}": float(metric),
            "next.success": bool(success),
            "next.done": bool(done),
        }

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
