"""The world model behind the robot's interface: episodes, validated commands, clocks, snapshot handles.

:class:`WorldModelSim` mirrors :class:`hiwm.tasks.pusht.robot.PushTRobot` (same reset/command/tick
and the same :class:`Observation`), so a node can publish it with the robot's topic contract.
The state probe turns each generated frame into the task state; the task's success detector
(:mod:`hiwm.world_model.detector`; Push-T's is the probe's coverage) gives each frame's
probability of success, published as ``coverage`` and judged at its threshold. Every step's
snapshot is kept, by content id, in a bounded map so the branch cache can ask to restore it.
"""

from __future__ import annotations

import hashlib
import uuid
from collections import OrderedDict, deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hiwm.tasks.pusht.env import MAX_STEPS, Observation, PushTEnv
from hiwm.tasks.pusht.robot import CLOCKS, BadCommand, parse_chunk
from hiwm.world_model import detector as detectors
from hiwm.world_model.checkpoint import load
from hiwm.world_model.session import Session


@dataclass
class Handle:
    """One published state: its snapshot and what the episode looked like there."""

    snapshot_id: str
    parent_id: str
    data: bytes
    episode_id: str
    max_coverage: float
    agent_pos: np.ndarray
    action: np.ndarray | None  # the action that led here (None at a reset)
    source: int


@dataclass
class Step:
    """One published state of the model: what the robot contract carries, and its handle."""

    obs: Observation
    handle: Handle


@dataclass
class StepResult:
    steps: list[Step]
    warnings: list[str]


def snapshot_id(data: bytes) -> str:
    """Content address of a snapshot: sha256 hex, as the branch cache files blobs."""
    return hashlib.sha256(data).hexdigest()


