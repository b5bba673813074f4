"""Policy/operator arbitration, free of middleware: which action stream reaches the robot, and when.

Phases are LeRobot's DAgger names: ``AUTONOMOUS`` (the policy drives), ``PAUSED`` (nothing is
sent: a lockstep world model holds its state, a real-time robot holds its last target) and
``CORRECTING`` (the operator drives). Every emitted chunk keeps its source, so the recorder
and the branch cache know which actions were human.

Handover is smooth: for ``blend_steps`` steps after a phase change, each commanded position
moves at most ``max_step`` from the previous one, so a policy chunk computed from an old frame,
or a leader arm held somewhere else, cannot make the robot jump. The step is measured in the
task's action space with every dimension scaled by its range (``max_step`` 0.05: 5 % of the range),
so one limit serves a point in the image in pixels and an arm's joints in radians, and a limited step keeps
its direction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hiwm.tasks import DEFAULT_TASK, Task, get_task

AUTONOMOUS, PAUSED, CORRECTING = 0, 1, 2
PHASE_NAMES = {AUTONOMOUS: "AUTONOMOUS", PAUSED: "PAUSED", CORRECTING: "CORRECTING"}
SOURCE_POLICY, SOURCE_HUMAN = 0, 1


def phase_from_text(text: str) -> int:
    """``"autonomous"``, ``"paused"`` or ``"correcting"`` (any case) as a phase constant."""
    for value, name in PHASE_NAMES.items():
        if text.strip().upper() == name:
            return value
    raise ValueError(f"unknown phase {text!r}; expected one of {[n.lower() for n in PHASE_NAMES.values()]}")


@dataclass
class ArbiterConfig:
    task: str = DEFAULT_TASK  # the action space: its dimension and limits
    initial_phase: str = "autonomous"
    auto_take_over: bool = True  # operator input while AUTONOMOUS takes over (else it is ignored)
    blend_steps: int = 5  # steps after a phase change during which commanded positions are rate-limited
    max_step: float = 0.05  # largest move per step while blending, as a fraction of the action range

    def __post_init__(self) -> None:
        get_task(self.task)
        phase_from_text(self.initial_phase)
        if self.blend_steps < 0 or not self.max_step > 0:
            raise ValueError(f"blend_steps must be >= 0 and max_step > 0, got {self.blend_steps}, {self.max_step}")

    @property
    def task_spec(self) -> Task:
        return get_task(self.task)


@dataclass
class Emit:
    """A chunk to send: rows (horizon x dim), the source and who produced it."""

    rows: np.ndarray
    source: int
    source_id: str


@dataclass
class PhaseChange:
    phase: int
    previous: int
    reason: str


class Arbiter:
    def __init__(self, cfg: ArbiterConfig | None = None) -> None:
        self.cfg = cfg or ArbiterConfig()
        space = self.cfg.task_spec.action
        self.low, self.high = np.asarray(space.low), np.asarray(space.high)
        self.phase = phase_from_text(self.cfg.initial_phase)
        self.last_target: np.ndarray | None = None  # the last commanded position
        self.agent: np.ndarray | None = None  # the latest reported position, in the action space
        self._blend_left = 0
        self.counts = {"policy_sent": 0, "policy_held": 0, "operator_sent": 0, "operator_ignored": 0, "changes": 0}

    # -- inputs --------------------------------------------------------------
    @property
    def dim(self) -> int:
        return len(self.low)

    def on_agent(self, position: np.ndarray) -> None:
        """Where the robot is, in the action space (one value per action dimension)."""
        position = np.asarray(position, dtype=np.float64).reshape(-1)
        if position.shape != (self.dim,):
            raise ValueError(f"position needs {self.dim} values (the action space), got {position.size}")
        self.agent = position.copy()

    def reset(self) -> None:
        """A new episode: forget the commanded position (the next one starts where the agent is)."""
        self.last_target = None
        self._blend_left = 0

    def on_policy(self, rows: np.ndarray, source_id: str = "") -> Emit | None:
        """A policy chunk: sent while AUTONOMOUS, dropped otherwise (the policy keeps running)."""
        if self.phase != AUTONOMOUS:
            self.counts["policy_held"] += 1
            return None
        self.counts["policy_sent"] += 1
        return self._emit(rows, SOURCE_POLICY, source_id)

    def on_operator(self, rows: np.ndarray, source_id: str = "") -> tuple[Emit | None, PhaseChange | None]:
        """An operator chunk: sent while CORRECTING; while AUTONOMOUS it takes over if configured."""
        change = None
        if self.phase == AUTONOMOUS and self.cfg.auto_take_over:
            change = self.set_phase(CORRECTING, "operator input")
        if self.phase != CORRECTING:
            self.counts["operator_ignored"] += 1
            return None, change
        self.counts["operator_sent"] += 1
        return self._emit(rows, SOURCE_HUMAN, source_id), change

    def set_phase(self, phase: int, reason: str = "") -> PhaseChange | None:
        """Change phase; returns the change, or None when already in ``phase``."""
        if phase not in PHASE_NAMES:
            raise ValueError(f"unknown phase {phase}; expected one of {sorted(PHASE_NAMES)}")
        if phase == self.phase:
            return None
        previous, self.phase = self.phase, phase
        self._blend_left = self.cfg.blend_steps
        self.counts["changes"] += 1
        return PhaseChange(phase, previous, reason)

    # -- output --------------------------------------------------------------
    def _emit(self, rows: np.ndarray, source: int, source_id: str) -> Emit:
        rows = np.asarray(rows, dtype=np.float64).reshape(-1, self.dim).copy()
        prev = self.last_target if self.last_target is not None else self.agent
        span = self.high - self.low
        for k in range(len(rows)):
            if self._blend_left > 0 and prev is not None:
                delta = rows[k] - prev
                dist = float(np.linalg.norm(delta / span))
                if dist > self.cfg.max_step:
                    rows[k] = prev + delta * (self.cfg.max_step / dist)
                self._blend_left -= 1
            rows[k] = np.clip(rows[k], self.low, self.high)
            prev = rows[k]
        self.last_target = rows[-1].copy()
        return Emit(rows, source, source_id)
