"""`hiwm train world-model` end to end on a tiny real dataset: validation, probe, checkpoint, resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hiwm.cli.main import main
from hiwm.data.collect import CollectConfig, collect
from hiwm.world_model import checkpoint as ckpt_io
from hiwm.world_model.session import Session

torch.set_num_threads(1)
TINY = json.dumps(
    {"latent_channels": 4, "enc_channels": [8, 8, 8], "dyn_channels": 8, "dyn_blocks": 1, "dec_channels": [8, 8, 8]}
)


def test_train_cli_validates_checkpoints_and_resumes(tmp_path):
    collect(CollectConfig(episodes=3, max_steps=25, seed=0, noise=1.0), tmp_path / "ds")
    out = tmp_path / "run"
    common = ["train", "world-model", "--data", str(tmp_path / "ds"), "--out", str(out), "--model", TINY]
    small = ["--batch", "2", "--rollout", "2", "--horizons", "1", "5", "--val-windows", "2"]
    small += ["--probe-steps", "3", "--probe-calibration", "3"]
    assert main([*common, *small, "--steps", "4", "--val-every", "2", "--checkpoint-every", "2"]) == 0
    saved, doc = ckpt_io.read_config(out)
    assert saved.step == 4 and saved.probe is not None and "optimizer" in doc
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [2, 4]
    assert all(0 < x["psnr@1"] < 100 and -1 <= x["ssim@5"] <= 1 for x in lines)
    assert set(saved.metrics["probe"]) >= {"agent_px", "block_px", "angle_deg", "calibration"}
    calibration = saved.metrics["probe"]["calibration"]
    assert calibration["episodes"] == 3 and saved.probe.success_threshold == calibration["threshold"]
    assert 0 < calibration["threshold"] < 1 and 0 <= calibration["agreement"] <= 1
    assert (out / "rollout.png").stat().st_size > 0
    _, model, probe = ckpt_io.load(out)
    assert probe is not None
    session = Session(model)
    session.reset(state=[100.0, 100.0, 300.0, 300.0, 0.5])
    assert session.step([120.0, 110.0]).shape == (96, 96, 3)

    assert main([*common, *small, "--steps", "6", "--val-every", "2", "--resume"]) == 0  # two more steps
    resumed, _ = ckpt_io.read_config(out)
    assert resumed.step == 6
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [2, 4, 6]

    before = (out / "model.safetensors").read_bytes()
    assert main([*common, "--probe-only", "--probe-steps", "2"]) == 0  # a new probe, the same model
    again, _ = ckpt_io.read_config(out)
    assert again.step == 6 and again.probe is not None and (out / "model.safetensors").read_bytes() == before


def _params(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def _changed(before: list[torch.Tensor], module: torch.nn.Module) -> bool:
    return any(not torch.equal(a, b) for a, b in zip(before, module.parameters(), strict=True))


def test_phases_train_only_their_part_and_a_run_can_start_from_another_checkpoint(tmp_path):
    from hiwm.training import Ranks
    from hiwm.world_model.config import ModelConfig, WorldModelTrainConfig
    from hiwm.world_model.data import load_episodes
    from hiwm.world_model.model import WorldModel
    from hiwm.world_model.train import train_autoencoder, train_latent_dynamics

    collect(CollectConfig(episodes=3, max_steps=25, seed=0, noise=1.0), tmp_path / "ds")
    episodes = load_episodes([tmp_path / "ds"], progress=False)
    # only some episodes, numbered across the datasets in order: the same episodes, the rest not read
    some = load_episodes([tmp_path / "ds", tmp_path / "ds"], progress=False, only={1, 3})
    assert [e.source for e in some] == [episodes[1].source, f"{tmp_path / 'ds'}#0"]
    np.testing.assert_array_equal(some[0].frames, episodes[1].frames)
    model = WorldModel(ModelConfig(**json.loads(TINY)))
    cfg = WorldModelTrainConfig(
        ae_minutes=0.01, ae_batch=2, latent_minutes=0.01, latent_batch=2, latent_rollout=3, warmup=1
    )
    enc, dec, dyn = _params(model.encoder), _params(model.decoder), _params(model.dynamics)
    done = train_autoencoder(model, episodes, cfg, Ranks(), progress=False)
    assert done["steps"] > 0 and done["loss"] == done["loss"]  # not NaN
    assert _changed(enc, model.encoder) and _changed(dec, model.decoder) and not _changed(dyn, model.dynamics)
    enc, dec = _params(model.encoder), _params(model.decoder)
    done = train_latent_dynamics(model, episodes, cfg, Ranks(), progress=False)
    assert done["steps"] > 0
    assert _changed(dyn, model.dynamics) and not _changed(enc, model.encoder) and not _changed(dec, model.decoder)

    # the CLI: a first run with its probe, then phases only, starting from it and keeping its probe
    first = tmp_path / "first"
    common = ["train", "world-model", "--data", str(tmp_path / "ds"), "--model", TINY, "--horizons", "1", "5"]
    small = ["--batch", "2", "--rollout", "2", "--val-windows", "2", "--probe-calibration", "0"]
    assert main([*common, *small, "--out", str(first), "--steps", "2", "--probe-steps", "2"]) == 0
    second = tmp_path / "second"
    phases = ["--ae-minutes", "0.01", "--ae-batch", "2", "--latent-minutes", "0.01", "--latent-batch", "2"]
    args = [*common, *small, "--out", str(second), "--init", str(first), "--steps", "0", "--probe-steps", "0"]
    assert main([*args, *phases, "--latent-rollout", "3"]) == 0
    saved, _ = ckpt_io.read_config(second)
    assert saved.metrics["autoencoder"]["steps"] > 0 and saved.metrics["latent_dynamics"]["steps"] > 0
    assert saved.probe == ckpt_io.read_config(first)[0].probe
    assert (second / "probe.safetensors").read_bytes() == (first / "probe.safetensors").read_bytes()
    assert (second / "model.safetensors").read_bytes() != (first / "model.safetensors").read_bytes()
    lines = [json.loads(x) for x in (second / "metrics.jsonl").read_text().splitlines()]
    assert [x.get("phase") for x in lines] == ["autoencoder", "latent_dynamics"]

    other = json.dumps({**json.loads(TINY), "dyn_blocks": 2})
    bad = ["train", "world-model", "--data", str(tmp_path / "ds"), "--model", other, "--out", str(tmp_path / "bad")]
    with pytest.raises(SystemExit, match="differs"):  # --debug: the error itself, not its one-line report
        main(["--debug", *bad, "--init", str(first), "--steps", "0", "--probe-steps", "0"])


def test_open_loop_reports_how_far_the_probe_reads_the_predicted_agent_and_block(tmp_path):
    import dataclasses

    from hiwm.world_model.data import load_episodes
    from hiwm.world_model.train import open_loop

    collect(CollectConfig(episodes=2, max_steps=20, seed=0, noise=1.0), tmp_path / "ds")
    out = tmp_path / "run"
    args = ["train", "world-model", "--data", str(tmp_path / "ds"), "--out", str(out), "--model", TINY, "--steps", "2"]
    assert main([*args, "--batch", "2", "--rollout", "2", "--probe-steps", "2", "--probe-calibration", "0"]) == 0
    _, model, probe = ckpt_io.load(out)
    episodes = load_episodes([tmp_path / "ds"], progress=False)
    cpu = torch.device("cpu")
    plain = open_loop(model, episodes, (1, 5), 3, 0, cpu)
    read = open_loop(model, episodes, (1, 5), 3, 0, cpu, probe)
    assert "agent_px@1" not in plain and plain["psnr@5"] == read["psnr@5"]
    # the agent's columns and the block's are read separately: moving the recorded agent moves only its error
    moved = [dataclasses.replace(e, states=e.states + np.array([200.0, 200.0, 0.0, 0.0, 0.0])) for e in episodes]
    shifted = open_loop(model, moved, (1, 5), 3, 0, cpu, probe)
    for h in (1, 5):
        assert read[f"agent_px@{h}"] >= 0 and shifted[f"block_px@{h}"] == read[f"block_px@{h}"]
        assert shifted[f"agent_px@{h}"] != read[f"agent_px@{h}"]


def _arm_dataset(root, episodes: int = 3, steps: int = 14) -> None:
    """A 7-D arm-shaped recording: two cameras (a block drawn where the first joints point), proprio, actions."""
    from hiwm.data.lerobot import LeRobotDatasetWriter

    def video(h: int, w: int) -> dict:
        return {"dtype": "video", "shape": [h, w, 3], "names": ["height", "width", "channels"]}

    vector = {"dtype": "float32", "shape": [7], "names": None}
    features = {
        "observation.images.front": video(32, 32),
        "observation.images.wrist": video(16, 24),
        "observation.state": vector,
        "action": vector,
    }
    writer = LeRobotDatasetWriter(root, fps=10, features=features)
    rng = np.random.default_rng(0)
    for _ in range(episodes):
        q = rng.uniform(-1, 1, 7)
        for _ in range(steps):
            action = np.clip(q + rng.normal(0, 0.3, 7), -3, 3)
            front = np.full((32, 32, 3), 40, np.uint8)
            r, c = int(16 + 4 * q[0]), int(16 + 4 * q[1])
            front[r - 3 : r + 3, c - 3 : c + 3] = 220
            wrist = np.full((16, 24, 3), int(120 + 30 * np.tanh(q[2])), np.uint8)
            state, act = q.astype(np.float32), action.astype(np.float32)
            frame = {"observation.images.front": front, "observation.images.wrist": wrist}
            writer.add_frame({**frame, "observation.state": state, "action": act})
            q = q + 0.5 * (action - q)  # the joints follow the commanded positions
        writer.save_episode(task="reach")
    writer.close()


def test_training_on_an_arm_shaped_dataset_predicts_proprio_and_every_camera(tmp_path):
    from hiwm.world_model.config import WorldModelTrainConfig, preset
    from hiwm.world_model.train import train

    _arm_dataset(tmp_path / "arm")
    arm = {
        **json.loads(TINY),
        "action_dim": 7, "action_low": [-3] * 7, "action_high": [3] * 7, "action_conditioning": "mlp",
        "proprio_dim": 7, "proprio_low": [-3] * 7, "proprio_high": [3] * 7,
        "cameras": [["front", 32, 32], ["wrist", 16, 24]],
    }  # fmt: skip
    out = tmp_path / "run"
    cfg = WorldModelTrainConfig(steps=3, batch=2, rollout=2, horizons=(1, 5), val_every=3, checkpoint_every=3)
    train([tmp_path / "arm"], out, preset("small", **arm), cfg, progress=False)
    saved, _ = ckpt_io.read_config(out)
    assert saved.step == 3 and saved.probe is None  # no probe asked for
    for h in (1, 5):
        assert saved.metrics[f"proprio_mae@{h}"] >= 0 and saved.metrics[f"copy_proprio_mae@{h}"] > 0
        assert 0 < saved.metrics[f"psnr@{h}"] < 100
    _, model, _ = ckpt_io.load(out)
    assert model.cfg.cameras == (("front", 32, 32), ("wrist", 16, 24)) and len(model.decoder.backgrounds()) == 2
    session = Session(model)
    session.reset(frames={"front": np.zeros((32, 32, 3), np.uint8), "wrist": np.zeros((16, 24, 3), np.uint8)},
                  proprio=[0.0] * 7)  # fmt: skip
    assert session.step([0.5] * 7).shape == (32, 32, 3) and session.views["wrist"].shape == (16, 24, 3)
    assert session.proprio.shape == (7,)
    wrong = {**arm, "proprio_dim": 6, "proprio_low": [-3] * 6, "proprio_high": [3] * 6}
    with pytest.raises(ValueError, match=r"observation\.state has 7 values"):
        train([tmp_path / "arm"], tmp_path / "bad", preset("small", **wrong), cfg, progress=False)
    with pytest.raises(ValueError, match="camera 'side'"):
        train(
            [tmp_path / "arm"],
            tmp_path / "bad",
            preset("small", **{**arm, "cameras": [["side", 32, 32]]}),
            cfg,
            progress=False,
        )
    # the command line trains a world of a task: an interface that is not the task's is refused
    bad = ["--debug", "train", "world-model", "--data", str(tmp_path / "arm"), "--out", str(tmp_path / "bad")]
    with pytest.raises(SystemExit, match="needs its interface: action_dim 7"):
        main([*bad, "--model", json.dumps(arm), "--steps", "1"])
    with pytest.raises(SystemExit, match="not --task"):
        main([*bad, "--model", json.dumps({"task": "so101_pick"}), "--steps", "1"])


@pytest.fixture(scope="module")
def so101_data(tmp_path_factory):
    """Two short scripted SO-101 episodes at 32x32 (real MuJoCo): frames, joints, the cube's pose."""
    root = tmp_path_factory.mktemp("so101") / "ds"
    collect(CollectConfig(episodes=2, max_steps=14, seed=0, task="so101_pick", image_size=32), root)
    return root