class WorldModelSim:
    """A world-model rollout with episode ids, command validation, a clock and restorable handles."""

    def __init__(
        self,
        checkpoint: str | Path,
        clock: str = "lockstep",
        device: str = "cpu",
        seed: int = 0,
        capacity: int = 2048,
        max_steps: int = MAX_STEPS,
    ) -> None:
        if clock not in CLOCKS:
            raise ValueError(f"clock must be one of {CLOCKS}, got {clock!r}")
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.clock = clock
        _, self.model, self.probe = load(checkpoint, device=device)
        self.detector = detectors.for_checkpoint(checkpoint, self.probe, device)
        # Push-T's detector reads the probe's state: read it once per frame
        self._probe_detector = isinstance(self.detector, detectors.ProbeDetector)
        self.session = Session(self.model, seed=seed)
        self.rng = np.random.default_rng(seed)
        self.capacity = capacity
        self.max_steps = max_steps
        self.handles: OrderedDict[str, Handle] = OrderedDict()
        self.queue: deque[np.ndarray] = deque()
        self.episode_id = ""
        self.max_coverage = 0.0
        self.agent_pos = np.zeros(2)
        self.target = np.zeros(2)
        self.last: Observation | None = None
        self.handle: Handle | None = None
        self.source = 0  # ActionChunk.SOURCE_* of the latest command
        self._datasets: dict[str, object] = {}
        self._env: PushTEnv | None = None

    # observations ----------------------------------------------------------
    def _observe(self, frame: np.ndarray) -> Observation:
        """The observation of a generated frame, the task state read by the probe (None without one)."""
        state, coverage, agent = None, 0.0, self.target.astype(np.float64)
        if self.probe is not None:
            state = self.probe.predict(frame)[0]
            agent = state[:2]
        if self._probe_detector:
            coverage = detectors.coverage_of_state(state)
        elif self.detector is not None:
            coverage = float(self.detector.probability(frame[None])[0])
        step = self.session.step_count
        vel = (agent - self.agent_pos) * 10.0 if step > 0 else np.zeros(2)  # 10 Hz control
        self.agent_pos = agent
        self.max_coverage = max(self.max_coverage, coverage)
        success = self.detector is not None and self.detector.success(coverage)
        self.last = Observation(
            image=frame,
            agent_pos=agent,
            agent_vel=vel,
            block_pose=state[2:] if state is not None else np.zeros(3),
            state=state,
            coverage=coverage,
            success=success,
            step=step,
            done=success or step >= self.max_steps,
            max_coverage=self.max_coverage,
        )
        return self.last

    def _record(self, action: np.ndarray | None, source: int) -> Handle:
        data = self.session.snapshot()
        sid = snapshot_id(data)
        parent = self.handle.snapshot_id if (self.handle is not None and action is not None) else ""
        handle = Handle(sid, parent, data, self.episode_id, self.max_coverage, self.agent_pos.copy(), action, source)
        self.handles[sid] = handle
        self.handles.move_to_end(sid)
        while len(self.handles) > self.capacity:
            self.handles.popitem(last=False)
        self.handle = handle
        return handle

    # episodes --------------------------------------------------------------
    def _start(self, frame: np.ndarray, agent: np.ndarray) -> Step:
        self.episode_id = uuid.uuid4().hex[:12]
        self.queue.clear()
        self.max_coverage = 0.0
        self.agent_pos = np.asarray(agent, dtype=np.float64)
        self.target = self.agent_pos.copy()
        self.handle = None
        obs = self._observe(frame)
        return Step(obs, self._record(None, 0))

    def reset(self, seed: int | None = None, state: np.ndarray | None = None) -> Step:
        """A new episode from a real Push-T state (rendered by gym-pusht) or a seed's random state."""
        if state is None:
            if self._env is None:
                self._env = PushTEnv(image_size=self.model.cfg.image_size, render=False)
            seed = int(self.rng.integers(0, 2**31)) if seed is None else seed
            state = self._env.reset(seed=seed).state
        st = np.asarray(state, dtype=np.float64).reshape(-1)
        frame = self.session.reset(state=st)  # validates the state
        return self._start(frame, st[:2])

    def reset_from_dataset(self, root: str, frame_index: int) -> Step:
        """A new episode from a recorded frame (global index) of a LeRobot dataset and the frames before it."""
        from hiwm.data import LeRobotDataset

        if root not in self._datasets:
            try:
                self._datasets[root] = LeRobotDataset(root)
            except Exception as exc:  # missing or damaged dataset: the caller gets the reason
                raise ValueError(f"cannot open dataset {root!r}: {exc}") from exc
        ds = self._datasets[root]
        spans = [(int(r["dataset_from_index"]), int(r["length"])) for r in ds.episodes]
        found = [i for i, (first, length) in enumerate(spans) if first <= frame_index < first + length]
        if not found:
            raise ValueError(f"frame_index {frame_index} is not in {root!r} ({ds.num_frames} frames)")
        i, first = found[0], spans[found[0]][0]
        ep = ds.episode(i)
        t = frame_index - first
        k = self.model.cfg.context
        frames = ep["observation.image"][max(0, t - k + 1) : t + 1]
        agent = np.asarray(ep["observation.state"][t], dtype=np.float64)
        prev = ep["action"][t - 1] if t > 0 else agent
        frame = self.session.reset(frames=frames, prev_action=prev)
        return self._start(frame, agent)

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
            frame = self.session.frame
            agent = self.probe.predict(frame)[0][:2] if self.probe is not None else self.target
            # evicted here, so the episode's record is unknown: it continues under the current episode id
            handle = Handle(sid, "", bytes(data), self.episode_id, self.max_coverage, np.asarray(agent), None, 0)
            self.handles[sid] = handle
        self.session.restore(handle.data)
        self.handles.move_to_end(sid)
        self.episode_id, self.max_coverage = handle.episode_id, handle.max_coverage
        self.agent_pos = handle.agent_pos.copy()
        self.target = handle.action.copy() if handle.action is not None else handle.agent_pos.copy()
        self.queue.clear()
        self.handle = handle
        obs = self._observe(self.session.frame)
        self.max_coverage = obs.max_coverage = handle.max_coverage  # the restored episode's own record
        return Step(obs, handle)

    # actions ---------------------------------------------------------------
    def command(self, horizon: int, action_dim: int, data: object, source: int = 0) -> StepResult:
        """Execute (lockstep) or queue (realtime) a chunk. Raises BadCommand if refused."""
        rows, warnings = parse_chunk(horizon, action_dim, data)
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
        frame = self.session.step(self.target)
        obs = self._observe(frame)
        return Step(obs, self._record(self.target.astype(np.float32), source))


def pick_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name
