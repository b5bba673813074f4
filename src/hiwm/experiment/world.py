"""The world model as an environment: the same reset/step/Observation interface as :class:`PushTEnv`.

Frames come from the world model; everything else a robot would report (agent position, block
pose, coverage, success) comes from the state probe reading the generated frame, as on the
world-model node. So one rollout loop (``hiwm.policy.evaluate.run_episode``) runs in either world.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hiwm.pusht.env import MAX_STEPS, Observation, PushTEnv


class ModelWorld:
    """A world-model session plus its state probe; initial states come from the real env's seeds."""

    def __init__(self, checkpoint: str | Path, device: str = "cpu", max_steps: int = MAX_STEPS, seed: int = 0) -> None:
        from hiwm.world_model.checkpoint import load
        from hiwm.world_model.session import Session

        _, self.model, self.probe = load(checkpoint, device=device)
        if self.probe is None:
            raise ValueError(f"{checkpoint}: the world model has no state probe; success cannot be judged")
        self.session = Session(self.model, seed=seed)
        self.image_size = self.model.cfg.image_size
        self.max_steps = max_steps
        self._real = PushTEnv(image_size=self.image_size, render=False)
        self._max_coverage = 0.0
        self.last: Observation | None = None

    def initial_state(self, seed: int) -> np.ndarray:
        """The real env's initial state for ``seed`` (so both worlds start from the same states)."""
        return self._real.reset(seed=seed).state

    def reset(self, seed: int | None = None, state: np.ndarray | None = None) -> Observation:
        if state is None:
            state = self.initial_state(0 if seed is None else seed)
        frame = self.session.reset(state=np.asarray(state, dtype=np.float64), seed=seed)
        self._max_coverage = 0.0
        return self._observe(frame)

    def step(self, action: np.ndarray) -> Observation:
        return self._observe(self.session.step(action))

    def snapshot(self) -> bytes:
        return self.session.snapshot()

    def restore(self, data: bytes, max_coverage: float = 0.0) -> Observation:
        """Back to a snapshot; ``max_coverage`` is the episode's best coverage up to that state."""
        self.session.restore(data)
        self._max_coverage = max_coverage
        return self._observe(self.session.frame)

    def _observe(self, frame: np.ndarray) -> Observation:
        from hiwm.world_model.probe import coverage_from_pose

        state = self.probe.predict(frame[None])[0].astype(np.float64)
        coverage = coverage_from_pose(state[2:5])
        self._max_coverage = max(self._max_coverage, coverage)
        step = int(self.session.step_count)
        success = coverage > 0.95
        self.last = Observation(
            image=frame,
            agent_pos=state[:2].copy(),
            agent_vel=np.zeros(2),
            block_pose=state[2:5].copy(),
            state=state,
            coverage=coverage,
            success=success,
            step=step,
            done=success or step >= self.max_steps,
            max_coverage=self._max_coverage,
        )
        return self.last
