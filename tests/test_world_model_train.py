"""`hiwm train world-model` end to end on a tiny real dataset: validation, probe, checkpoint, resume."""

from __future__ import annotations

import json

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
