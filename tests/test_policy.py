"""Policies end to end on real files and real physics: train from the CLI, resume, evaluate; the pieces."""

from __future__ import annotations

import csv
import itertools
import json
import math

import numpy as np
import pytest
import torch
from test_policy_server import TINY

from hiwm.cli.main import main
from hiwm.data.collect import CollectConfig, collect
from hiwm.policy import CheckpointError, ModelPolicy, build_model, load_model, load_policy, save_checkpoint
from hiwm.policy.data import FrameStore, MixedSampler, action_offsets, gather, parse_data_spec
from hiwm.policy.evaluate import EvalConfig, evaluate, parse_seeds, wilson

TINY_ACT = {
    "image_size": 16,
    "crop": 14,
    "channels": [8, 16],
    "dim": 32,
    "heads": 2,
    "ff_dim": 64,
    "enc_layers": 1,
    "dec_layers": 1,
    "vae_layers": 1,
    "latent_dim": 4,
    "horizon": 6,
}
TINY_DIFFUSION = TINY  # the policy server tests' tiny diffusion config


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("demos")
    collect(CollectConfig(episodes=3, seed=1000, max_steps=12), root / "a")
    collect(CollectConfig(episodes=2, seed=2000, max_steps=12), root / "b")
    return root / "a", root / "b"


