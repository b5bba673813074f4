"""World model core: exact snapshot/restore, batched stepping, checkpoints, probe geometry, training CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from hiwm.world_model import checkpoint as ckpt_io
from hiwm.world_model.config import ModelConfig, ProbeConfig, WorldModelTrainConfig
from hiwm.world_model.metrics import psnr, ssim
from hiwm.world_model.model import WorldModel
from hiwm.world_model.probe import StateProbe, coverage_from_pose
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
    from hiwm.pusht.env import PushTEnv

    env = PushTEnv(image_size=32)
    for seed in range(4):
        obs = env.reset(seed=seed)
        for a in actions(8, seed):
            obs = env.step(a)
        assert coverage_from_pose(obs.block_pose) == pytest.approx(obs.coverage, abs=1e-9)
    assert coverage_from_pose([256.0, 256.0, math.pi / 4]) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        coverage_from_pose([1.0, math.nan, 0.0])


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
    with pytest.raises(ValueError, match="one max coverage per episode"):
        fit_threshold(np.array([0.9]), np.array([True, False]))
    with pytest.raises(ValueError, match="one max coverage per episode"):
        fit_threshold(np.array([]), np.array([]))