def test_train_cli_makes_a_world_model_of_the_arm_task_with_its_state_probe(so101_data, tmp_path):
    from hiwm.tasks import get_task
    from hiwm.tasks.chunks import BadCommand
    from hiwm.world_model.sim import WorldModelSim

    task = get_task("so101_pick")
    out = tmp_path / "run"
    args = ["train", "world-model", "--task", "so101_pick", "--data", str(so101_data), "--out", str(out)]
    small = ["--model", TINY, "--steps", "2", "--batch", "2", "--rollout", "2", "--horizons", "1", "3"]
    assert main([*args, *small, "--val-windows", "2", "--probe-steps", "3", "--probe-calibration", "2"]) == 0
    saved, _ = ckpt_io.read_config(out)
    # the task's interface, the camera at the size the dataset records
    m = saved.model
    assert (m.task, m.action_dim, m.proprio_dim, m.action_conditioning) == ("so101_pick", 6, 6, "mlp")
    assert m.cameras == (("front", 32, 32),) and m.low == task.action.low
    assert saved.probe is not None and (saved.probe.task, saved.probe.image_size) == ("so101_pick", 32)
    assert set(saved.metrics["probe"]) >= {"joints_rad", "cube_m", "calibration"}
    assert saved.metrics["probe"]["calibration"]["episodes"] == 2

    sim = WorldModelSim(out)  # the robot core serves the checkpoint's task
    first = sim.reset(seed=4)
    obs = first.obs
    assert type(obs).__name__ == "ArmObservation" and obs.images["front"].shape == (32, 32, 3)
    assert obs.state.shape == (13,) and obs.joints.shape == (6,) and sim.max_steps == task.episode_steps
    plan = np.random.default_rng(0).uniform(-0.5, 0.5, size=(4, 6))
    steps = sim.command(4, 6, plan.reshape(-1)).steps
    assert [s.obs.step for s in steps] == [1, 2, 3, 4] and np.allclose(steps[-1].handle.action, plan[-1])
    sim.restore(steps[1].handle.snapshot_id)
    again = sim.command(2, 6, plan[2:].reshape(-1)).steps
    assert [s.handle.snapshot_id for s in again] == [s.handle.snapshot_id for s in steps[2:]]
    assert np.array_equal(again[-1].obs.images["front"], steps[-1].obs.images["front"])
    with pytest.raises(BadCommand, match="action_dim must be 6"):
        sim.command(1, 2, [100.0, 100.0])
    with pytest.raises(ValueError, match="of task 'so101_pick', not 'pusht'"):
        WorldModelSim(out, task="pusht")
    assert main([*args, "--probe-only", "--probe-steps", "2", "--probe-calibration", "0"]) == 0  # the same task
