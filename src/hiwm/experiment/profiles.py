"""Experiment profiles: how much data, training and evaluation each run of the Hi-WM loop gets."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from hiwm.experiment.rollouts import SimulatedOperatorConfig
from hiwm.paths import shipped_model
from hiwm.tasks import DEFAULT_TASK, get_task
from hiwm.tasks.base import DETECTORS


@dataclass
class Profile:
    name: str
    task: str = DEFAULT_TASK  # the registered task (hiwm tasks) the loop runs on; the profiles are sizes, any task
    backbones: list[str] = field(default_factory=lambda: ["diffusion", "act"])
    # data (expert seeds from 0; world-model extra data and rollout/eval seeds are disjoint ranges)
    demo_episodes: int = 60  # the base policy's limited demonstrations
    wm_noisy_episodes: int = 150  # sloppy and failing expert episodes: the states a weak policy reaches
    wm_noise: float = 1.5
    # sessions of each base policy with the operator in the physics, recorded for the world model: the
    # failure states a policy reaches and the recoveries from them, which expert data lacks (a lab
    # records these on the robot); 0 trains the world model on expert data only
    wm_takeover_sessions: int = 0
    # training budgets (minutes of wall clock on this machine)
    wm_minutes: float = 30.0
    probe_steps: int = 3000  # state probe training after the world model
    probe_calibration: int = 60  # fresh real episodes to fit the probe's success threshold on
    policy_minutes: float = 12.0
    # the world model's success verdict, "probe" or "learned" ("": the task's, Task.loop.detector),
    # and the learned detector's training steps (on the run's real episodes)
    detector: str = ""
    detector_steps: int = 3000  # batches of 64: 16 s for the arm's proprio detector
    # backbone -> a base checkpoint trained elsewhere (`hiwm train policy`), used as is; post-training
    # mixes the corrections with that checkpoint's own training data
    base_policies: dict[str, str] = field(default_factory=dict)
    # a trained world model with its state probe (`hiwm train world-model`), used as is instead of
    # training one here (its data need not be on this machine)
    world_model: str = ""
    # False: the run only post-trains given or shipped models (with_shipped) and refuses to train a
    # world model or a base policy of its own
    trains: bool = True
    finetune_minutes: float = 6.0
    # post-training from a converged checkpoint: its batch size (0) and a gentle rate; the defaults
    # of a fresh training (batch 64, lr 3e-4) took the base ACT from 44 % to 16 % real success in 4 min
    finetune_batch: int = 0
    finetune_lr: float = 1e-4
    # the Hi-WM loop
    rounds: int = 1
    rollouts: int = 60
    # steps of a session or an evaluation episode, at most the task's episode (Profile.for_task); the
    # operator's timings are in steps of such an episode
    max_steps: int = 300
    operator: SimulatedOperatorConfig = field(default_factory=SimulatedOperatorConfig)
    corrections_share: float = 0.25  # share of post-training batches drawn from corrections
    # which corrections are exported, "successful" or "all", and how much of each becomes a training
    # episode (hiwm.branch_cache.export.SEGMENTS): the operator is the expert, so all of its frames,
    # as HG-DAgger trains (the world model's success verdict is too rare and too noisy to filter by)
    keep_corrections: str = "all"
    correction_segment: str = "correction"
    intervention_weight: float = 2.0
    # the closed-loop baseline: the base fine-tuned on its own successful world-model rollouts
    baseline: bool = True
    # the control: the same rounds with the physics as the world (methods "oracle_r<k>"): what the
    # world model's fidelity costs
    oracle: bool = False
    # evaluation: every checkpoint on the same seeds, compared seed by seed (hiwm.stats); 100 seeds
    # give one rate +-10 points; 200 pairs give a difference +-8 where a third of the seeds' outcomes differ
    eval_episodes: int = 200
    eval_first_seed: int = 100_000
    workers: int = 2
    threads: int = 2

    def __post_init__(self) -> None:
        get_task(self.task)  # ValueError naming the known tasks
        if self.wm_takeover_sessions < 0:
            raise ValueError(f"wm_takeover_sessions must be >= 0, got {self.wm_takeover_sessions}")
        if self.keep_corrections not in ("successful", "all"):
            raise ValueError(f"keep_corrections must be 'successful' or 'all', got {self.keep_corrections!r}")
        from hiwm.branch_cache.export import SEGMENTS

        if self.correction_segment not in SEGMENTS:
            raise ValueError(f"correction_segment must be one of {SEGMENTS}, got {self.correction_segment!r}")
        if self.detector not in ("", *DETECTORS):
            raise ValueError(f"detector must be one of {DETECTORS} or '' (the task's), got {self.detector!r}")

    def for_task(self) -> Profile:
        """The profile sized to its task: ``max_steps`` at most the task's episode, the operator's
        step counts (stall, first step, rollback, correction) shrunk in proportion, and the task's
        detector unless one is named. A task whose episodes are as long as ``max_steps`` or longer
        keeps the profile as it is; a sized profile sizes to itself."""
        task = get_task(self.task)
        steps = min(self.max_steps, task.episode_steps)
        op = self.operator
        if steps < self.max_steps:

            def scaled(n: int) -> int:
                return max(1, round(n * steps / self.max_steps))

            op = dataclasses.replace(
                op,
                stall_steps=scaled(op.stall_steps),
                min_step=scaled(op.min_step),
                rollback_steps=scaled(op.rollback_steps),
                correction_steps=scaled(op.correction_steps),
            )
        return self.replace(max_steps=steps, operator=op, detector=self.detector or task.loop.detector)

    def with_shipped(self) -> Profile:
        """The profile on the models hiwm ships for its task (:func:`hiwm.paths.shipped_model`): its
        world model and the base policy of each backbone, where one is shipped and none is given."""
        world = self.world_model or str(shipped_model(self.task, "world_model") or "")
        bases = {b: str(path) for b in self.backbones if (path := shipped_model(self.task, b))}
        return self.replace(world_model=world, base_policies={**bases, **self.base_policies})

    def untrained_parts(self) -> list[str]:
        """What the run would have to train but may not (``trains`` False): empty when it may."""
        if self.trains:
            return []
        missing = [] if self.world_model else ["world_model"]
        return missing + [b for b in self.backbones if b not in self.base_policies]

    def replace(self, **changes: object) -> Profile:
        return dataclasses.replace(self, **changes)


PROFILES = {
    # the README's main command: one Hi-WM round on the models hiwm ships for the task (it trains
    # neither a world model nor a base policy): sessions with the simulated operator, the corrections
    # exported, a short post-training, both checkpoints in both worlds on the same seeds
    "demo": Profile(
        name="demo",
        backbones=["act"],
        trains=False,
        rollouts=20,
        finetune_minutes=2.0,
        baseline=False,
        eval_episodes=50,
    ),
    # the whole loop end to end on a 2-core CPU in about 20 minutes: small, one backbone
    "quick": Profile(
        name="quick",
        backbones=["act"],
        demo_episodes=30,
        wm_noisy_episodes=40,
        wm_minutes=4.0,
        probe_steps=500,
        probe_calibration=20,
        policy_minutes=2.5,
        finetune_minutes=1.5,
        rollouts=10,
        max_steps=200,
        operator=SimulatedOperatorConfig(forks=2, correction_steps=20),
        eval_episodes=20,
    ),
    # the table: both backbones, 200 held-out episodes per checkpoint; three rounds in each world give
    # each backbone eight checkpoints (base, three Hi-WM rounds, baseline, three rounds of the physics
    # oracle): sixteen for the world-model/real correlation. 30 sessions of up to 4 x 300 world-model
    # steps per round (8-10 min) and 4-minute fine-tunes keep one backbone near two hours of this
    # 2-core CPU (given its base policy and world model)
    "full": Profile(name="full", rounds=3, rollouts=30, finetune_minutes=4.0, oracle=True),
    # CI's smoke of the same path: minutes, results meaningless
    "smoke": Profile(
        name="smoke",
        backbones=["act"],
        demo_episodes=3,
        wm_noisy_episodes=2,
        wm_minutes=0.3,
        probe_steps=20,
        probe_calibration=3,
        detector_steps=20,
        policy_minutes=0.3,
        finetune_minutes=0.2,
        rollouts=2,
        max_steps=40,
        operator=SimulatedOperatorConfig(stall_steps=5, min_step=5, rollback_steps=3, forks=2, correction_steps=5),
        eval_episodes=2,
        oracle=True,
        wm_takeover_sessions=1,
        workers=1,
        threads=1,
    ),
}
