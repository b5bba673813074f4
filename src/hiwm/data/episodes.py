"""Assemble dataset episodes from robot traffic (live or from a bag), without middleware.

Inputs are the robot's messages: ``camera/image`` (sensor_msgs/Image), ``task/state``
(sensor_msgs/JointState; ``robot/state`` works too but carries no block pose),
``task/status`` (hiwm_msgs/TaskStatus) and ``robot/command``
(hiwm_msgs/ActionChunk). The contract they follow:

* one observation per physics step: an image, a state and a status whose header stamps
  are equal (or within ``sync_tolerance_s``); ``status.step`` counts from 0 after a reset;
* a command's stamp lies after the observation it answers; row ``k`` of a chunk is
  executed ``k`` steps after it, the last row is held when the chunk runs out (what the
  Push-T robot does in both clocks);
* an episode ends with ``status.done`` or when ``status.episode_id`` changes;
* a step at or before the last one (a world-model rollback, or a republished state) replaces the
  steps from there on: the episode is the path finally taken.

Frame ``t`` of an episode is observation ``t``, the action executed next, and ``next.*``
from the status after it (so an episode of ``T`` frames uses ``T + 1`` observations, as
in lerobot/pusht). Episodes with a gap in ``step`` are dropped, never stored partially; an
episode whose first steps never reached the assembler (the recorder started, or its subscriptions
matched, after the robot had begun: with the real-time clock the robot steps on its own) is kept
from the first step received, which the log says.
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
from hiwm.tasks.pusht.env import outcome_fields
from hiwm.tasks.pusht.messages import TASK_STATE_NAMES as STATE_NAMES


def stamp_ns(msg: Any) -> int:
    stamp = msg.header.stamp
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def state_vectors(msg: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """(agent position (2,), full Push-T state (5,) or None) from a JointState.

    Joints named ``agent_x, agent_y, block_x, block_y, block_theta`` are looked up by
    name; without names the first two (and, if present, five) positions are used.
    """
    pos = np.asarray(msg.position, dtype=np.float64).reshape(-1)
    names = list(msg.name)
    if names and all(n in names for n in STATE_NAMES[:2]):
        if len(names) != len(pos):
            raise InterfaceError(f"JointState has {len(names)} names but {len(pos)} positions")
        full = [pos[names.index(n)] for n in STATE_NAMES if n in names]
        agent = np.array(full[:2])
        return agent, np.array(full) if len(full) == 5 else None
    if len(pos) < 2:
        raise InterfaceError(f"JointState needs at least 2 positions (agent x, y), got {len(pos)}")
    return pos[:2].copy(), pos[:5].copy() if len(pos) >= 5 else None


@dataclass
class StampedObservation:
    stamp: int
    step: int
    image: np.ndarray
    agent: np.ndarray
    env_state: np.ndarray | None
    coverage: float
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
    """Feed messages in with ``on_*``; finished episodes go to ``on_episode``.

    ``features`` are the dataset's (see :func:`hiwm.data.lerobot.pusht_features`): the
    assembler fills those it knows and nothing else.
    """

    def __init__(
        self,
        features: dict[str, dict],
        on_episode: Callable[[EpisodeData], None],
        *,
        fps: float = 10.0,
        sync_tolerance_s: float | None = None,
        keep_truncated: bool = True,
        min_frames: int = 1,
        logger: logging.Logger | None = None,
    ) -> None:
        self.features = features
        self.on_episode = on_episode
        shape = features["observation.image"]["shape"]
        self.image_size = (int(shape[0]), int(shape[1]))
        self.tolerance = int((sync_tolerance_s if sync_tolerance_s is not None else 0.4 / fps) * 1e9)
        self.keep_truncated = keep_truncated
        self.min_frames = max(1, min_frames)
        self.log = logger or logging.getLogger("hiwm.data.episodes")
        self._images: deque[tuple[int, np.ndarray]] = deque(maxlen=4096)
        self._states: deque[tuple[int, Any]] = deque(maxlen=4096)
        self._statuses: list[tuple[int, Any]] = []  # waiting for their image and state
        self._commands: list[Command] = []
        self._open: _Open | None = None
        self._closed_ids: deque[str] = deque(maxlen=64)
        self.dropped = 0
        self.warned: set[str] = set()

    # -- inputs --------------------------------------------------------------
    def on_image(self, msg: Any) -> None:
        image = image_to_numpy(msg, expect=self.image_size)
        if msg.encoding != "rgb8":
            raise InterfaceError(f"image encoding must be rgb8, got {msg.encoding!r}")
        self._images.append((stamp_ns(msg), image.copy()))
        self._match()

    def on_state(self, msg: Any) -> None:
        state_vectors(msg)  # validate now so a bad message is reported where it arrives
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
        while self._statuses:
            stamp, status = self._statuses[0]
            i, j = self._nearest(self._images, stamp), self._nearest(self._states, stamp)
            if i is None or j is None:
                late = any(s > stamp + self.tolerance for s, _ in self._images) and any(
                    s > stamp + self.tolerance for s, _ in self._states
                )
                if not late:
                    return  # its image or state may still come
                self._warn("unmatched", f"status step {status.step} at {stamp} has no image/state; skipped")
                self._statuses.pop(0)
                continue
            self._statuses.pop(0)
            image = self._images[i][1]
            state_msg = self._states[j][1]
            for _ in range(i + 1):
                self._images.popleft()
            for _ in range(j + 1):
                self._states.popleft()
            agent, env_state = state_vectors(state_msg)
            obs = StampedObservation(
                stamp,
                int(status.step),
                image,
                agent,
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
                "observation.image": obs[t].image,
                "observation.state": obs[t].agent.astype(np.float32),
                "action": row[:2],
                "intervention": cmd.source == SOURCE_HUMAN,
                "action.source": cmd.source,
                "observation.environment_state": obs[t].env_state,
                **outcome_fields(nxt.coverage, nxt.success, nxt.done and t == len(obs) - 2),
            }
            if frame["observation.environment_state"] is None and "observation.environment_state" in self.features:
                self._warn("env_state", "robot/state has no block pose; observation.environment_state left at zeros")
                frame["observation.environment_state"] = np.zeros(5, np.float32)
            frames.append({k: v for k, v in frame.items() if k in self.features})
        if skipped:
            self.log.info(f"episode {episode_id}: {skipped} leading observation(s) before the first command skipped")
        return frames

    def _warn(self, key: str, message: str) -> None:
        if key not in self.warned:
            self.warned.add(key)
            self.log.warning(message)
