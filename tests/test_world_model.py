"""World model core: exact snapshot/restore, batched stepping, checkpoints, the task plug-in (state
coding, coverage, task field), training CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from hiwm.tasks.pusht.env import coverage_from_pose
from hiwm.world_model import checkpoint as ckpt_io
from hiwm.world_model.config import ModelConfig, ProbeConfig, WorldModelTrainConfig
from hiwm.world_model.metrics import psnr, ssim
from hiwm.world_model.model import WorldModel
from hiwm.world_model.probe import StateProbe
from hiwm.world_model.session import Session, SnapshotError, step_many

torch.set_num_threads(1)  # a shared 2-core machine: OpenMP spinning on a busy core costs more than it gains

TINY = ModelConfig(
    latent_channels=4, enc_channels=(8, 8, 8), dyn_channels=8, dyn_blocks=1, dec_channels=(8, 8, 8), noise_std=0.05
)
STATE = [120.0, 380.0, 300.0, 260.0, 0.7]


def tiny_model(seed: int = 0, cfg: ModelConfig = TINY) -> WorldModel:
    torch.manual_seed(seed)
    model = WorldModel(cfg).eval()
    with torch.no_grad():  # zero-initialised residual convs would hide the dynamics: perturb them
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def actions(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(50, 460, size=(n, 2))


def test_restore_and_replay_gives_bit_identical_frames_with_noise_on():
    session = Session(tiny_model(), seed=7)
    session.reset(state=STATE)
    for a in actions(5, 0):
        session.step(a)
    snap = session.snapshot()
    plan = actions(12, 1)
    first = [session.step(a) for a in plan]
    assert len({f.tobytes() for f in first}) > 1  # the frames do change
    session.restore(snap)
    assert session.step_count == 5 and len(session.actions) == 5
    again = [session.step(a) for a in plan]
    for a, b in zip(first, again, strict=True):
        assert a.dtype == np.uint8 and np.array_equal(a, b)
    # the noise really is drawn from the session's generator: another seed diverges
    other = Session(session.model, seed=8)
    other.restore(snap)  # the snapshot's generator state wins over the constructor's seed
    assert np.array_equal(other.step(plan[0]), first[0])


def test_batched_sessions_restore_exactly_and_a_fresh_session_can_adopt_a_snapshot():
    model = tiny_model()
    sessions = [Session(model, seed=i) for i in range(3)]
    for i, s in enumerate(sessions):
        s.reset(state=[100.0 + 50 * i, 300.0, 250.0, 250.0, 0.3 * i])
    step_many(sessions, actions(3, 2))
    snaps = [s.snapshot() for s in sessions]
    plan = [actions(3, 10 + t) for t in range(6)]
    first = [step_many(sessions, p) for p in plan]
    for s, snap in zip(sessions, snaps, strict=True):
        s.restore(snap)
    again = [step_many(sessions, p) for p in plan]
    assert all(np.array_equal(a, b) for fa, fb in zip(first, again, strict=True) for a, b in zip(fa, fb, strict=True))
    fresh = [Session(model) for _ in range(3)]
    for s, snap in zip(fresh, snaps, strict=True):
        s.restore(snap)
    third = [step_many(fresh, p) for p in plan]
    assert all(np.array_equal(a, b) for fa, fb in zip(first, third, strict=True) for a, b in zip(fa, fb, strict=True))


def test_snapshot_is_small_and_bad_snapshots_are_refused_without_damage():
    session = Session(tiny_model())
    session.reset(frames=np.zeros((96, 96, 3), np.uint8))
    start = len(session.snapshot())
    for a in actions(300, 3):  # a whole Push-T episode of history
        session.step(a)
    snap = session.snapshot()
    assert len(snap) == start + 300 * 8  # 8 bytes per action of history, nothing else grows
    default = Session(WorldModel(ModelConfig()).eval())  # the 64 KiB budget is about the default size
    default.reset(frames=np.zeros((96, 96, 3), np.uint8))
    assert len(default.snapshot()) + 300 * 8 <= 64 * 1024
    before = session.frame.copy()
    corrupt = bytearray(snap)
    corrupt[200] ^= 0xFF
    with pytest.raises(SnapshotError, match="corrupt"):
        session.restore(bytes(corrupt))
    with pytest.raises(SnapshotError, match="short"):
        session.restore(snap[:10])
    with pytest.raises(SnapshotError, match="magic"):
        session.restore(b"X" * len(snap))
    with pytest.raises(SnapshotError, match="another model"):
        session.restore(default.snapshot())
    assert session.step_count == 300 and np.array_equal(session.frame, before)


def test_bad_actions_and_inputs_are_refused_and_change_nothing():
    session = Session(tiny_model())
    with pytest.raises(RuntimeError, match="reset"):
        session.step([1.0, 2.0])
    session.reset(state=STATE)
    snap = session.snapshot()
    for bad in ([math.nan, 1.0], [1.0], [1.0, 2.0, 3.0], [math.inf, 0.0]):
        with pytest.raises(ValueError):
            session.step(bad)
    assert session.snapshot() == snap
    session.step([-100.0, 900.0])  # clamped into the workspace
    assert session.actions[-1].tolist() == [0.0, 512.0]
    with pytest.raises(ValueError, match="uint8"):
        session.reset(frames=np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(ValueError, match="5 finite"):
        session.reset(state=[1.0, 2.0])


def test_checkpoint_round_trip_with_optimizer_and_clear_errors(tmp_path):
    model = tiny_model()
    probe = StateProbe(ProbeConfig(channels=(4, 4, 4, 4), hidden=8))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    x = torch.rand(2, 3, 96, 96)
    model.decode(model.encode(x)).pow(2).mean().backward()
    opt.step()
    ckpt = ckpt_io.Checkpoint(TINY, WorldModelTrainConfig(steps=5), probe.cfg, step=5, metrics={"psnr@1": 1.0})
    ckpt_io.save(tmp_path, ckpt, model, probe, opt)
    saved, loaded, loaded_probe = ckpt_io.load(tmp_path)
    assert saved.model == TINY and saved.step == 5 and saved.probe == probe.cfg
    with torch.no_grad():
        model.eval()
        assert torch.equal(model.decode(model.encode(x)), loaded.decode(loaded.encode(x)))
    assert loaded_probe is not None
    opt2 = torch.optim.AdamW(loaded.parameters(), lr=1e-3)
    assert ckpt_io.load_optimizer_state(tmp_path, opt2)
    s1, s2 = opt.state_dict()["state"], opt2.state_dict()["state"]
    assert s1.keys() == s2.keys() and len(s1) > 0
    for pid, st in s1.items():
        assert all(torch.equal(torch.as_tensor(st[n]), torch.as_tensor(s2[pid][n])) for n in st)
    assert not any(p.suffix == ".pt" or p.suffix == ".pkl" for p in tmp_path.iterdir())
    (tmp_path / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ckpt_io.CheckpointError, match="safetensors"):
        ckpt_io.load(tmp_path)
    doc = json.loads((tmp_path / "config.json").read_text())
    doc["format"] = "someone-else/9"
    (tmp_path / "config.json").write_text(json.dumps(doc))
    with pytest.raises(ckpt_io.CheckpointError, match="format"):
        ckpt_io.read_config(tmp_path)
    with pytest.raises(ckpt_io.CheckpointError, match="no config"):
        ckpt_io.read_config(tmp_path / "missing")


def test_coverage_from_pose_matches_the_real_env():
    from hiwm.tasks.pusht.env import PushTEnv

    env = PushTEnv(image_size=32)
    for seed in range(4):
        obs = env.reset(seed=seed)
        for a in actions(8, seed):
            obs = env.step(a)
        assert coverage_from_pose(obs.block_pose) == pytest.approx(obs.coverage, abs=1e-9)
    assert coverage_from_pose([256.0, 256.0, math.pi / 4]) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        coverage_from_pose([1.0, math.nan, 0.0])


# block poses and the coverage gym-pusht's geometry gave them before the coverage moved into the task
COVERAGES = (
    ((256.0, 256.0, math.pi / 4), 1.0),
    ((250.0, 262.0, 0.8), 0.8245274764201078),
    ((300.0, 200.0, 1.3), 0.09659155606725899),
    ((100.0, 400.0, 5.9), 0.0),
    ((256.0, 300.0, math.pi / 4 + 0.05), 0.16405483785003025),
)


def test_the_push_t_task_world_judges_a_state_as_before():
    from hiwm.tasks import get_task
    from hiwm.tasks.world import load_world

    world = load_world(get_task("pusht"))
    for pose, coverage in COVERAGES:
        assert coverage_from_pose(pose) == pytest.approx(coverage, abs=1e-12)
        assert world.metric_from_state([100.0, 100.0, *pose]) == pytest.approx(coverage, abs=1e-12)
    # the probe's coding: positions over the 512 px table, the angle as (sin, cos), the loss weights
    coding = world.state_coding()
    states = np.array([[0.0, 512.0, 256.0, 128.0, 0.5], [10.0, 20.0, 30.0, 40.0, 6.0]])
    targets = coding.targets(states)
    expected = np.concatenate([states[:, :4] / 512.0, np.sin(states[:, 4:]), np.cos(states[:, 4:])], axis=1)
    assert targets.dtype == np.float32 and np.array_equal(targets, expected.astype(np.float32))
    np.testing.assert_allclose(coding.states(targets.astype(np.float64)), states, atol=1e-5)
    assert (coding.position_weight, coding.angle_weight) == (20.0, 1.0)
    with pytest.raises(ValueError, match="5 finite"):
        world.validate_state([1.0, 2.0])


def test_state_coding_round_trips_and_refuses_bad_shapes():
    from hiwm.tasks.world import StateCoding
    from hiwm.world_model.probe import probe_loss

    coding = StateCoding(scale=(2.0, 1.0, 0.5, 1.0), angles=(1, 3), position_weight=3.0, angle_weight=0.5)
    assert coding.positions == (0, 2) and coding.dim == 6
    states = np.array([[1.0, 0.3, -0.2, 6.0], [-4.0, 3.0, 0.1, 0.0]])
    targets = coding.targets(states)
    np.testing.assert_allclose(targets[:, :2], [[0.5, -0.4], [-2.0, 0.2]], rtol=1e-6)
    np.testing.assert_allclose(coding.states(targets.astype(np.float64)), states, atol=1e-6)
    pred, target = torch.zeros(2, 6), torch.from_numpy(targets)
    want = 3.0 * (target[:, :2] ** 2).mean() + 0.5 * (target[:, 2:] ** 2).mean()
    assert probe_loss(pred, target, coding).item() == pytest.approx(want.item())
    with pytest.raises(ValueError, match="states must be"):
        coding.targets(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="outputs must be"):
        coding.states(np.zeros((2, 4)))
    for bad in ({"scale": (1.0, 0.0)}, {"scale": (1.0,), "angles": (1,)}, {"scale": (1.0, 1.0), "angles": (0, 0)}):
        with pytest.raises(ValueError, match="state coding"):
            StateCoding(**bad)


def test_a_checkpoint_records_its_task_and_old_ones_are_the_default_tasks(tmp_path):
    import hashlib
    from dataclasses import asdict, fields

    from hiwm.tasks import DEFAULT_TASK
    from hiwm.world_model.session import model_fingerprint

    model = tiny_model()
    probe = StateProbe(ProbeConfig(channels=(4, 4, 4, 4), hidden=8))
    ckpt_io.save(tmp_path, ckpt_io.Checkpoint(TINY, probe=probe.cfg), model, probe)
    doc = json.loads((tmp_path / "config.json").read_text())
    assert doc["model"]["task"] == doc["probe"]["task"] == DEFAULT_TASK
    del doc["model"]["task"], doc["probe"]["task"]  # as written before the field
    (tmp_path / "config.json").write_text(json.dumps(doc))
    saved, loaded, loaded_probe = ckpt_io.load(tmp_path)
    assert saved.model.task == saved.probe.task == DEFAULT_TASK and saved.model == TINY
    frames = np.random.default_rng(0).integers(0, 255, (3, 96, 96, 3), dtype=np.uint8)
    assert np.array_equal(loaded_probe.predict(frames), probe.eval().predict(frames))
    # the fingerprint, which every snapshot carries, is the one computed before the task field existed
    old_later = ("action_low", "action_high", "action_conditioning", "proprio_dim", "proprio_low", "proprio_high",
                 "cameras", "cond_hidden", "action_map_channels")  # fmt: skip
    old = asdict(TINY)
    del old["task"]
    defaults = {f.name: f.default for f in fields(ModelConfig)}
    for name in old_later:
        if old[name] == defaults[name]:
            del old[name]
    h = hashlib.sha256(json.dumps(old, sort_keys=True).encode())
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().contiguous().numpy().tobytes())
    assert model_fingerprint(loaded) == model_fingerprint(model) == h.digest()[:8]
    arm = WorldModel(ModelConfig(**{**asdict(TINY), "task": "so101_pick"}))
    arm.load_state_dict(model.state_dict())
    assert model_fingerprint(arm) != model_fingerprint(model)  # the same weights for another task: another model
    with pytest.raises(ValueError, match="unknown task"):
        ModelConfig(task="no_such_task")
    with pytest.raises(ValueError, match="unknown task"):
        ProbeConfig(task="no_such_task")


def test_psnr_and_ssim():
    a = torch.rand(2, 3, 32, 32)
    assert torch.allclose(ssim(a, a), torch.ones(2))
    noisy = (a + 0.2 * torch.randn_like(a)).clamp(0, 1)
    assert (ssim(noisy, a) < 0.9).all() and (psnr(noisy, a) < psnr((a + 0.01).clamp(0, 1), a)).all()


def test_probe_threshold_fit_separates_episodes_by_max_coverage():
    from hiwm.world_model.verdict import fit_threshold

    covs = np.array([0.90, 0.97, 0.50, 0.93, 0.88])
    success = np.array([False, True, False, True, False])
    threshold, agreement = fit_threshold(covs, success)
    assert agreement == 1.0 and 0.90 < threshold < 0.93
    threshold, agreement = fit_threshold(np.array([0.96, 0.94]), np.array([False, True]))  # inseparable
    assert agreement == 0.5
    with pytest.raises(ValueError, match="one max metric per episode"):
        fit_threshold(np.array([0.9]), np.array([True, False]))
    with pytest.raises(ValueError, match="one max metric per episode"):
        fit_threshold(np.array([]), np.array([]))


# any action space, proprio, several cameras --------------------------------------------------

ARM = ModelConfig(
    latent_channels=4, enc_channels=(8, 8, 8), dyn_channels=8, dyn_blocks=1, dec_channels=(8, 8, 8), noise_std=0.05,
    action_dim=7, action_low=[-3.0] * 6 + [0.0], action_high=[3.0] * 6 + [1.0], action_conditioning="mlp",
    proprio_dim=7, proprio_low=[-3.0] * 6 + [0.0], proprio_high=[3.0] * 6 + [1.0],
    cameras=[["front", 32, 32], ["wrist", 16, 24]],
)  # fmt: skip
ARM_FRAMES = {"front": np.full((32, 32, 3), 90, np.uint8), "wrist": np.full((16, 24, 3), 160, np.uint8)}
ARM_PROPRIO = [0.1, -0.4, 0.8, 0.0, 1.2, -2.0, 0.5]


def arm_actions(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.uniform(-2.5, 2.5, (n, 6)), rng.uniform(0, 1, (n, 1))], axis=1)


def test_n_d_actions_change_the_next_frames_and_proprio_and_every_camera_is_emitted():
    model = tiny_model(cfg=ARM)
    session = Session(model)
    session.reset(frames=ARM_FRAMES, proprio=ARM_PROPRIO)
    snap = session.snapshot()
    results = []
    for action in ([0.5, 0.5, -1.0, 0.0, 2.0, -2.0, 0.0], [-2.0, 1.5, 1.0, 2.5, -1.0, 0.5, 1.0]):
        session.restore(snap)
        front = session.step(action)
        views = session.views
        assert front.shape == (32, 32, 3) and np.array_equal(front, views["front"])
        assert views["wrist"].shape == (16, 24, 3) and views["wrist"].dtype == np.uint8
        assert session.proprio.shape == (7,) and session.proprio.dtype == np.float32
        results.append((views, session.proprio.copy()))
    (a, pa), (b, pb) = results
    assert not np.array_equal(a["front"], b["front"]) and not np.array_equal(a["wrist"], b["wrist"])
    assert not np.allclose(pa, pb)
    # the previous action counts too: the same action after another one predicts another frame
    session.restore(snap)
    session.step(arm_actions(1, 5)[0])
    first = session.step(arm_actions(1, 6)[0])
    session.restore(snap)
    session.step(arm_actions(1, 7)[0])
    assert not np.array_equal(first, session.step(arm_actions(1, 6)[0]))
    # batched open loop predicts one proprio per step
    contexts = [model.encode(torch.rand(2 * 2, 3, h, w)).unflatten(0, (2, 2)) for _, h, w in ARM.camera_list]
    acts = torch.from_numpy(arm_actions(2 * 5, 1).astype(np.float32)).view(2, 5, 7)
    with torch.no_grad():
        zs, proprio = model.rollout_all(contexts, acts, acts[:, 0], torch.zeros(2, 7))
    assert [tuple(z.shape) for z in zs] == [(2, 5, 4, 4, 4), (2, 5, 4, 2, 3)] and proprio.shape == (2, 5, 7)


def test_snapshot_restore_with_proprio_and_two_cameras_replays_bit_identically():
    model = tiny_model(cfg=ARM)
    session = Session(model, seed=3)
    with pytest.raises(ValueError, match="proprio"):
        session.reset(frames=ARM_FRAMES)
    with pytest.raises(ValueError, match="cameras"):
        session.reset(frames={"front": ARM_FRAMES["front"]}, proprio=ARM_PROPRIO)
    session.reset(frames=ARM_FRAMES, proprio=ARM_PROPRIO, prev_action=[0.0] * 6 + [0.5])
    for a in arm_actions(4, 0):
        session.step(a)
    snap = session.snapshot()
    plan = arm_actions(10, 1)

    def play(s: Session) -> list:
        out = []
        for a in plan:
            s.step(a)
            out.append((s.views, s.proprio.copy()))
        return out

    first = play(session)
    assert len({v["wrist"].tobytes() for v, _ in first}) > 1
    fresh = Session(model)  # another session adopts the snapshot: proprio, previous action, generator
    fresh.restore(snap)
    assert fresh.step_count == 4 and len(fresh.actions) == 4 and fresh.actions[-1].shape == (7,)
    session.restore(snap)
    for again in (play(session), play(fresh)):
        for (va, pa), (vb, pb) in zip(first, again, strict=True):
            assert all(np.array_equal(va[n], vb[n]) for n in ("front", "wrist")) and np.array_equal(pa, pb)
    assert len(session.snapshot()) == len(snap) + 10 * 7 * 4  # 7 floats of history a step, nothing else grows
    from hiwm.world_model.config import preset

    interface = ("action_dim", "action_low", "action_high", "action_conditioning", "proprio_dim", "proprio_low")
    small = preset("small", **{f: getattr(ARM, f) for f in interface}, proprio_high=ARM.proprio_high,
                   cameras=[["front", 128, 128]])  # fmt: skip
    arm = Session(WorldModel(small).eval())
    arm.reset(frames=np.zeros((128, 128, 3), np.uint8), proprio=ARM_PROPRIO)
    arm.actions = [np.zeros(7, np.float32)] * 2000  # a long episode: its history is capped, the snapshot bounded
    big = arm.snapshot()
    assert len(big) <= 64 * 1024
    arm.restore(big)
    assert len(arm.actions) == 8192 // (7 * 4)
    with pytest.raises(ValueError, match="7 values"):
        session.step([0.0, 1.0])
    session.step([9.0] * 6 + [-1.0])  # clamped into the limits
    assert session.actions[-1].tolist() == [3.0] * 6 + [0.0]
    push_t = Session(tiny_model())
    push_t.reset(state=STATE)
    with pytest.raises(SnapshotError, match="another model"):
        session.restore(push_t.snapshot())


def test_a_version_1_snapshot_of_a_push_t_model_still_restores():
    import struct
    import zlib

    from hiwm.world_model.session import MAGIC

    session = Session(tiny_model(), seed=2)
    session.reset(state=STATE)
    for a in actions(3, 0):
        session.step(a)
    expected = [session.step(a) for a in actions(4, 1)]
    replay = Session(session.model, seed=2)  # the same 3 steps again, packed by hand as the first layout did
    replay.reset(state=STATE)
    for a in actions(3, 0):
        replay.step(a)
    k, z, g, _ = replay.context[0].shape
    rng = replay.generator.get_state().numpy().tobytes()
    head = struct.pack(
        "<8sHH8sIBBHHII2f", MAGIC, 1, 1, replay.fingerprint, 3, k, 0, z, g, 3, len(rng), *replay.prev_action.tolist()
    )
    acts = np.asarray(replay.actions, np.float32).tobytes()
    body = head + replay.context[0].numpy().tobytes() + acts + rng
    other = Session(session.model)
    other.restore(body + struct.pack("<I", zlib.crc32(body)))
    assert other.step_count == 3 and np.array_equal(other.prev_action, replay.prev_action)
    assert all(np.array_equal(other.step(a), e) for a, e in zip(actions(4, 1), expected, strict=True))


def test_interface_config_errors_are_clear():
    for bad, match in (
        ({"action_dim": 3, "action_low": [0.0, 0.0]}, "action_low needs 3"),
        ({"action_low": [1.0, 1.0], "action_high": [1.0, 2.0]}, "high must exceed"),
        ({"action_conditioning": "film"}, "action_conditioning"),
        ({"action_dim": 1}, "bump"),
        ({"cameras": [["a", 30, 32]]}, "multiples of 8"),
        ({"cameras": [["a", 32, 32], ["a", 16, 16]]}, "distinct"),
        ({"cameras": [["a", 32]]}, "triples"),
        ({"proprio_dim": 2, "proprio_high": [1.0]}, "proprio_high needs 2"),
    ):
        with pytest.raises(ValueError, match=match):
            ModelConfig(**bad)
    from hiwm.world_model.config import preset

    with pytest.raises(ValueError, match="unknown world-model preset"):
        preset("huge")


def test_the_gpu_preset_has_20m_parameters_and_trains_a_step_on_the_cpu():
    from hiwm.world_model.config import preset
    from hiwm.world_model.data import Windows
    from hiwm.world_model.model import count_parameters
    from hiwm.world_model.train import window_loss

    small, gpu = WorldModel(preset("small")), WorldModel(preset("gpu"))
    assert count_parameters(small) == count_parameters(WorldModel(ModelConfig())) < 1_000_000
    assert count_parameters(gpu) >= 20_000_000
    torch.manual_seed(0)
    frames = torch.randint(0, 256, (1, gpu.cfg.context + 1, 96, 96, 3), dtype=torch.uint8)
    batch = Windows([frames], torch.rand(1, gpu.cfg.context + 1, 2) * 512)
    gpu.train()
    losses = window_loss(gpu, batch, WorldModelTrainConfig())
    losses["loss"].backward()
    assert math.isfinite(losses["loss"].item())
    grads = [p.grad for p in gpu.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert gpu.encoder.net[0].weight.grad.abs().sum() > 0  # the loss reaches the encoder through the whole model
