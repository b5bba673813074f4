"""Assemble dataset episodes of a task from robot traffic (live or from a bag), without middleware.

Inputs are the robot's messages on the task's topic contract (:mod:`hiwm.tasks.contract`): one
sensor_msgs/Image per task camera, ``task/state`` (sensor_msgs/JointState with the task's state
names, which include its proprio names), ``task/status`` (hiwm_msgs/TaskStatus, whose ``coverage``
carries the task's success metric) and ``robot/command`` (hiwm_msgs/ActionChunk of the task's
action_dim). The contract they follow:

* one observation per physics step: an image per camera, a state and a status whose header stamps
  are equal (or within ``sync_tolerance_s``); ``status.step`` counts from 0 after a reset;
* a command's stamp lies after the observation it answers; row ``k`` of a chunk is
  executed ``k`` steps after it, the last row is held when the chunk runs out (what the
  robot nodes do in both clocks);
* an episode ends with ``status.done`` or when ``status.episode_id`` changes;
* a step at or before the last one (a world-model rollback, or a republished state) replaces the
  steps from there on: the episode is the path finally taken.

Frame ``t`` of an episode is observation ``t``, the action executed next, and ``next.*``
from the status after it (the task world's :meth:`~hiwm.tasks.world.TaskWorld.outcome`), so an
episode of ``T`` frames uses ``T + 1`` observations, as in LeRobot's datasets. Episodes with a gap
in ``step`` are dropped, never stored partially; an episode whose first steps never reached the
assembler (the recorder started, or its subscriptions matched, after the robot had begun: with the
real-time clock the robot steps on its own) is kept from the first step received, which the log says.
"""

from __future__ import annotations

import bisect
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hiwm.comm.images import image_to_numpy
from hiwm.comm.interfaces import InterfaceError
from hiwm.data.lerobot import SOURCE_HUMAN
from hiwm.tasks.base import Task
from hiwm.tasks.world import TaskWorld


def stamp_ns(msg: Any) -> int:
    stamp = msg.header.stamp
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def state_vectors(msg: Any, task: Task) -> tuple[np.ndarray, np.ndarray | None]:
    """(proprio, the task's full state or None) from a ``task/state`` JointState.

    Joints are looked up by the task's names (``task.observations``); a message without names
    holds the task's state in order (its first entries at least: the proprio's)."""
    pos = np.asarray(msg.position, dtype=np.float64).reshape(-1)
    proprio, state = task.observations.proprio, task.observations.state
    names = list(msg.name)
    if not names:  # the state in order: as many of its entries as there are positions
        pos = pos[: len(state)]
        names = list(state[: len(pos)])
    if len(names) != len(pos):
        raise InterfaceError(f"JointState has {len(names)} names but {len(pos)} positions")
    index = {n: i for i, n in enumerate(names)}
    missing = [n for n in proprio if n not in index]
    if missing:
        raise InterfaceError(f"JointState lacks the task's {', '.join(missing)} (names {names}, {len(pos)} positions)")
    full = pos[[index[n] for n in state]] if all(n in index for n in state) else None
    return pos[[index[n] for n in proprio]], full


@dataclass
class StampedObservation:
    stamp: int
    step: int
    images: dict[str, np.ndarray]  # camera name -> (H, W, 3) uint8
    proprio: np.ndarray
    env_state: np.ndarray | None
    metric: float  # the task's success metric (task/status ``coverage``)
    success: bool
    done: bool


@dataclass
class Command:
    stamp: int
    rows: np.ndarray  # (horizon, action_dim)
    source: int


@dataclass
class EpisodeData:
    """One finished episode, ready for :meth:`LeRobotDatasetWriter.add_frame`."""

    episode_id: str
    frames: list[dict]
    complete: bool  # ended with done (else cut short by a reset)


@dataclass
class _Open:
    episode_id: str
    observations: list[StampedObservation] = field(default_factory=list)
    gap: str | None = None


