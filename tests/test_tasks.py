"""The task registry: both tasks described as data, their JSON summaries, and validation of a description."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hiwm.tasks import ActionSpace, Camera, JogKey, JogMap, LeaderArmMap, LeaderJoint, get_task, task_names
from hiwm.tasks.base import LoopOptions, Observations, Success, Task

ROOT = Path(__file__).resolve().parents[1]


def test_registry_lists_both_tasks_and_refuses_unknown_names():
    assert set(task_names()) >= {"pusht", "so101_pick"}
    assert task_names() == tuple(sorted(task_names()))
    assert get_task("pusht").name == "pusht"
    with pytest.raises(ValueError, match=r"unknown task 'nope'.*pusht.*so101_pick"):
        get_task("nope")


@pytest.mark.parametrize(
    ("name", "action_dim", "camera", "proprio_dim", "fps"),
    [
        ("pusht", 2, {"name": "top", "height": 96, "width": 96}, 2, 10.0),
        ("so101_pick", 6, {"name": "front", "height": 128, "width": 128}, 6, 10.0),
    ],
)
def test_json_summary(name, action_dim, camera, proprio_dim, fps):
    summary = json.loads(get_task(name).to_json())
    assert summary["name"] == name
    assert summary["action_dim"] == action_dim == len(summary["action_names"])
    assert len(summary["action_low"]) == len(summary["action_high"]) == len(summary["action_units"]) == action_dim
    assert all(lo < hi for lo, hi in zip(summary["action_low"], summary["action_high"], strict=True))
    assert [{k: c[k] for k in ("name", "height", "width")} for c in summary["cameras"]] == [camera]
    assert summary["cameras"][0]["topic"].endswith("color/image_raw")  # realsense-ros naming
    assert summary["proprio_dim"] == proprio_dim == len(summary["proprio_names"])
    assert summary["fps"] == fps
    assert summary["episode_steps"] > 0 and summary["success"]["metric"]


def test_pusht_description_matches_the_pusht_world_and_operator():
    from hiwm.tasks.pusht import pusht_features
    from hiwm.tasks.pusht.env import ACTION_HIGH, ACTION_LOW, CONTROL_HZ, MAX_STEPS, SUCCESS_COVERAGE

    task = get_task("pusht")
    assert task.action.low == (ACTION_LOW,) * 2 and task.action.high == (ACTION_HIGH,) * 2
    assert task.fps == CONTROL_HZ and task.episode_steps == MAX_STEPS
    assert task.success.metric == "coverage" and task.success.threshold == SUCCESS_COVERAGE
    assert task.action.names == task.observations.proprio == ("agent_x", "agent_y")
    assert list(task.observations.state) == pusht_features()["observation.environment_state"]["names"]
    assert {abs(k.step) for k in task.jog.keys} == {12.0}  # the operator's pixel step
    leader = yaml.safe_load((ROOT / "config/leader/so101_pusht.yaml").read_text())["action"]["joint_map"]
    assert [(j.joint, task.action.names.index(j.action), j.scale, j.offset) for j in task.leader_arm.joints] == [
        (m["joint"], m["axis"], m["scale"], m["offset"]) for m in leader
    ]


def test_so101_description_drives_every_joint_one_to_one():
    task = get_task("so101_pick")
    assert task.action.names == task.observations.proprio == task.observations.state[:6]
    assert set(task.action.units) == {"rad"}
    assert task.leader_arm is not None and task.leader_arm.robot == "so101"
    assert [(j.joint, j.action, j.scale, j.offset) for j in task.leader_arm.joints] == [
        (n, n, 1.0, 0.0) for n in task.action.names
    ]
    assert task.jog.space == "end_effector" and {k.axis for k in task.jog.keys} >= {"ee_x", "ee_y", "ee_z", "gripper"}


def test_descriptions_are_frozen():
    task = get_task("so101_pick")
    with pytest.raises(dataclasses.FrozenInstanceError):
        task.episode_steps = 5  # type: ignore[misc]


@pytest.mark.probe("malformed task descriptions (limits, lengths, names, mappings)", "ValueError naming the problem")
def test_bad_descriptions_are_refused():
    with pytest.raises(ValueError, match="low < high"):
        ActionSpace(("a",), (1.0,), (0.0,), ("m",), 10.0)
    with pytest.raises(ValueError, match="one per name"):
        ActionSpace(("a", "b"), (0.0,), (1.0,), ("m",), 10.0)
    with pytest.raises(ValueError, match="unique"):
        ActionSpace(("a", "a"), (0.0, 0.0), (1.0, 1.0), ("m", "m"), 10.0)
    with pytest.raises(ValueError, match="fps"):
        ActionSpace(("a",), (0.0,), (1.0,), ("m",), 0.0)
    with pytest.raises(ValueError, match="size"):
        Camera("c", 0, 10)
    with pytest.raises(ValueError, match="scale"):
        LeaderArmMap("so101", (LeaderJoint("j", "a", 0.0),))
    base = get_task("pusht")
    with pytest.raises(ValueError, match="unknown actions"):
        dataclasses.replace(base, leader_arm=LeaderArmMap("so101", (LeaderJoint("shoulder_pan", "nope"),)))
    with pytest.raises(ValueError, match="unknown axes"):
        dataclasses.replace(base, jog=JogMap("action", (JogKey("w", "ee_z", 1.0),)))  # ee axes need end_effector
    with pytest.raises(ValueError, match="episode_steps"):
        dataclasses.replace(base, episode_steps=0)
    with pytest.raises(ValueError, match="camera"):
        Observations((), ("p",), ("s",))
    with pytest.raises(ValueError, match="finite"):
        Success("m", float("nan"), "")
    with pytest.raises(ValueError, match="detector must be one of"):
        LoopOptions(detector="oracle")
    with pytest.raises(ValueError, match="frames, the proprio or both"):
        LoopOptions(detector_frames=False)
    with pytest.raises(ValueError, match="needs detector_metric_weight"):
        LoopOptions(detector_score="metric")
    assert isinstance(base, Task)


def test_the_arm_describes_the_detector_its_loop_trains():
    """The task's loop options become the detector's configuration; the JSON summary carries them."""
    from hiwm.world_model.detector import for_task

    arm = get_task("so101_pick")
    cfg, metric = for_task(arm)
    assert metric == "lift" and cfg.metric_scale == arm.success.threshold and cfg.score == "metric"
    assert not cfg.frames and cfg.proprio_layers == 2
    assert arm.summary()["loop"]["detector"] == "learned"
    cfg, metric = for_task(get_task("pusht"))
    assert metric == "" and cfg.frames and cfg.score == "success"


def test_importing_the_registry_loads_no_physics():
    heavy = ("mujoco", "gym_pusht", "pymunk", "torch")
    code = f"import sys, hiwm.tasks; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[]"


def test_hiwm_tasks_lists_the_tasks_as_json_and_as_lines():
    out = subprocess.run(
        [sys.executable, "-m", "hiwm.cli.main", "tasks", "--json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    listed = json.loads(out.stdout)
    lines = subprocess.run(
        [sys.executable, "-m", "hiwm.cli.main", "tasks"], capture_output=True, text=True, check=True, timeout=120
    ).stdout.splitlines()
    assert [line.split()[0] for line in lines] == list(task_names())
    assert [t["name"] for t in listed] == list(task_names())
    for entry in listed:
        assert {"name", "action_dim", "action_names", "cameras", "proprio_dim", "fps"} <= set(entry)
