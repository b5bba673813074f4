"""The arm task end to end on real MuJoCo physics and real files: collect, verify, train, evaluate.

The SO-101 pick task records through its task description (one video per camera, joint names in
the features); ACT and Diffusion train on its 6-D joint actions with proprio and one or two cameras,
without Push-T's state head or relative action frame; evaluation runs in the arm's own env.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hiwm.checkpoints import load_tensors
from hiwm.cli.main import main
from hiwm.data import LeRobotDataset, LeRobotDatasetWriter, verify
from hiwm.data.bag import bag_topics, read_bag
from hiwm.policy import ModelPolicy, build_model, load_model, save_checkpoint
from hiwm.policy.checkpoint import task_model_config
from hiwm.tasks import DEFAULT_TASK, get_task
from hiwm.tasks.world import load_world

TASK = get_task("so101_pick")
JOINTS = list(TASK.action.names)
TINY_ACT = {"image_size": 24, "crop": 22, "channels": [8, 16], "dim": 32, "heads": 2, "ff_dim": 64,
            "enc_layers": 1, "dec_layers": 1, "vae_layers": 1, "latent_dim": 4, "horizon": 6}  # fmt: skip
TINY_DIFFUSION = {"image_size": 24, "crop": 22, "channels": [8, 16], "keypoints": 8, "feature_dim": 16,
                  "down_dims": [16, 32], "step_embed_dim": 16, "horizon": 8, "n_action_steps": 4,
                  "train_steps": 20, "inference_steps": 4}  # fmt: skip


@pytest.fixture(scope="module")
def arm_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("arm")
    argv = ["collect", "--task", "so101_pick", "--episodes", "4", "--seed", "5", "--workers", "1", "-q"]
    assert main([*argv, "--out", str(root / "ds"), "--bag", str(root / "bag")]) == 0
    return root


@pytest.fixture(scope="module")
def two_cameras(arm_data):
    """The arm episodes with a second (mirrored) camera: a two-camera dataset."""
    src = LeRobotDataset(arm_data / "ds")
    features = dict(src.features)
    features["observation.images.side"] = features["observation.images.front"]
    out = arm_data / "two"
    with LeRobotDatasetWriter(out, fps=src.fps, features=features, robot_type=TASK.name) as writer:
        for ep in src.iter_episodes():
            for t in range(len(ep["action"])):
                frame = {k: ep[k][t] for k in writer.user_features if k != "observation.images.side"}
                frame["observation.images.side"] = ep["observation.images.front"][t][:, ::-1]
                writer.add_frame(frame)
            writer.save_episode(src.tasks[0])
    return out


def test_collect_records_the_arm_through_its_task(arm_data):
    ds = LeRobotDataset(arm_data / "ds")
    features = ds.features
    report = verify(arm_data / "ds")
    assert report.ok and report.episodes == 4, report.text()
    assert main(["dataset", "verify", str(arm_data / "ds"), "-q"]) == 0
    # one video per camera, named as the task names them, at the camera's size
    cams = [c.name for c in TASK.cameras]
    assert [k for k, f in features.items() if f["dtype"] == "video"] == [f"observation.images.{c}" for c in cams]
    videos = sorted(p.name for p in (arm_data / "ds" / "videos").iterdir())
    assert videos == sorted(f"observation.images.{c}" for c in cams)
    assert features["observation.images.front"]["shape"] == [TASK.cameras[0].height, TASK.cameras[0].width, 3]
    assert features["observation.state"]["names"] == list(TASK.observations.proprio)
    assert features["action"]["names"] == JOINTS and features["action"]["shape"] == [6]
    assert features["observation.environment_state"]["names"] == list(TASK.observations.state)
    assert "next.lift" in features and ds.info["robot_type"] == "so101_pick"
    ep = ds.episode(0)
    assert not ep["intervention"].any() and (ep["action.source"] == 2).all()  # scripted
    assert ep["next.success"][-1] and ep["next.done"][-1] and not ep["next.done"][:-1].any()
    assert ep["observation.images.front"].shape[1:] == (128, 128, 3)
    # the first frame's proprio is the env's state at reset from the same seed
    env = load_world(TASK).make_env()
    try:
        np.testing.assert_allclose(ep["observation.state"][0], env.reset(seed=5).joints, atol=1e-6)
    finally:
        env.close()
    assert ds.tasks == [TASK.description]


def test_collect_bag_carries_the_arm_contract(arm_data):
    meta = bag_topics(arm_data / "bag")["topics"]
    assert set(meta) == {"/" + t for t in load_world(TASK).topics()}
    assert "/camera/front/color/image_raw" in meta
    commands = [m.decode() for m in read_bag(arm_data / "bag", ["/robot/command"])]
    frames = LeRobotDataset(arm_data / "ds").num_frames
    assert len(commands) == frames and all(c.action_dim == 6 and c.horizon == 1 for c in commands)
    state = next(read_bag(arm_data / "bag", ["/robot/state"])).decode()
    assert list(state.name) == JOINTS


def test_unknown_task_is_refused_with_the_known_ones(tmp_path, capsys):
    from hiwm.data.collect import CollectConfig

    with pytest.raises(ValueError, match="so101_pick"):
        CollectConfig(task="no_such_task")
    with pytest.raises(SystemExit):
        main(["collect", "--task", "no_such_task", "--out", str(tmp_path / "x")])
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(("backbone", "tiny"), [("act", TINY_ACT), ("diffusion", TINY_DIFFUSION)])
def test_train_and_eval_on_the_arm(arm_data, tmp_path, backbone, tiny):
    out = tmp_path / backbone
    argv = ["train", "policy", "--task", "so101_pick", "--backbone", backbone, "--data", str(arm_data / "ds"),
            "--out", str(out), "--steps", "3", "--batch-size", "4", "--val-every", "3", "--val-fraction", "0.25",
            "--threads", "1", "--model", json.dumps(tiny)]  # fmt: skip
    assert main(argv) == 0
    config = json.loads((out / "config.json").read_text())
    model = config["model"]
    assert config["train"]["task"] == "so101_pick"
    assert (model["state_dim"], model["action_dim"], model["cameras"]) == (6, 6, ["front"])
    assert not model["state_head"] and not model["relative_actions"]  # Push-T's options, off for the arm
    assert model["conditioning"] == {"act": "image", "diffusion": "keypoints"}[backbone]
    assert not [k for k in load_tensors(out / "model.safetensors") if k.startswith("encoder.head")]  # no state head
    # evaluation in the arm's env, the task from the checkpoint, held-out seeds
    ev = tmp_path / f"eval_{backbone}"
    argv = ["eval", "--checkpoint", str(out), "--seeds", "900:902", "--workers", "1", "--videos", "1", "--out", str(ev)]
    assert main(argv) == 0
    summary = json.loads((ev / "summary.json").read_text())
    assert summary["task"] == "so101_pick" and summary["episodes"] == 2
    low, high = summary["success_ci95"]
    assert 0 <= low <= summary["success_rate"] <= high <= 1
    rows = json.loads((ev / "episodes.json").read_text())
    assert [r["seed"] for r in rows] == [900, 901] and all(1 <= r["steps"] <= TASK.episode_steps for r in rows)
    assert {"max_lift", "final_lift"} <= set(rows[0]) and (ev / "lift.png").exists() and (ev / "episodes.mp4").exists()
    if backbone == "act":  # a paired comparison in the arm's world: the same seeds, per-seed outcomes under its metric
        cmp = tmp_path / "compare"
        argv = ["eval", "--checkpoint", str(out), "--compare", str(out), "--task", "so101_pick", "--seeds", "900:902",
                "--workers", "1", "--videos", "0", "--out", str(cmp)]  # fmt: skip
        assert main(argv) == 0
        result = json.loads((cmp / "comparison.json").read_text())
        assert result["seeds"] == [900, 901] and result["paired"][0]["real"]["diff"] == 0.0
        per_seed = result["policies"][1]["real"]["per_seed"]
        assert [r["seed"] for r in per_seed] == [900, 901] and {"success", "max_lift"} <= set(per_seed[0])


def test_two_cameras_checkpoint_round_trip(two_cameras, tmp_path):
    features = LeRobotDataset(two_cameras).features
    assert verify(two_cameras).ok
    for backbone, tiny in (("act", TINY_ACT), ("diffusion", TINY_DIFFUSION)):
        out = tmp_path / backbone
        argv = ["train", "policy", "--task", "so101_pick", "--backbone", backbone, "--data", str(two_cameras),
                "--out", str(out), "--steps", "2", "--batch-size", "4", "--val-every", "2", "--threads", "1",
                "--model", json.dumps(tiny)]  # fmt: skip
        assert main(argv) == 0
        model = load_model(out)
        assert model.cfg.cameras == ("front", "side") and model.cfg.action_dim == 6
        assert task_model_config(backbone, TASK, features)["cameras"] == ["front", "side"]
        # N-D shapes survive the safetensors round trip bit for bit
        save_checkpoint(tmp_path / f"{backbone}_copy", model)
        again = load_model(tmp_path / f"{backbone}_copy")
        s = model.cfg.image_size
        images = torch.randint(0, 256, (1, model.cfg.n_obs_steps, 6, s, s), dtype=torch.uint8)
        states = torch.randn(1, model.cfg.n_obs_steps, 6)
        a = model.predict(images, states, generator=torch.Generator().manual_seed(0))
        b = again.predict(images, states, generator=torch.Generator().manual_seed(0))
        assert a.shape == (1, model.cfg.horizon, 6) and torch.equal(a, b)
        # the runtime: every camera by name; a missing camera or a wrong proprio length is refused
        policy = ModelPolicy(model)
        img = np.zeros((128, 128, 3), np.uint8)
        chunk = policy.act({"images": {"front": img, "side": img}, "state": np.zeros(6)})
        assert chunk.shape[1] == 6 and np.all(np.isfinite(chunk))
        with pytest.raises(ValueError, match="side"):
            policy.act({"images": {"front": img}, "state": np.zeros(6)})
        with pytest.raises(ValueError, match="6 finite"):
            policy.act({"images": {"front": img, "side": img}, "state": np.zeros(2)})


def test_task_options_decide_the_state_head_and_action_frame(arm_data):
    pusht = get_task(DEFAULT_TASK)
    push = task_model_config("act", pusht, load_world(pusht).features())
    assert push["state_head"] and push["relative_actions"] and "conditioning" not in push
    assert push["cameras"] == ["image"] and (push["state_dim"], push["action_dim"]) == (2, 2)
    arm = LeRobotDataset(arm_data / "ds").features
    with pytest.raises(ValueError, match="6 values"):
        task_model_config("act", pusht, arm)  # an arm dataset is not a Push-T one
    overridden = task_model_config("diffusion", TASK, arm, {"relative_actions": True})
    assert overridden["relative_actions"] and build_model("diffusion", {**overridden, **TINY_DIFFUSION})
    with pytest.raises(ValueError, match="state head"):
        build_model("act", {**task_model_config("act", TASK, arm), "conditioning": "state"})


def test_eval_saturates_actions_at_the_task_limits():
    from hiwm.worlds import run_episode

    class Overshoot:  # a policy past every joint limit (the arm's env refuses such targets)
        def reset(self) -> None:
            pass

        def act(self, observation: dict) -> np.ndarray:
            assert observation["images"]["front"].shape == (128, 128, 3) and observation["state"].shape == (6,)
            return np.asarray(TASK.action.high)[None] + 0.5

    world = load_world(TASK)
    env = world.make_env()
    try:
        with pytest.raises(ValueError, match="out of joint limits"):
            env.reset(seed=3)
            env.step(np.asarray(TASK.action.high) + 0.5)
        row = run_episode(Overshoot(), env, seed=3, max_steps=3, world=world)
    finally:
        env.close()
    assert row["steps"] == 3 and not row["success"] and len(row["lift"]) == 4


def test_the_arm_experts_noise_knobs_and_clean_labels():
    from hiwm.data.collect import close_envs, expert_episode

    try:
        clean = expert_episode(seed=8, task="so101_pick", max_steps=8).frames
        taken = expert_episode(seed=8, noise=1.0, task="so101_pick", max_steps=8).frames
        dart = expert_episode(seed=8, noise=1.0, task="so101_pick", max_steps=8, labels="clean").frames
    finally:
        close_envs()
    assert len(clean["action"]) == 8 and clean["action"].shape[1] == 6
    assert not np.allclose(taken["action"], clean["action"])  # the noise changes what is done
    # the same noisy run: only the recorded action differs (the clean expert's at each visited state)
    np.testing.assert_allclose(dart["observation.environment_state"], taken["observation.environment_state"])
    assert not np.allclose(dart["action"], taken["action"])


def test_push_t_recordings_keep_their_layout():
    from hiwm.tasks.pusht import PUSHT_TASK, pusht_features

    world = load_world(get_task(DEFAULT_TASK))
    assert world.features() == pusht_features(96) and world.instruction == PUSHT_TASK