def records(out):
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def test_train_act_from_cli_mixed_then_resume_then_eval(datasets, tmp_path):
    a, b = datasets
    out = tmp_path / "act"
    argv = ["train", "policy", "--backbone", "act", "--data", f"{a}:0.7", f"{b}:0.3", "--out", str(out),
            "--batch-size", "4", "--val-every", "2", "--val-fraction", "0.34", "--threads", "1",
            "--model", json.dumps(TINY_ACT)]  # fmt: skip
    assert main([*argv, "--steps", "4"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["backbone"] == "act" and config["step"] == 4
    assert [d["ratio"] for d in config["train"]["data"]] == [0.7, 0.3]
    assert config["train"]["val_episodes"] == 2  # one held out of each dataset
    assert [r["step"] for r in records(out)] == [2, 4]
    assert all(math.isfinite(r["val_loss"]) for r in records(out))
    assert (out / "model.safetensors").read_bytes()[8:9] == b"{"  # a safetensors header, not a pickle
    assert main([*argv, "--steps", "6"]) == 0  # resumes at step 4
    assert [r["step"] for r in records(out)] == [2, 4, 6]

    summary = evaluate(
        EvalConfig(policy=str(out), seeds="0:2", workers=1, max_steps=8, videos=1, out=str(tmp_path / "e"))
    )
    assert summary["episodes"] == 2 and 0 <= summary["success_rate"] <= 1
    assert summary["success_ci95"][0] <= summary["success_rate"] <= summary["success_ci95"][1]
    rows = list(csv.DictReader((tmp_path / "e" / "episodes.csv").open()))
    assert [int(r["seed"]) for r in rows] == [0, 1] and all(int(r["steps"]) == 8 for r in rows)
    assert all(int(r["queries"]) == 8 for r in rows)  # temporal ensembling queries every step
    for name in ("summary.json", "episodes.json", "episodes.mp4", "coverage.png"):
        assert (tmp_path / "e" / name).stat().st_size > 0


def test_train_diffusion_weighted_and_serve_chunks(datasets, tmp_path):
    a, _ = datasets
    out = tmp_path / "diffusion"
    assert main(["train", "policy", "--backbone", "diffusion", "--data", str(a), "--out", str(out), "--steps", "2",
                 "--batch-size", "4", "--threads", "1", "--intervention-weight", "5", "--val-fraction", "0",
                 "--model", json.dumps(TINY_DIFFUSION)]) == 0  # fmt: skip
    policy = load_policy(out)
    model = load_model(out)
    # fitted on the demos' offsets from the agent: the agent moves both ways, by less than the table
    lo, hi = model.action_norm.min, model.action_norm.max
    assert (lo < 0).all() and (hi > 0).all() and (lo > -512).all() and (hi < 512).all()
    obs = {"image": np.zeros((96, 96, 3), np.uint8), "state": np.array([200.0, 300.0])}
    chunk = policy.act(obs)
    assert chunk.shape == (4, 2) and np.all(np.isfinite(chunk))
    offsets = chunk - obs["state"]  # DDIM clamps to the normalised range: within the fitted offsets
    assert np.all(offsets >= lo.numpy() - 1e-3) and np.all(offsets <= hi.numpy() + 1e-3)
    policy.observe(obs)
    assert len(policy.history) == 2
    policy.reset()
    assert len(policy.history) == 0
    with pytest.raises(ValueError, match="finite"):
        policy.act({"image": obs["image"], "state": np.array([np.nan, 1.0])})
    with pytest.raises(ValueError, match="uint8"):
        policy.act({"image": np.zeros((96, 96, 3), np.float32), "state": obs["state"]})


def store(n_eps: int, length: int, weight: float = 1.0) -> FrameStore:
    n = n_eps * length
    starts = np.repeat(np.arange(n_eps) * length, length)
    return FrameStore(
        image=np.zeros((n, 3, 4, 4), np.uint8),
        state=np.arange(n, dtype=np.float32)[:, None].repeat(2, 1),
        action=np.arange(n, dtype=np.float32)[:, None].repeat(2, 1),
        env_state=np.where(np.arange(n)[:, None] % 2, np.nan, np.arange(n)[:, None] + 0.5)
        .repeat(5, 1)
        .astype(np.float32),
        weight=np.full(n, weight, np.float32),
        lo=starts,
        hi=starts + length,
        episodes=n_eps,
    )


def test_windows_pad_at_episode_edges_and_mixing_follows_ratios():
    s = store(2, 5)
    batch = gather(s, np.array([5, 9]), n_obs=2, horizon=4, action_start=1)
    assert batch["state"][:, :, 0].tolist() == [[5, 5], [8, 9]]  # first observation repeated at the start
    assert batch["action"][:, :, 0].tolist() == [[5, 5, 6, 7], [8, 9, 9, 9]]  # last action repeated at the end
    assert batch["action_pad"].tolist() == [[False] * 4, [False, False, True, True]]
    target = batch["aux_target"]  # true states of the observed frames (odd frames: unknown)
    assert target.shape == (2, 2, 6) and torch.isnan(target[1, 1]).all() and torch.isfinite(target[1, 0]).all()
    assert target[1, 0, 0] == pytest.approx(2 * 8.5 / 512 - 1) and torch.isnan(target[0]).all()
    sampler = MixedSampler([store(1, 10, 1.0), store(1, 1000, 5.0)], [0.8, 0.2], seed=0)
    weights = torch.cat([sampler.batch(100, 1, 2, 0)["weight"] for _ in range(20)])
    assert abs(float((weights == 1.0).float().mean()) - 0.8) < 0.05  # the small set is drawn at its ratio
    assert parse_data_spec("x/y:0.3") == ("x/y", 0.3) and parse_data_spec("x/y") == ("x/y", 1.0)
    with pytest.raises(ValueError, match="> 0"):
        parse_data_spec("x:0")


@pytest.mark.parametrize("backbone,mode", [("act", "image"), ("act", "state"), ("diffusion", "keypoints"),
                                           ("diffusion", "state")])  # fmt: skip
def test_both_conditionings_train_and_predict(backbone, mode):
    tiny = {**(TINY_ACT if backbone == "act" else TINY_DIFFUSION), "conditioning": mode, "image_batch": 2}
    model = build_model(backbone, tiny)
    n, h = model.cfg.n_obs_steps, model.cfg.horizon
    target = torch.rand(5, n, 6) * 2 - 1
    target[4] = float("nan")  # a correction from the world model: no true state
    batch = {"image": torch.randint(0, 255, (5, n, 3, 16, 16), dtype=torch.uint8), "state": torch.rand(5, n, 2),
             "action": torch.rand(5, h, 2), "action_pad": torch.zeros(5, h, dtype=torch.bool),
             "aux_target": target}  # fmt: skip
    loss = model(batch)
    assert loss.shape == (5,) and torch.isfinite(loss).all()
    loss.mean().backward()
    assert model.encoder.head[0].weight.grad.abs().sum() > 0  # the encoder learns the true state
    model.eval()
    assert model.predict(batch["image"], batch["state"]).shape == (5, h, 2)


def test_frozen_sampler_matches_eager_and_follows_weight_updates():
    from hiwm.policy.frozen import FrozenCall

    model = build_model("diffusion", TINY_DIFFUSION).eval()
    images = torch.randint(0, 255, (2, 2, 3, 16, 16), dtype=torch.uint8)
    states = torch.rand(2, 2, 2) * 512
    frozen_unet = model.sampler_unet

    def sample(frozen: bool) -> torch.Tensor:
        model.sampler_unet = frozen_unet if frozen else lambda x, f: model.unet(x, None, None, films=f)
        return model.predict(images, states, generator=torch.Generator().manual_seed(3))

    eager, frozen = sample(False), sample(True)
    assert len(frozen_unet.graphs) == 1  # one graph for this batch shape
    assert torch.allclose(frozen, eager, atol=1e-3)
    graph = next(iter(frozen_unet.graphs.values()))
    sample(True)
    assert next(iter(frozen_unet.graphs.values())) is graph  # reused while the weights stay
    with torch.no_grad():  # an optimiser-like in-place update: the graph must not keep the old weights
        model.unet.final[-1].bias.add_(0.5)
    moved = sample(True)
    assert next(iter(frozen_unet.graphs.values())) is not graph  # rebuilt
    assert not torch.allclose(moved, frozen, atol=1e-3)
    assert torch.allclose(moved, sample(False), atol=1e-3)
    # the server warms the policy up before its first observation: the graph exists, no history is left
    from hiwm.policy.server import PolicyServer

    fresh = ModelPolicy(build_model("diffusion", TINY_DIFFUSION))
    server = PolicyServer(fresh)
    assert server.stats.warm_up_ms > 0 and len(fresh.model.sampler_unet.graphs) == 1
    assert len(fresh.history) == 0 and server.stats.queries == 0
    # what cannot be traced (a non-tensor output) runs eagerly, with the same result
    odd = FrozenCall(model.unet.final, lambda m, x: (m(x), 3))
    with torch.inference_mode():
        x = torch.rand(1, TINY_DIFFUSION["down_dims"][0], 8)
        out, three = odd(x)
        assert three == 3 and odd.graphs[next(iter(odd.graphs))] is None
        assert torch.allclose(out, model.unet.final(x))


def test_conditioning_states_read_only_some_images_in_training():
    from hiwm.policy.encoder import ImageEncoder, conditioning_states

    encoder = ImageEncoder((4,), keypoints=2, crop=8)
    images = torch.rand(6, 1, 3, 8, 8)
    targets = torch.rand(6, 1, 6)
    targets[5] = float("nan")
    states, loss = conditioning_states(encoder, images, targets, image_batch=2, noise=0.0)
    assert torch.equal(states[:5], targets[:5])  # true states stand in where known
    read = encoder.state(encoder.keypoints(images[5]))
    assert torch.allclose(states[5], read)  # the unknown one is read off its image
    assert (loss[:2] > 0).all() and (loss[2:] == 0).all()  # only the first 2 images train the encoder
    inferred, _ = conditioning_states(encoder, images, None, image_batch=2, noise=0.0)
    assert torch.allclose(inferred[5], read)
    # no images asked for and every state known: true states only, the encoder untouched
    states, loss = conditioning_states(encoder, images[:5], targets[:5], image_batch=0, noise=0.0)
    assert torch.equal(states, targets[:5]) and (loss == 0).all()


@pytest.mark.parametrize("backbone", ["act", "diffusion"])
def test_relative_actions_are_offsets_from_the_current_state(backbone, tmp_path):
    s = store(2, 5)  # state and action of frame i are both i
    offsets = action_offsets(s, horizon=3, action_start=0)
    assert offsets[:, :, 0].tolist()[3:6] == [[0, 1, 1], [0, 0, 0], [0, 1, 2]]  # clamped at episode ends
    tiny = TINY_ACT if backbone == "act" else TINY_DIFFUSION
    model = build_model(backbone, tiny)
    assert model.cfg.relative_actions
    n, h = model.cfg.n_obs_steps, model.cfg.horizon
    state = torch.full((1, n, 2), 300.0)
    batch = {"image": torch.zeros(1, n, 3, 16, 16, dtype=torch.uint8), "state": state,
             "action": torch.full((1, h, 2), 310.0), "action_pad": torch.zeros(1, h, dtype=torch.bool)}  # fmt: skip
    model.eval()
    # the model predicts in the offset frame: a zero output is the offsets' midpoint (10 px) from the state
    for p in model.parameters():
        p.data.zero_()
    model.action_norm.fit(np.array([[0.0, 0.0], [20.0, 20.0]]))  # offsets span 0..20 px
    if backbone == "act":
        assert torch.allclose(model.predict(batch["image"], state), torch.full((1, h, 2), 310.0))
    else:  # zero noise prediction: x0 is the clamped start noise, within the offsets' span around the state
        pred = model.predict(batch["image"], state, torch.Generator().manual_seed(0))
        assert ((pred >= 300.0) & (pred <= 320.0)).all()
    with pytest.raises(ValueError, match="relative actions"):
        build_model(backbone, {**tiny, "state_dim": 3})
    # checkpoints written before the option predicted absolute positions and still load as such
    path = save_checkpoint(tmp_path / "old", build_model(backbone, {**tiny, "relative_actions": False}))
    config = json.loads((path / "config.json").read_text())
    del config["model"]["relative_actions"]
    (path / "config.json").write_text(json.dumps(config))
    assert not load_model(path).cfg.relative_actions


def test_temporal_ensemble_weights_older_chunks_more():
    policy = ModelPolicy(build_model("act", TINY_ACT))
    m = policy.ensemble
    first = policy._ensembled(np.zeros((6, 2)))
    assert np.allclose(first, 0)
    second = policy._ensembled(np.ones((6, 2)))  # step 1 was predicted by both chunks
    assert np.allclose(second, math.exp(-m) / (1 + math.exp(-m)))
    policy.reset()
    assert np.allclose(policy._ensembled(np.full((6, 2), 7.0)), 7)
    # only the first ensemble_window steps of each chunk enter: a prediction older than that drops out
    policy = ModelPolicy(build_model("act", {**TINY_ACT, "ensemble_window": 2}))
    chunks = itertools.count(1)  # the k-th prediction is a chunk of k's
    policy.predict = lambda: np.full((6, 2), float(next(chunks)))
    obs = {"image": np.zeros((16, 16, 3), np.uint8), "state": np.zeros(2)}
    actions = [float(policy.act(obs)[0, 0]) for _ in range(4)]
    w = math.exp(-m)
    assert np.allclose(actions, [1, (1 + 2 * w) / (1 + w), (2 + 3 * w) / (1 + w), (3 + 4 * w) / (1 + w)])
    with pytest.raises(ValueError, match="ensemble_window"):
        build_model("act", {**TINY_ACT, "ensemble_window": 7})  # longer than the chunk


def test_checkpoints_refuse_bad_files(tmp_path):
    model = build_model("act", TINY_ACT)
    path = save_checkpoint(tmp_path / "ok", model)
    assert isinstance(load_model(path), type(model))
    (path / "model.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(CheckpointError, match=r"model\.safetensors"):
        load_model(path)
    (path / "config.json").write_text(json.dumps({"backbone": "nope", "model": {}}))
    with pytest.raises(CheckpointError, match="unknown backbone"):
        load_model(path)
    with pytest.raises(CheckpointError, match="no such"):
        load_model(tmp_path / "missing")
    with pytest.raises(ValueError, match="cannot import"):
        load_policy("no.such.module:Policy")


def test_seeds_and_wilson_interval():
    assert parse_seeds("0:5") == [0, 1, 2, 3, 4]
    assert parse_seeds("10:", episodes=3) == [10, 11, 12]
    assert parse_seeds("3,1") == [3, 1]
    with pytest.raises(ValueError, match="episodes"):
        parse_seeds("0:2", episodes=5)
    low, high = wilson(5, 10)
    assert (round(low, 4), round(high, 4)) == (0.2366, 0.7634)
    assert wilson(0, 10)[0] == 0 and round(wilson(0, 10)[1], 4) == 0.2775


def test_dagger_collects_the_policy_states_labelled_by_the_expert(tmp_path, capsys):
    """``hiwm collect --policy``: the shipped ACT drives (its episodes end where its evaluation's do),
    the noise-free expert's answers along those states are the actions recorded."""
    from hiwm.data import LeRobotDataset
    from hiwm.paths import shipped_model
    from hiwm.tasks import get_task
    from hiwm.tasks.world import load_world

    act, out = str(shipped_model("pusht", "act")), tmp_path / "dagger"
    args = ["collect", "--policy", act, "--episodes", "2", "--seed", "100000", "--max-steps", "80", "--out", str(out)]
    assert main([*args, "--workers", "1", "-q"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    run = evaluate(EvalConfig(act, seeds="100000:100002", max_steps=80, workers=1, videos=0, out=str(tmp_path / "e")))
    ds, world = LeRobotDataset(out), load_world(get_task("pusht"))
    assert ds.num_episodes == 2 and result["success_rate"] == run["success_rate"]
    steps = []
    for i, seed in enumerate((100000, 100001)):
        episode = ds.episode(i, videos=False)
        states, actions = episode["observation.environment_state"], episode["action"]
        expert = world.make_expert(0.0, seed=seed)
        np.testing.assert_allclose(actions, [expert.act(s) for s in states], atol=1e-3)
        # the states are the policy's, not the expert's own: its agent does not go where it was labelled to
        assert np.abs(states[1:, :2] - actions[:-1]).max() > 5.0
        assert not episode["intervention"].any()
        steps.append(len(actions))
    assert steps == [row["steps"] for row in json.loads((tmp_path / "e" / "episodes.json").read_text())]
    # the expert's noise, DART labels, frame size and bags belong to expert collection: refused, nothing written
    assert main([*args[:-1], str(tmp_path / "no"), "--noise", "1", "-q"]) == 2
    assert "--policy collects" in capsys.readouterr().err and not (tmp_path / "no").exists()
    # the task is the checkpoint's unless named: the arm's ACT drives the arm; a task it was not trained on is refused
    arm, out = str(shipped_model("so101_pick", "act")), tmp_path / "arm"
    assert (
        main(
            [
                "collect",
                "--policy",
                arm,
                "--episodes",
                "1",
                "--max-steps",
                "5",
                "--out",
                str(out),
                "--workers",
                "1",
                "-q",
            ]
        )
        == 0
    )
    assert (
        LeRobotDataset(out).num_frames == 5
        and json.loads((out / "meta" / "info.json").read_text())["robot_type"] == "so101_pick"
    )
    assert (
        main(["collect", "--policy", arm, "--task", "pusht", "--episodes", "1", "--out", str(tmp_path / "x"), "-q"])
        == 2
    )
    assert "trained on task 'so101_pick', not 'pusht'" in capsys.readouterr().err and not (tmp_path / "x").exists()