class EpisodeAssembler:
    """Feed a task's messages in with ``on_*``; finished episodes go to ``on_episode``.

    ``world`` is the task's (:func:`hiwm.tasks.world.load_world`): its cameras' features and its
    ``next.*`` values. ``features`` are the dataset's (``world.features(...)``): the assembler
    fills those it knows and nothing else; each camera's image size is its feature's.
    """

    def __init__(
        self,
        world: TaskWorld,
        features: dict[str, dict],
        on_episode: Callable[[EpisodeData], None],
        *,
        fps: float | None = None,
        sync_tolerance_s: float | None = None,
        keep_truncated: bool = True,
        min_frames: int = 1,
        logger: logging.Logger | None = None,
    ) -> None:
        task = world.task
        if not set(task.observations.proprio) <= set(task.observations.state):
            raise ValueError(
                f"task {task.name!r}: recording reads the proprio from task/state, but its state names "
                f"{list(task.observations.state)} lack some of {list(task.observations.proprio)}"
            )
        self.world, self.task = world, task
        self.features = features
        self.on_episode = on_episode
        self.camera_features = world.camera_features()
        missing = [key for key in self.camera_features.values() if key not in features]
        if missing:
            raise ValueError(f"features lack the task's camera videos {missing}")
        self.image_sizes = {
            cam: (int(features[key]["shape"][0]), int(features[key]["shape"][1]))
            for cam, key in self.camera_features.items()
        }
        fps = fps or task.fps
        self.tolerance = int((sync_tolerance_s if sync_tolerance_s is not None else 0.4 / fps) * 1e9)
        self.keep_truncated = keep_truncated
        self.min_frames = max(1, min_frames)
        self.log = logger or logging.getLogger("hiwm.data.episodes")
        self._images: dict[str, deque[tuple[int, np.ndarray]]] = {c: deque(maxlen=4096) for c in self.camera_features}
        self._states: deque[tuple[int, Any]] = deque(maxlen=4096)
        self._statuses: list[tuple[int, Any]] = []  # waiting for their images and state
        self._commands: list[Command] = []
        self._open: _Open | None = None
        self._closed_ids: deque[str] = deque(maxlen=64)
        self.dropped = 0
        self.warned: set[str] = set()

    # -- inputs --------------------------------------------------------------
    def on_image(self, msg: Any, camera: str | None = None) -> None:
        """An image of ``camera`` (a task camera's name; None: the task's only camera)."""
        if camera is None:
            if len(self._images) != 1:
                raise ValueError(f"task {self.task.name!r} has cameras {list(self._images)}: say whose image")
            camera = next(iter(self._images))
        if camera not in self._images:
            raise ValueError(f"no camera {camera!r} in task {self.task.name!r} (cameras {list(self._images)})")
        image = image_to_numpy(msg, expect=self.image_sizes[camera])
        if msg.encoding != "rgb8":
            raise InterfaceError(f"image encoding must be rgb8, got {msg.encoding!r}")
        self._images[camera].append((stamp_ns(msg), image.copy()))
        self._match()

    def on_state(self, msg: Any) -> None:
        state_vectors(msg, self.task)  # validate now so a bad message is reported where it arrives
        self._states.append((stamp_ns(msg), msg))
        self._match()

    def on_status(self, msg: Any) -> None:
        self._statuses.append((stamp_ns(msg), msg))
        self._match()

    def on_command(self, msg: Any) -> None:
        horizon, dim = int(msg.horizon), int(msg.action_dim)
        data = np.asarray(msg.data, dtype=np.float32).reshape(-1)
        if horizon < 1 or dim < 1 or data.size != horizon * dim:
            raise InterfaceError(f"ActionChunk data has {data.size} values for horizon {horizon} x dim {dim}")
        if dim != self.task.action_dim:
            raise InterfaceError(
                f"ActionChunk action_dim {dim}; task {self.task.name!r} acts in {self.task.action_dim}"
            )
        if not np.all(np.isfinite(data)):
            raise InterfaceError("ActionChunk has non-finite values (the robot refuses it)")
        cmd = Command(stamp_ns(msg), data.reshape(horizon, dim), int(msg.source))
        bisect.insort(self._commands, cmd, key=lambda c: c.stamp)

    def close(self) -> EpisodeData | None:
        """End of input: an unfinished episode is dropped (returned for logging, not emitted)."""
        self._match()
        episode, self._open = self._open, None
        if episode and episode.observations:
            self.dropped += 1
            self.log.warning(
                f"episode {episode.episode_id}: unfinished at shutdown after "
                f"{len(episode.observations)} observations; dropped"
            )
            return EpisodeData(episode.episode_id, [], False)
        return None

    # -- matching ------------------------------------------------------------
    def _nearest(self, items: deque, stamp: int) -> int | None:
        best, best_d = None, self.tolerance + 1
        for i, (s, _) in enumerate(items):
            d = abs(s - stamp)
            if d < best_d:
                best, best_d = i, d
        return best

    def _match(self) -> None:
        streams = [*self._images.values(), self._states]
        while self._statuses:
            stamp, status = self._statuses[0]
            found = [self._nearest(items, stamp) for items in streams]
            if any(i is None for i in found):
                late = all(any(s > stamp + self.tolerance for s, _ in items) for items in streams)
                if not late:
                    return  # its images or state may still come
                self._warn("unmatched", f"status step {status.step} at {stamp} has no image/state; skipped")
                self._statuses.pop(0)
                continue
            self._statuses.pop(0)
            picked = [items[i][1] for items, i in zip(streams, found, strict=True)]
            for items, i in zip(streams, found, strict=True):
                for _ in range(i + 1):
                    items.popleft()
            images = dict(zip(self._images, picked[:-1], strict=True))
            proprio, env_state = state_vectors(picked[-1], self.task)
            obs = StampedObservation(
                stamp,
                int(status.step),
                images,
                proprio,
                env_state,
                float(status.coverage),
                bool(status.success),
                bool(status.done),
            )
            self._observe(str(status.episode_id), obs)

    def _observe(self, episode_id: str, obs: StampedObservation) -> None:
        if episode_id in self._closed_ids:
            return  # a done episode's status repeated while the robot idles
        if self._open is not None and self._open.episode_id != episode_id:
            self._finish(complete=False)
        if self._open is None:
            self._open = _Open(episode_id)
        episode = self._open
        if episode.observations:
            last = episode.observations[-1].step
            if obs.step <= last and episode.observations[0].step <= obs.step:
                # a rollback (world model restored to an earlier step): the episode keeps the path taken
                # from there; the abandoned steps live on in the branch cache
                episode.observations = [o for o in episode.observations if o.step < obs.step]
            elif obs.step != last + 1 and episode.gap is None:
                episode.gap = f"step {last} followed by {obs.step}"
        elif obs.step != 0:
            # not a hole: the episode began before its messages reached us; it starts here
            self.log.info(
                f"episode {episode_id}: first observation received has step {obs.step} (its earlier steps came "
                "before the recorder was listening); recorded from there"
            )
        episode.observations.append(obs)
        if obs.done:
            self._finish(complete=True)

    def _finish(self, complete: bool) -> None:
        episode, self._open = self._open, None
        if episode is None:
            return
        self._closed_ids.append(episode.episode_id)
        obs = episode.observations
        if episode.gap:
            self.dropped += 1
            self.log.warning(f"episode {episode.episode_id}: {episode.gap} (messages lost); dropped")
            return
        if not complete and not self.keep_truncated:
            self.dropped += 1
            self.log.info(f"episode {episode.episode_id}: cut short by a reset; dropped (keep_truncated is off)")
            return
        frames = self._frames(episode.episode_id, obs, complete)
        # commands before this episode's last observation are used up
        last = obs[-1].stamp if obs else 0
        self._commands = [c for c in self._commands if c.stamp > last]
        if len(frames) < self.min_frames:
            self.dropped += 1
            self.log.info(f"episode {episode.episode_id}: {len(frames)} frames (< {self.min_frames}); dropped")
            return
        self.on_episode(EpisodeData(episode.episode_id, frames, complete))

    def _frames(self, episode_id: str, obs: list[StampedObservation], complete: bool) -> list[dict]:
        stamps = [o.stamp for o in obs]
        frames: list[dict] = []
        skipped = 0
        for t in range(len(obs) - 1):
            # the latest command sent before observation t+1, and how many steps ago it started
            cmds = [c for c in self._commands if obs[0].stamp < c.stamp <= stamps[t + 1]]
            if not cmds:
                skipped += 1  # the robot was not being commanded yet
                continue
            cmd = cmds[-1]
            started = bisect.bisect_left(stamps, cmd.stamp) - 1  # the observation it answered
            row = cmd.rows[min(t - started, len(cmd.rows) - 1)]
            nxt = obs[t + 1]
            frame = {
                **{self.camera_features[c]: image for c, image in obs[t].images.items()},
                "observation.state": obs[t].proprio.astype(np.float32),
                "action": row,
                "intervention": cmd.source == SOURCE_HUMAN,
                "action.source": cmd.source,
                "observation.environment_state": obs[t].env_state,
                **self.world.outcome(nxt.metric, nxt.success, nxt.done and t == len(obs) - 2),
            }
            if frame["observation.environment_state"] is None and "observation.environment_state" in self.features:
                state = self.task.observations.state
                self._warn("env_state", f"task/state lacks the task's state {list(state)}; "
                           "observation.environment_state left at zeros")  # fmt: skip
                frame["observation.environment_state"] = np.zeros(len(state), np.float32)
            frames.append({k: v for k, v in frame.items() if k in self.features})
        if skipped:
            self.log.info(f"episode {episode_id}: {skipped} leading observation(s) before the first command skipped")
        return frames

    def _warn(self, key: str, message: str) -> None:
        if key not in self.warned:
            self.warned.add(key)
            self.log.warning(message)
