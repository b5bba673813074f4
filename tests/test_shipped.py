"""The models hiwm ships: found in the share folder, and used where no checkpoint is named (the policy
server, the world-model node, ``hiwm eval``), with a clear error for a task that has none."""

from __future__ import annotations

import json

import pytest

from hiwm.cli.main import main as hiwm
from hiwm.nodes.policy_server import PolicyServerConfig
from hiwm.nodes.world_model import WorldModelConfig
from hiwm.paths import shipped_model

ARM = "so101_pick"


def ship(share, kind: str) -> None:
    folder = share / "models" / ARM / kind
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")


def test_no_shipped_model_is_a_clear_error(share, capsys):
    assert shipped_model(ARM, "act") is None and shipped_model(ARM, "world_model") is None
    (share / "models" / ARM / "act").mkdir(parents=True)  # a folder without a checkpoint in it
    assert shipped_model(ARM, "act") is None
    with pytest.raises(ValueError, match=f"ships no policy for task '{ARM}'"):
        PolicyServerConfig(task=ARM)
    with pytest.raises(ValueError, match="hiwm ships none for task 'pusht'"):
        WorldModelConfig()  # no task: the default one's
    assert hiwm(["eval", "--task", ARM, "--episodes", "1"]) == 2
    assert f"hiwm ships no act for task '{ARM}'" in capsys.readouterr().err
    assert hiwm(["eval", "--task", ARM, "--policy", "x:Y", "--world-model", "--episodes", "1"]) == 2
    assert f"hiwm ships no world model for task '{ARM}'" in capsys.readouterr().err


def test_the_shipped_models_stand_in_for_unnamed_checkpoints(share):
    ship(share, "act")
    ship(share, "world_model")
    act, world = share / "models" / ARM / "act", share / "models" / ARM / "world_model"
    assert shipped_model(ARM, "act") == act and shipped_model(ARM, "diffusion") is None
    assert PolicyServerConfig(task=ARM).policy == str(act)
    assert PolicyServerConfig(task=ARM, policy="mine:Policy").policy == "mine:Policy"  # a named one wins
    assert WorldModelConfig(task=ARM).checkpoint == str(world)
    assert WorldModelConfig(task=ARM, checkpoint="runs/wm").checkpoint == "runs/wm"


def test_the_repository_ships_small_models_with_cards():
    """What `models/` holds is installed by pip and colcon (setup.py's data files), each a checkpoint
    with a model card, all within 25 MB."""
    from hiwm.paths import share_path

    root = share_path("models")
    folders = [p.parent for p in root.glob("*/*/config.json")]
    total = sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
    assert total <= 25e6, f"shipped models take {total / 1e6:.1f} MB"
    for folder in folders:
        card = (folder / "MODEL_CARD.md").read_text()
        assert "## Data" in card and "## Trained by" in card and "## Figures" in card, folder
        assert not any(folder.glob("optimizer*")) and not any(folder.glob("train_state*")), folder
        json.loads((folder / "config.json").read_text())
    setup = (share_path() / "setup.py").read_text() if (share_path() / "setup.py").exists() else ""
    assert not setup or '*tree("models")' in setup


def shipped_tasks() -> list[str]:
    from hiwm.paths import share_path

    return sorted(p.parent.parent.name for p in share_path("models").glob("*/world_model/config.json"))


@pytest.mark.parametrize("task", shipped_tasks())
def test_each_shipped_policy_runs_in_both_worlds(task, tmp_path, capsys):
    """The shipped models load without pickle and drive a few steps of an episode in the physics and in
    the shipped world model, judged by its success verdict; the policy's data records how to collect it."""
    from hiwm.cli.models import KINDS

    for backbone in KINDS[1:]:
        if (policy := shipped_model(task, backbone)) is None:
            continue
        entries = json.loads((policy / "config.json").read_text())["train"]["data"]
        assert entries and all("collect" in d and d["collect"]["task"] == task for d in entries), policy
        out = tmp_path / backbone
        argv = ["eval", "--task", task, "--policy", str(policy), "--world-model", "--both", "--episodes", "1"]
        assert hiwm([*argv, "--max-steps", "8", "--workers", "1", "--videos", "0", "--out", str(out)]) == 0, backbone
        for world in ("real", "model"):
            summary = json.loads((out / world / "summary.json").read_text())
            assert summary["episodes"] == 1 and 0.0 <= summary["success_rate"] <= 1.0, (backbone, world)
