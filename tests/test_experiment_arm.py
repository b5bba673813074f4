"""The Hi-WM loop on the arm (so101_pick) at smoke size: its physics as a session world, the profile
sized to its 100-step episodes, the verdict the world model judges by, and the whole loop end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hiwm.branch_cache.store import SOURCE_HUMAN, BranchStore
from hiwm.cli.main import main as hiwm
from hiwm.data import LeRobotDataset, verify
from hiwm.experiment.pipeline import Experiment, detector_rejection, missing_parts, threshold_uninformative
from hiwm.experiment.profiles import PROFILES
from hiwm.experiment.report import VERDICTS
from hiwm.tasks import get_task
from hiwm.worlds import RealWorld

ARM = "so101_pick"


def test_the_arm_restores_a_snapshot_exactly_and_replays_bit_for_bit():
    world = RealWorld(ARM)
    tw = world.task_world
    obs = world.reset(seed=3)
    expert = tw.make_expert(0.0, seed=3)
    for _ in range(12):
        obs = world.step(expert.act(tw.state(obs)))
    snap, at = world.snapshot(), obs
    actions = []
    for _ in range(8):  # on past the snapshot, then back
        actions.append(expert.act(tw.state(obs)))
        obs = world.step(actions[-1])
    replays = []
    for _ in range(2):
        back = world.restore(snap)
        assert back.step == at.step == 12 and world.max_metric == pytest.approx(at.lift)
        np.testing.assert_array_equal(tw.state(back), tw.state(at))  # the snapshot's state, bit for bit
        replays.append(np.stack([tw.state(world.step(a)) for a in actions]))
    np.testing.assert_array_equal(replays[0], replays[1])  # the same actions from a restore: the same states
    assert world.step(actions[0]).step == 21
    with pytest.raises(ValueError, match="step must be a whole number"):
        world.env.restore(tw.state(at), -1)
    with pytest.raises(ValueError, match="state must be 13"):
        world.env.restore([0.0, 1.0], 3)


def test_profiles_follow_the_task():
    assert missing_parts(get_task(ARM)) == [] and missing_parts(get_task("pusht")) == []
    for name, p in PROFILES.items():
        push = p.for_task()  # 300-step episodes: every profile as it is, the probe's verdict
        assert push.max_steps == p.max_steps and push.operator == p.operator and push.detector == "probe", name
        arm = p.replace(task=ARM).for_task()
        assert arm.max_steps == min(p.max_steps, 100) and arm.detector == "learned"
        assert arm.for_task() == arm  # sized once
        scale = arm.max_steps / p.max_steps
        for field in ("stall_steps", "min_step", "rollback_steps", "correction_steps"):
            assert getattr(arm.operator, field) == max(1, round(getattr(p.operator, field) * scale)), (name, field)
    quick = PROFILES["quick"].replace(task=ARM).for_task().operator
    assert (quick.stall_steps, quick.min_step, quick.rollback_steps, quick.correction_steps) == (25, 25, 10, 10)
    assert PROFILES["quick"].replace(task=ARM, detector="probe").for_task().detector == "probe"
    with pytest.raises(ValueError, match="detector must be one of"):
        PROFILES["smoke"].replace(detector="oracle")


def test_a_detector_or_probe_threshold_that_tells_nothing_is_not_the_verdict():
    assert detector_rejection({"calibration": {"scale": 0.4}}) == ""
    assert "inverts" in detector_rejection({"calibration": {"scale": -0.05}})
    assert detector_rejection({}) == "no calibration"
    fit = {"calibration": {"scale": 0.4}}
    blind = {**fit, "in_model": {"episodes": 20, "agreement": 0.8, "constant": 0.8, "balanced": 0.5}}
    assert "balanced agreement with their outcomes is 50%" in detector_rejection(blind)
    assert detector_rejection({**fit, "in_model": {"episodes": 20, "balanced": 0.72}}) == ""
    assert detector_rejection({**fit, "in_model": {"episodes": 5, "balanced": float("nan")}}) == ""
    # 15 of 20 calibration episodes succeed: 75 % agreement is what "always success" gets
    assert threshold_uninformative({"episodes": 20, "successes": 15, "agreement": 0.75})
    assert not threshold_uninformative({"episodes": 20, "successes": 15, "agreement": 0.85})
    assert threshold_uninformative({"episodes": 20, "successes": 4, "agreement": 0.8})  # "always failure"
    assert not threshold_uninformative({})  # no calibration run: the threshold is the task's already
    # a threshold within the probe's error of the start (1.1 mm of lift): 3 of 20 real first frames pass it
    fitted = {"episodes": 60, "successes": 45, "agreement": 0.783, "threshold": 0.0011}
    assert threshold_uninformative(fitted, [0.0] * 17 + [0.002] * 3)
    assert not threshold_uninformative(fitted, [0.0] * 19 + [0.002])
    assert not threshold_uninformative(fitted)


@pytest.fixture(scope="module")
def arm(tmp_path_factory):
    out = tmp_path_factory.mktemp("arm")
    assert hiwm(["experiment", "--task", ARM, "--profile", "smoke", "--out", str(out), "--from-scratch"]) == 0
    return out


def test_the_arm_smoke_runs_the_whole_loop(arm):
    task = get_task(ARM)
    profile = json.loads((arm / "profile.json").read_text())
    assert profile["task"] == ARM and profile["detector"] == "learned"
    results = json.loads((arm / "results.json").read_text())
    assert {r["method"] for r in results["rows"]} == {"base", "hiwm_r1", "baseline", "oracle_r1"}
    for row in results["rows"]:  # both worlds' figures, each seed's outcome, the arm's metric
        for world in ("real", "model"):
            assert row[world]["episodes"] == 2 and 0.0 <= row[world]["success_rate"] <= 1.0
            assert len(row[world]["per_seed"]) == 2 and "mean_max_lift" in row[world]
            assert all("max_lift" in e for e in row[world]["per_seed"])
    report = (arm / "report.md").read_text()
    assert report.startswith(f"# Hi-WM on {ARM}: profile `smoke`") and "real mean max lift" in report
    exp = Experiment(PROFILES["smoke"].replace(task=ARM), arm, progress=False)
    assert "| act | hiwm_r1 |" in report and VERDICTS[exp.verdict()] in report
    for plot in ("success.png", "correlation.png", "corrections.png", "branch_tree.png"):
        assert (arm / plot).stat().st_size > 5000
    assert "![branch tree](branch_tree.png)" in report and "corrected" in report  # its text listing too
    assert "`data/act_corrections`" in report  # what was exported for post-training

    # the world model judges success by the detector trained on the run's real episodes, unless its
    # calibration rejected it; then by the probe (saved as the detector at the task's threshold
    # where the probe's fitted one tells nothing)
    from hiwm.world_model.world import ModelWorld

    learned = arm / "world_model" / "detector" / "metrics.json"
    rejected = arm / "world_model" / "detector_rejected" / "metrics.json"
    assert learned.exists() != rejected.exists()
    kind = ModelWorld(arm / "world_model", task=ARM).sim.detector.kind
    if learned.exists():
        assert exp.verdict() == "learned" == kind and json.loads(learned.read_text())["split"]["test"] >= 1
    else:
        assert json.loads(rejected.read_text())["rejected"] and kind == "probe"

    # the operator stepped in in the world model and forked corrections there, in the branch cache
    summary = json.loads((arm / "rollouts" / "act_hiwm_r1.json").read_text())
    forks = PROFILES["smoke"].operator.forks
    assert summary["failure_states"] >= 1 and summary["corrections"] == forks * summary["failure_states"]
    with BranchStore(arm / "rollouts" / "act_hiwm_r1.db", readonly=True) as store:
        corrected = [b for b in store.branches() if "corrected" in b.labels]
        assert len(corrected) == summary["corrections"] and all(b.parent_branch is not None for b in corrected)
        nodes = store.trajectory(corrected[0].id)
        human = [n for n in nodes if n.source == SOURCE_HUMAN]
        assert human and nodes[0].step == 0 and all(len(n.action) == 6 for n in human)

    # the corrections exported as episodes of the arm: 6-D joint targets named as its joints
    corrections = arm / "data" / "act_corrections"
    assert verify(corrections).ok
    ds = LeRobotDataset(corrections)
    assert ds.features["action"]["shape"] == [6] and ds.features["action"]["names"] == list(task.action.names)
    assert ds.features["observation.state"]["names"] == list(task.observations.proprio)
    episode = ds.episode(0, videos=False)
    assert episode["action"].shape[1] == 6 and episode["intervention"].all()
    lows, highs = np.array(task.action.low), np.array(task.action.high)
    assert np.all(episode["action"] >= lows - 1e-5) and np.all(episode["action"] <= highs + 1e-5)
    base = (arm / "policies/act/base/model.safetensors").read_bytes()
    assert (arm / "policies/act/hiwm_r1/model.safetensors").read_bytes() != base

    # the physics as a session world: the takeover sessions and the oracle, exported with their states
    takeover = LeRobotDataset(arm / "data" / "act_takeover")
    assert takeover.features["observation.environment_state"]["names"] == list(task.observations.state)
    oracle = json.loads((arm / "rollouts" / "act_oracle_r1.json").read_text())
    assert oracle["corrections"] == forks * oracle["failure_states"] >= forks
    stages = list(json.loads((arm / "timings.json").read_text()))
    assert stages.index("world model") < stages.index("success detector") < stages.index("hi-wm rollouts act r1")
    plan = [name for name, _, _ in exp.stages()]
    assert stages == [name for name in plan if name in stages]


def test_a_run_ships_its_models_and_the_loop_post_trains_them(arm, share, tmp_path, capsys):
    from hiwm.paths import shipped_model

    assert shipped_model(ARM, "world_model") is None
    assert hiwm(["models", "ship", str(arm), "--into", str(share / "models")]) == 0
    world, act = shipped_model(ARM, "world_model"), shipped_model(ARM, "act")
    assert world == share / "models" / ARM / "world_model" and act == share / "models" / ARM / "act"
    assert (world / "detector").is_dir() and not (world / "optimizer.safetensors").exists()
    assert "optimizer" not in json.loads((world / "config.json").read_text())
    assert not (act / "train_state.safetensors").exists()
    for card in (world / "MODEL_CARD.md", act / "MODEL_CARD.md"):
        text = card.read_text()
        assert "--profile smoke --from-scratch" in text and "## Figures" in text
    assert "real success:" in (act / "MODEL_CARD.md").read_text()
    data = json.loads((act / "config.json").read_text())["train"]["data"]
    assert data[0]["path"] == "demos" and data[0]["collect"]["episodes"] == 3
    assert (data[0]["collect"]["seed"], data[0]["collect"]["task"], data[0]["collect"]["noise"]) == (0, ARM, 0.0)
    # the same checkpoints named one by one (as `hiwm train` leaves them) ship the same files
    named = tmp_path / "named"
    argv = ["--task", ARM, "--world-model", str(arm / "world_model"), "--policy", f"act={arm / 'policies/act/base'}"]
    assert hiwm(["models", "ship", *argv, "--into", str(named), "--command", "hiwm train ..."]) == 0
    for kind in ("world_model", "act"):
        assert json.loads((named / ARM / kind / "config.json").read_text()) == json.loads(
            (share / "models" / ARM / kind / "config.json").read_text()
        )
        assert "hiwm train ..." in (named / ARM / kind / "MODEL_CARD.md").read_text()
    assert hiwm(["models", "ship", "--task", ARM, "--policy", f"diffusion={arm / 'policies/act/base'}"]) == 2
    assert "not a diffusion checkpoint" in capsys.readouterr().err
    capsys.readouterr()
    assert hiwm(["models", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {(r["task"], r["kind"]) for r in listed} == {(ARM, "world_model"), (ARM, "act")}
    assert all(0 < r["mb"] < 25 for r in listed)

    # the loop on the shipped models: nothing trained but the post-training, the base's demos collected
    # again from its recorded recipe, seed for seed
    out = tmp_path / "shipped"
    assert hiwm(["experiment", "--task", ARM, "--profile", "smoke", "--out", str(out)]) == 0
    profile = json.loads((out / "profile.json").read_text())
    assert profile["world_model"] == str(world) and profile["base_policies"] == {"act": str(act)}
    stages = json.loads((out / "timings.json").read_text())
    assert "train base act" not in stages and "success detector" not in stages and "post-train act r1" in stages
    again, first = LeRobotDataset(out / "data" / "act_base_0"), LeRobotDataset(arm / "data" / "demos")
    assert again.num_episodes == first.num_episodes == 3
    np.testing.assert_array_equal(again.episode(2, videos=False)["action"], first.episode(2, videos=False)["action"])
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert {r["method"] for r in rows} >= {"base", "hiwm_r1"} and rows[0]["checkpoint"] == str(act)


def test_the_demo_profile_needs_shipped_models(share, tmp_path, capsys):
    out = tmp_path / "demo"
    assert hiwm(["experiment", "--task", ARM, "--profile", "demo", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "trains no models of its own" in err and "world_model, act" in err and ARM in err
    assert not out.exists()  # nothing made
    assert hiwm(["experiment", "--task", ARM, "--profile", "demo", "--from-scratch", "--out", str(out)]) == 2
    assert "trains no models" in capsys.readouterr().err
    demo = PROFILES["demo"]
    assert not demo.baseline and not demo.trains and demo.rounds == 1
    shipped = demo.replace(world_model="wm", base_policies={"act": "act"})  # as with_shipped names them
    plan = [name for name, _, _ in Experiment(shipped, tmp_path / "plan").stages()]
    assert "baseline rollouts act" not in plan and plan[-2:] == ["eval act base", "eval act hiwm_r1"]
