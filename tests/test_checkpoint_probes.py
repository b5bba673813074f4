"""Damaged checkpoints and expected CLI errors: refused with one clear line, never a hang or a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT
from test_policy import TINY_ACT

from hiwm.checkpoints import CheckpointError
from hiwm.cli.main import main
from hiwm.policy import build_model, load_model, save_checkpoint
from hiwm.world_model import checkpoint as wm_ckpt
from hiwm.world_model.config import ModelConfig

TINY_WM = ModelConfig(image_size=16, latent_channels=4, enc_channels=(4, 4, 4), dyn_channels=4, dyn_blocks=1,
                      dec_channels=(4, 4, 4))  # fmt: skip


def flip_weight_bit(path: Path) -> None:
    """Flip one bit in the tensor data of a safetensors file (past its JSON header)."""
    raw = bytearray(path.read_bytes())
    header = int.from_bytes(raw[:8], "little")
    raw[8 + header + (len(raw) - 8 - header) // 2] ^= 0x10
    path.write_bytes(bytes(raw))


def policy_checkpoint(tmp_path: Path) -> Path:
    return save_checkpoint(tmp_path / "act", build_model("act", TINY_ACT))


def world_model_checkpoint(tmp_path: Path) -> Path:
    from hiwm.world_model.model import WorldModel

    return wm_ckpt.save(tmp_path / "wm", wm_ckpt.Checkpoint(model=TINY_WM), WorldModel(TINY_WM))


def hiwm(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hiwm.cli.main", *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


def error_lines(stderr: str) -> list[str]:
    """stderr without tqdm's progress bars."""
    return [line for line in stderr.replace("\r", "\n").splitlines() if line.strip() and "it/s]" not in line
            and "s/it]" not in line and "?it" not in line]  # fmt: skip


@pytest.mark.probe("flip one bit in the weights of a policy and of a world-model checkpoint", "CheckpointError")
def test_flipped_weight_bits_are_refused(tmp_path):
    policy = policy_checkpoint(tmp_path)
    before = {k: v.clone() for k, v in load_model(policy).state_dict().items()}
    flip_weight_bit(policy / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"model\.safetensors: damaged"):
        load_model(policy)
    wm = world_model_checkpoint(tmp_path)
    wm_ckpt.load(wm)
    flip_weight_bit(wm / wm_ckpt.MODEL)
    with pytest.raises(CheckpointError, match="damaged"):
        wm_ckpt.load(wm)
    # an intact file round-trips exactly, digest and all
    fresh = save_checkpoint(tmp_path / "again", build_model("act", TINY_ACT))
    loaded = load_model(fresh).state_dict()
    assert set(loaded) == set(before) and all(loaded[k].shape == before[k].shape for k in before)


@pytest.mark.probe("checkpoint config.json with values of the wrong type", "CheckpointError naming config.json")
def test_damaged_config_is_a_checkpoint_error(tmp_path):
    policy = policy_checkpoint(tmp_path)
    doc = json.loads((policy / "config.json").read_text())
    for model in ({**doc["model"], "dim": "thirty-two"}, {**doc["model"], "channels": 8}, "act", [1, 2]):
        (policy / "config.json").write_text(json.dumps({**doc, "model": model}))
        with pytest.raises(CheckpointError, match=r"config\.json"):
            load_model(policy)
    wm = world_model_checkpoint(tmp_path)
    doc = json.loads((wm / "config.json").read_text())
    for model in ({**doc["model"], "dyn_channels": 4.5}, {**doc["model"], "enc_channels": "abc"}, "x", [1]):
        (wm / "config.json").write_text(json.dumps({**doc, "model": model}))
        with pytest.raises(CheckpointError, match=r"config\.json"):
            wm_ckpt.load(wm)


@pytest.mark.probe("hiwm eval with its default 2 workers on a checkpoint no worker can load",
                   "the evaluation ends at once: exit 2, one error line, no traceback")  # fmt: skip
def test_eval_on_a_damaged_checkpoint_ends_with_one_line(tmp_path):
    policy = policy_checkpoint(tmp_path)
    (policy / "model.safetensors").write_bytes(b"\x00" * 64)  # cut off
    try:
        r = hiwm("eval", "--policy", str(policy), "--seeds", "0:4", "--max-steps", "5", "--videos", "0", timeout=240)
    except subprocess.TimeoutExpired:
        pytest.fail("hiwm eval did not end on a damaged checkpoint (the pool restarts the failing worker)")
    lines = error_lines(r.stderr)
    assert r.returncode == 2, r.stderr[-2000:]
    assert "Traceback" not in r.stderr and len(lines) == 1, lines
    assert lines[0].startswith("hiwm eval: error:") and "model.safetensors: damaged" in lines[0], lines


@pytest.mark.probe("expected errors in hiwm train, eval and branches",
                   "one line on stderr, exit 2; --debug shows the traceback")  # fmt: skip
def test_cli_errors_are_one_line_and_debug_shows_the_traceback(tmp_path, capsys):
    policy = policy_checkpoint(tmp_path)
    (policy / "config.json").write_text("{not json")
    assert main(["eval", "--policy", str(policy), "--workers", "1", "--seeds", "0:1"]) == 2
    err = capsys.readouterr().err
    assert "hiwm eval: error:" in err and "config.json" in err and "Traceback" not in err
    assert main(["train", "policy", "--data", str(tmp_path / "no_such_dataset"), "--out", str(tmp_path / "p"),
                 "--steps", "1"]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert err.startswith("hiwm train: error:") and "no_such_dataset" in err and len(err.strip().splitlines()) == 1
    r = hiwm("branches", "ls", "--db", str(tmp_path / "absent.db"), timeout=120)
    assert r.returncode == 2 and r.stderr.strip().startswith("hiwm branches: error:") and "Traceback" not in r.stderr
    r = hiwm("--debug", "eval", "--policy", str(policy), "--workers", "1", "--seeds", "0:1", timeout=120)
    assert r.returncode == 1 and "Traceback" in r.stderr and "CheckpointError" in r.stderr
