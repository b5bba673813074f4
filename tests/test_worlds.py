"""Session worlds of any task: a task's physics (RealWorld) and a world model of it (ModelWorld), with
snapshots, restores and the Hi-WM rollout session (policy, simulated operator, branch cache) in either."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hiwm.branch_cache.store import SOURCE_HUMAN, BranchStore
from hiwm.experiment.rollouts import SimulatedOperatorConfig, run_session
from hiwm.tasks import get_task
from hiwm.tasks.world import load_world
from hiwm.worlds import RealWorld

torch.set_num_threads(1)
ARM = get_task("so101_pick")


def test_the_arm_physics_snapshots_its_state_and_goes_on_from_it():
    world = RealWorld("so101_pick", image_size=32)
    assert world.task_world.task is ARM
    expert = world.task_world.make_expert(0.0, seed=1)
    obs = world.reset(seed=3)
    for _ in range(12):
        obs = world.step(expert.act(obs.state))
    snap, at, best = world.snapshot(), obs, world.max_metric
    doc = json.loads(snap)
    assert len(doc["state"]) == len(ARM.observations.state) and doc["step"] == 12
    for _ in range(5):
        world.step(np.zeros(6))
    back = world.restore(snap)
    assert back.step == 12 and world.max_metric == best
    np.testing.assert_allclose(back.state, at.state, atol=1e-9)
    assert back.lift == pytest.approx(at.lift, abs=1e-9)  # measured from the table, as in the episode
    assert back.images["front"].shape == (32, 32, 3)
    assert world.step(at.joints).step == 13
    assert RealWorld.state_of(snap).tolist() == doc["state"]
    with pytest.raises(ValueError, match="not a RealWorld snapshot"):
        world.restore(b"{}")


def test_the_default_tasks_physics_keeps_its_snapshot_layout():
    world = RealWorld()
    obs = world.reset(seed=2)
    obs = world.step(obs.agent_pos + 10.0)
    doc = json.loads(world.snapshot())
    assert doc == {"state": obs.state.tolist(), "step": 1, "max_coverage": obs.max_coverage}
    assert world.max_metric == obs.max_coverage


class HoldPolicy:
    """A real, if lazy, policy: it commands the joints where they are, two rows a chunk."""

    def reset(self) -> None:
        pass

    def act(self, observation: dict) -> np.ndarray:
        return np.repeat(np.asarray(observation["state"], dtype=np.float64)[None], 2, axis=0)


def arm_checkpoint(path, size: int = 32) -> None:
    from hiwm.world_model import checkpoint as ckpt_io
    from hiwm.world_model.config import ModelConfig, ProbeConfig
    from hiwm.world_model.model import WorldModel
    from hiwm.world_model.probe import StateProbe

    sizes = {"latent_channels": 4, "enc_channels": (8, 8, 8), "dyn_channels": 8, "dyn_blocks": 1,
             "dec_channels": (8, 8, 8)}  # fmt: skip
    iface = load_world(ARM).model_interface()
    cfg = ModelConfig(**{**sizes, **iface, "cameras": [["front", size, size]], "task": ARM.name})
    torch.manual_seed(0)
    probe = StateProbe(ProbeConfig(image_size=size, channels=(4, 4, 4, 4), hidden=8, task=ARM.name))
    probe.cfg.success_threshold = 1.0  # a lift of a metre: never, so the episode runs on
    ckpt_io.save(path, ckpt_io.Checkpoint(cfg, probe=probe.cfg), WorldModel(cfg), probe)


def test_a_rollout_session_with_corrections_in_a_world_model_of_the_arm(tmp_path):
    from hiwm.world_model.world import ModelWorld

    arm_checkpoint(tmp_path / "wm")
    with pytest.raises(ValueError, match="not 'pusht'"):
        ModelWorld(tmp_path / "wm", task="pusht")
    world = ModelWorld(tmp_path / "wm", max_steps=12)
    operator = SimulatedOperatorConfig(stall_steps=2, min_progress=1.0, min_step=3, rollback_steps=2, forks=2,
                                       correction_steps=3)  # fmt: skip
    with BranchStore(tmp_path / "cache.db") as store:
        result = run_session(HoldPolicy(), world, store, "s", 7, 12, operator)
        assert result.failure_state and len(result.corrections) == 2
        corrected = [b for b in store.branches() if "corrected" in b.labels]
        nodes = store.trajectory(corrected[0].id)
        human = [n for n in nodes if n.source == SOURCE_HUMAN]
        assert len(human) == 3 and all(len(n.state) == 6 and len(n.action) == 6 for n in human)
        assert nodes[0].step == 0 and nodes[-1].step <= 12
