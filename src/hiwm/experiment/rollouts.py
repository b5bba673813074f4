"""Hi-WM rollout sessions in the world model: the policy runs closed loop, a (simulated) operator
steps in at failure-prone moments, rolls back, forks several corrections, hands back. Every state
lands in the branch cache, which is what exports the corrections as training episodes.

The simulated operator sees only generated frames, through the state probe (as a human sees only
the screen), and plans each correction with the task's scripted expert (its task world's
``make_expert``); its noise makes the forks of one failure state differ. A failure-prone moment is
a stall: the task's success detector (:mod:`hiwm.world_model.detector`, whose probability the world
reports as the task's metric; by default the metric of the probe's state) has not risen by
``min_progress`` over ``stall_steps`` steps. Each branch
is labelled with the detector's verdict (``detector:success``/``detector:failure``), which an
operator's ``success``/``failure`` label overrides.

The closed-loop baseline is the same rollout with no operator (``operator=None``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hiwm.branch_cache.store import DETECTOR_FAILURE, DETECTOR_SUCCESS, SOURCE_HUMAN, SOURCE_POLICY, BranchStore
from hiwm.comm.images import encode_png
from hiwm.worlds import policy_steps

log = logging.getLogger("hiwm.experiment")


@dataclass
class SimulatedOperatorConfig:
    # failure-prone: no progress of the success metric over this many steps. The base ACT's real episodes take up to
    # 120 steps to first move the block and sit up to 70 steps on a plateau before succeeding; 25
    # steps from step 30 stepped in on nearly every approach
    stall_steps: int = 50
    min_progress: float = 0.02
    min_step: int = 50  # no interventions before this step (the policy is still approaching)
    rollback_steps: int = 20  # the operator goes back this far from the failure-prone state
    forks: int = 3  # corrections per failure state
    correction_steps: int = 40  # length of each correction (the expert repositions, then pushes)
    noise: float = 0.1  # expert noise level of the corrections (diversity between forks)


@dataclass
class BranchResult:
    branch_id: str
    kind: str  # "policy" (the rollout itself) or "correction"
    success: bool
    max_coverage: float
    steps: int
    taken: int = 0  # actions taken on this branch: the policy's on the rollout, the operator's on a correction


@dataclass
class SessionResult:
    session_id: str
    seed: int
    branches: list[BranchResult] = field(default_factory=list)
    failure_state: str = ""  # node id where the operator stepped in ("" when it did not)

    @property
    def rollout(self) -> BranchResult:
        return self.branches[0]

    @property
    def corrections(self) -> list[BranchResult]:
        return [b for b in self.branches if b.kind == "correction"]


class BranchRecorder:
    """Appends each state of a session world to the branch store, following the session cursor: its
    snapshot, the task's first camera frame and its proprio."""

    def __init__(self, store: BranchStore, world: Any, session_id: str) -> None:
        self.store, self.world, self.session_id = store, world, session_id
        self.cursor: str | None = None

    def add(self, obs: Any, action: np.ndarray | None, source: int) -> str:
        task_world = self.world.task_world
        node = self.store.append(
            self.session_id,
            self.world.snapshot(),
            parent=self.cursor,
            step=obs.step,
            action=None if action is None else np.asarray(action, dtype=np.float64).tolist(),
            source=source,
            frame=encode_png(next(iter(task_world.images(obs).values()))),
            state=np.asarray(task_world.proprio(obs), dtype=np.float64).tolist(),
        )
        self.cursor = node.id
        return node.id


def run_policy(
    policy: Any,
    world: Any,
    rec: BranchRecorder,
    obs: Any,
    max_steps: int,
    stall: SimulatedOperatorConfig | None,
) -> tuple[Any, bool]:
    """The policy drives until success, ``max_steps``, or (with ``stall``) a failure-prone stall.

    Returns the last observation and whether it stopped for a stall.
    """
    policy.reset()
    history = [world.max_metric]
    for _, action, nxt in policy_steps(policy, world, obs, max_steps, world.task_world):
        obs = nxt
        rec.add(obs, action, SOURCE_POLICY)
        history.append(world.max_metric)
        if stall is not None and not obs.done and stalled(history, obs.step, stall):
            return obs, True
    return obs, False


def stalled(history: list[float], step: int, cfg: SimulatedOperatorConfig) -> bool:
    """No rise of the detector's running best probability (the world's ``max_metric``) over
    ``cfg.stall_steps`` steps."""
    if step < cfg.min_step or len(history) <= cfg.stall_steps:
        return False
    return history[-1] - history[-1 - cfg.stall_steps] < cfg.min_progress


def run_session(
    policy: Any,
    world: Any,
    store: BranchStore,
    session_id: str,
    seed: int,
    max_steps: int,
    operator: SimulatedOperatorConfig | None,
) -> SessionResult:
    """One rollout from the real env's initial state for ``seed`` in a session world (:mod:`hiwm.worlds`);
    with an operator, its corrections."""
    task_world = world.task_world
    obs = world.reset(seed=seed)
    rec = BranchRecorder(store, world, session_id)
    rec.add(obs, None, SOURCE_POLICY)
    root = store.session(session_id).root_branch
    obs, stall = run_policy(policy, world, rec, obs, max_steps, operator)
    result = SessionResult(session_id, seed)
    result.branches.append(BranchResult(root, "policy", bool(obs.success), world.max_metric, obs.step, obs.step))
    store.label(root, [DETECTOR_SUCCESS if obs.success else DETECTOR_FAILURE])
    if not stall or operator is None:
        return result
    result.failure_state = rec.cursor or ""
    store.label(root, ["failure-prone"])
    base, snapshot = store.rollback(session_id=session_id, steps=operator.rollback_steps)
    for k in range(operator.forks):
        branch = store.fork(base.id, label="corrected")
        obs = world.restore(snapshot)
        rec.cursor = base.id
        expert = task_world.make_expert(operator.noise, seed=1000 * seed + k)
        taken = 0
        while taken < operator.correction_steps and not obs.success and obs.step < max_steps:
            # the world's state: in the world model, its predicted proprio and the probe's reading of its frame
            action = expert.act(task_world.state(obs))
            obs = world.step(action)
            rec.add(obs, action, SOURCE_HUMAN)
            taken += 1
        obs, _ = run_policy(policy, world, rec, obs, max_steps, None)  # handed back
        store.label(branch.id, [DETECTOR_SUCCESS if obs.success else DETECTOR_FAILURE])
        success = bool(obs.success)
        result.branches.append(BranchResult(branch.id, "correction", success, world.max_metric, obs.step, taken))
    return result
