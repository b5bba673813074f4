"""The world model behind the robot's interface: episodes, validated commands, clocks, snapshot handles.

:class:`WorldModelSim` stands in for a task's world (the reset/command/tick of a robot core, and the
task's own observations, built by its :class:`~hiwm.tasks.world.TaskWorld`), so a node can publish it
with the task's topic contract. A world model is of one task (``ModelConfig.task``): its cameras
are the task's in order, its actions the task's. The state probe turns each generated frame into
the task state; the success detector (:mod:`hiwm.world_model.detector`; the probe's, the task's
metric of that state, unless the checkpoint holds another) gives each frame's probability of
success, published as the task's metric and judged at its threshold. Every step's snapshot is kept,
by content id, in a bounded map so the branch cache can ask to restore it.
"""

from __future__ import annotations

import hashlib
import uuid
from collections import OrderedDict, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hiwm.tasks import Task, get_task
from hiwm.tasks.chunks import CLOCKS, BadCommand, parse_chunk
from hiwm.world_model import detector as detectors
from hiwm.world_model.checkpoint import load
from hiwm.world_model.config import ModelConfig, check_task_interface
from hiwm.world_model.session import Session, model_world


@dataclass
class Handle:
    """One published state: its snapshot and what the episode looked like there."""

    snapshot_id: str
    parent_id: str
    data: bytes
    episode_id: str
    max_metric: float
    proprio: np.ndarray
    action: np.ndarray | None  # the action that led here (None at a reset)
    source: int


@dataclass
class Step:
    """One published state of the model: the task's observation, and its handle."""

    obs: Any
    handle: Handle


@dataclass
class StepResult:
    steps: list[Step]
    warnings: list[str]


def snapshot_id(data: bytes) -> str:
    """Content address of a snapshot: sha256 hex, as the branch cache files blobs."""
    return hashlib.sha256(data).hexdigest()


def served_task(cfg: ModelConfig, task: str = "") -> Task:
    """The task a model of ``cfg`` serves: its own; ValueError if ``task`` (when given) names another
    or the model cannot stand in for it."""
    if task and task != cfg.task:
        raise ValueError(f"the world model is of task {cfg.task!r}, not {task!r} (leave task empty for the model's)")
    spec = get_task(cfg.task)
    check_task_interface(cfg, spec)
    return spec


class WorldModelSim:
    """A world-model rollout with episode ids, command validation, a clock and restorable handles.

    ``task`` (optional) must be the checkpoint's; ``max_steps`` defaults to the task's episode length.
    """

    def __init__(
        self,
        checkpoint: str | Path,
        clock: str = "lockstep",
        device: str = "cpu",
        seed: int = 0,
        capacity: int = 2048,
        max_steps: int | None = None,
        task: str = "",
    ) -> None:
        if clock not in CLOCKS:
            raise ValueError(f"clock must be one of {CLOCKS}, got {clock!r}")
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.clock = clock
        _, self.model, self.probe = load(checkpoint, device=device)
        self.task = served_task(self.model.cfg, task)
        self.world = model_world(self.model.cfg)
        if self.probe is not None and self.probe.cfg.task != self.task.name:
            raise ValueError(
                f"{checkpoint}: the state probe reads task {self.probe.cfg.task!r}, the model is of {self.task.name!r}"
            )
        self.detector = detectors.for_checkpoint(checkpoint, self.probe, device)
        # the probe's detector reads the probe's state: read it once per frame
        self._probe_detector = isinstance(self.detector, detectors.ProbeDetector) and self.detector.probe is self.probe
        self.session = Session(self.model, seed=seed)
        self.rng = np.random.default_rng(seed)
        self.capacity = capacity
        self.max_steps = self.task.episode_steps if max_steps is None else int(max_steps)
        self.handles: OrderedDict[str, Handle] = OrderedDict()
        self.queue: deque[np.ndarray] = deque()
        self.episode_id = ""
        self.max_metric = 0.0
        self.proprio = np.zeros(self.task.proprio_dim)
        self.target = np.zeros(self.task.action_dim)
        self.state: np.ndarray | None = None  # the task state the probe read off the latest frame
        self.last: Any = None
        self.handle: Handle | None = None
        self.source = 0  # ActionChunk.SOURCE_* of the latest command
        self._datasets: dict[str, object] = {}
        self._cameras = [name for name, _, _ in self.model.cfg.camera_list]  # the task's cameras, in order

    # observations ----------------------------------------------------------
    def _read_proprio(self, state: np.ndarray | None) -> np.ndarray:
        """The proprio now: the model's prediction, else the probe state's proprio entries, else (actions
        in the proprio's space) the last target."""
        if self.model.cfg.proprio_dim:
            return self.session.proprio.astype(np.float64)
        read = self.world.state_entries(state, self.task.observations.proprio)
        if read is not None:
            return read
        if self.task.action.names == self.task.observations.proprio:
            return self.target.astype(np.float64)
        return np.zeros(self.task.proprio_dim)

    def _hold(self, proprio: np.ndarray) -> np.ndarray:
        """The action that holds still at ``proprio``: itself for actions in the proprio's space, else the
        middle of the action limits."""
        if self.task.action.names == self.task.observations.proprio:
            return np.asarray(proprio, dtype=np.float64).copy()
        return (np.asarray(self.task.action.low) + np.asarray(self.task.action.high)) / 2

    def _observe(self, max_metric: float | None = None) -> Any:
        """The task's observation of the model's current frames, the task state read by the probe (None
        without one); ``max_metric`` replaces the episode's running best (a restored state's own)."""
        views = self.session.views
        frame = views[self._cameras[0]]
        state, metric = None, 0.0
        if self.probe is not None:
            state = self.probe.predict(frame)[0]
        proprio = self._read_proprio(state)
        if self._probe_detector:
            metric = self.detector.metric(state)
        elif self.detector is not None:  # a detector reading proprio reads the model's (or the probe's)
            metric = float(self.detector.probability(frame[None], proprio[None])[0])
        step = self.session.step_count
        vel = (proprio - self.proprio) * self.task.fps if step > 0 else np.zeros(len(proprio))
        self.proprio, self.state = proprio, state
        self.max_metric = max(self.max_metric, metric) if max_metric is None else float(max_metric)
        success = self.detector is not None and self.detector.success(metric)
        images = {c.name: views[name] for c, name in zip(self.task.cameras, self._cameras, strict=True)}
        self.last = self.world.make_observation(
            images=images,
            proprio=proprio,
            velocity=vel,
            state=state,
            metric=metric,
            success=success,
            step=step,
            done=success or step >= self.max_steps,
            max_metric=self.max_metric,
        )
        return self.last

    def _record(self, action: np.ndarray | None, source: int) -> Handle:
        data = self.session.snapshot()
        sid = snapshot_id(data)
        parent = self.handle.snapshot_id if (self.handle is not None and action is not None) else ""
        handle = Handle(sid, parent, data, self.episode_id, self.max_metric, self.proprio.copy(), action, source)
        self.handles[sid] = handle
        self.handles.move_to_end(sid)
        while len(self.handles) > self.capacity:
            self.handles.popitem(last=False)
        self.handle = handle
        return handle

    # episodes --------------------------------------------------------------
    def _start(self, proprio: np.ndarray) -> Step:
        self.episode_id = uuid.uuid4().hex[:12]
        self.queue.clear()
        self.max_metric = 0.0
        self.proprio = np.asarray(proprio, dtype=np.float64)
        self.target = self._hold(self.proprio)
        self.handle = None
        obs = self._observe()
        return Step(obs, self._record(None, 0))

    def reset(self, seed: int | None = None, state: np.ndarray | None = None) -> Step:
        """A new episode from a true state of the task (rendered by its env) or a seed's random state."""
        if state is None:
            seed = int(self.rng.integers(0, 2**31)) if seed is None else seed
            state = self.world.initial_state(seed)
        st = self.world.validate_state(state)
        self.session.reset(state=st)  # renders it
        proprio = self.world.state_entries(st, self.task.observations.proprio)
        return self._start(proprio if proprio is not None else np.zeros(self.task.proprio_dim))

    def reset_from_dataset(self, root: str, frame_index: int) -> Step:
        """A new episode from a recorded frame (global index) of a LeRobot dataset and the frames before it."""
        from hiwm.data import LeRobotDataset
        from hiwm.world_model.data import PROPRIO_KEY, image_key

        if root not in self._datasets:
            try:
                self._datasets[root] = LeRobotDataset(root)
            except Exception as exc:  # missing or damaged dataset: the caller gets the reason
                raise ValueError(f"cannot open dataset {root!r}: {exc}") from exc
        ds = self._datasets[root]
        keys = [image_key(ds.features, name) for name in self._cameras]
        if PROPRIO_KEY not in ds.features:
            raise ValueError(f"dataset {root!r} has no {PROPRIO_KEY!r} (the robot's state at each frame)")
        spans = [(int(r["dataset_from_index"]), int(r["length"])) for r in ds.episodes]
        found = [i for i, (first, length) in enumerate(spans) if first <= frame_index < first + length]
        if not found:
            raise ValueError(f"frame_index {frame_index} is not in {root!r} ({ds.num_frames} frames)")
        i, first = found[0], spans[found[0]][0]
        ep = ds.episode(i)
        t = frame_index - first
        k = self.model.cfg.context
        frames = {name: ep[key][max(0, t - k + 1) : t + 1] for name, key in zip(self._cameras, keys, strict=True)}
        proprio = np.asarray(ep[PROPRIO_KEY][t], dtype=np.float64).reshape(-1)
        if proprio.shape != (self.task.proprio_dim,):
            raise ValueError(
                f"dataset {root!r}: {PROPRIO_KEY} has {proprio.size} values, the task {self.task.proprio_dim}"
            )
        prev = ep["action"][t - 1] if t > 0 else self._hold(proprio)
        self.session.reset(frames=frames, prev_action=prev, proprio=proprio if self.model.cfg.proprio_dim else None)
        return self._start(proprio)

    def restore(self, sid: str, data: bytes | None = None) -> Step:
        """Go back to a published state, held here or given as ``data`` (the branch cache sends the bytes).

        Raises KeyError for an id neither held nor given, ValueError when ``data`` does not hash to
        ``sid``, SnapshotError for bytes this model cannot restore.
        """
        handle = self.handles.get(sid)
        if handle is None:
            if not data:
                raise KeyError(sid)
            if snapshot_id(data) != sid:
                raise ValueError(f"snapshot bytes do not hash to {sid[:16]}...")
            self.session.restore(data)  # validates before anything changes
            state = self.probe.predict(self.session.frame)[0] if self.probe is not None else None
            proprio = self._read_proprio(state)
            # evicted here, so the episode's record is unknown: it continues under the current episode id
            handle = Handle(sid, "", bytes(data), self.episode_id, self.max_metric, proprio, None, 0)
            self.handles[sid] = handle
        self.session.restore(handle.data)
        self.handles.move_to_end(sid)
        self.episode_id = handle.episode_id
        self.proprio = handle.proprio.copy()
        self.target = handle.action.astype(np.float64) if handle.action is not None else self._hold(handle.proprio)
        self.queue.clear()
        self.handle = handle
        return Step(self._observe(max_metric=handle.max_metric), handle)  # the restored episode's own record

    # actions ---------------------------------------------------------------
    def command(self, horizon: int, action_dim: int, data: object, source: int = 0) -> StepResult:
        """Execute (lockstep) or queue (realtime) a chunk of the task's actions. Raises BadCommand if refused."""
        rows, warnings = parse_chunk(self.task.action, horizon, action_dim, data)
        if self.last is None:
            raise BadCommand("reset", "no episode yet; call reset first")
        if self.last.done:
            raise BadCommand("done", "the episode is done; call reset first")
        self.source = source
        if self.clock == "realtime":
            self.queue.clear()
            self.queue.extend(rows)
            return StepResult([], warnings)
        steps = []
        for row in rows:
            steps.append(self._step(row, source))
            if steps[-1].obs.done:
                break
        return StepResult(steps, warnings)

    def tick(self) -> Step | None:
        """One real-time control tick: the next queued row, else the last target. None once done."""
        if self.last is None or self.last.done:
            return None
        return self._step(self.queue.popleft() if self.queue else self.target, self.source)

    def _step(self, action: np.ndarray, source: int) -> Step:
        self.target = np.asarray(action, dtype=np.float64)
        self.session.step(self.target)
        obs = self._observe()
        return Step(obs, self._record(self.target.astype(np.float32), source))


def pick_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name
