"""The Hi-WM loop end to end at smoke size: real expert data, a (tiny) world model, a policy, the
simulated operator's corrections in the branch cache, post-training, evaluation in both worlds."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from hiwm.branch_cache.export import encode_png
from hiwm.branch_cache.store import SOURCE_HUMAN, BranchStore, InvalidInputError
from hiwm.cli.main import main as hiwm
from hiwm.data import LeRobotDataset, verify
from hiwm.experiment.pipeline import Experiment
from hiwm.experiment.profiles import PROFILES
from hiwm.experiment.rollouts import SimulatedOperatorConfig, stalled
from hiwm.tasks import get_task
from hiwm.worlds import RealWorld


def test_the_real_world_restores_a_snapshot_and_the_episode_goes_on():
    world = RealWorld()
    obs = world.reset(seed=3)
    for _ in range(15):
        obs = world.step(obs.agent_pos + np.array([12.0, 8.0]))  # into the block, on most seeds
    snap, at = world.snapshot(), obs
    for _ in range(10):
        world.step(np.array([40.0, 40.0]))
    back = world.restore(snap)
    assert back.step == at.step == 15 and back.max_coverage == pytest.approx(at.max_coverage)
    np.testing.assert_allclose(back.state, at.state, atol=1e-6)
    assert world.step(at.agent_pos).step == 16
    with pytest.raises(ValueError, match="not a RealWorld snapshot"):
        world.restore(b"\x89PNG")
    with pytest.raises(ValueError, match="step must be >= 0"):
        world.env.restore(at.state, -1, 0.0)


def test_a_physics_session_exports_with_its_states_for_world_model_training(tmp_path):
    from hiwm.branch_cache.export import export_branches
    from hiwm.experiment.rollouts import BranchRecorder
    from hiwm.world_model.data import load_episodes

    world = RealWorld()
    with BranchStore(tmp_path / "cache.db") as store:
        rec = BranchRecorder(store, world, "s")
        obs = world.reset(seed=3)
        rec.add(obs, None, 0)
        seen = [obs]
        for _ in range(12):
            obs = world.step(obs.agent_pos + np.array([12.0, 8.0]))
            rec.add(obs, obs.agent_pos, SOURCE_HUMAN)
            seen.append(obs)
        root = store.session("s").root_branch
        export_branches(store, [root], tmp_path / "ds", env_state=RealWorld.state_of, progress=False)
        with pytest.raises(InvalidInputError, match="no pusht state"):  # a model's snapshot has none
            store.append("s", b"latent bytes", parent=rec.cursor, step=13, action=[1.0, 2.0], source=0,
                         frame=encode_png(obs.image), state=[1.0, 2.0])  # fmt: skip
            export_branches(store, [root], tmp_path / "bad", env_state=RealWorld.state_of, progress=False)
    assert not (tmp_path / "bad").exists()
    episode = LeRobotDataset(tmp_path / "ds").episode(0)
    np.testing.assert_allclose(episode["observation.environment_state"], [o.state for o in seen[:-1]], atol=1e-3)
    np.testing.assert_allclose(episode["next.coverage"], [o.coverage for o in seen[1:]], atol=1e-4)
    assert episode["next.done"][-1] and not episode["next.done"][:-1].any()
    assert verify(tmp_path / "ds").ok
    assert load_episodes([tmp_path / "ds"], progress=False)[0].states.shape == (12, 5)  # the world model reads it


def test_stall_detection():
    cfg = SimulatedOperatorConfig(stall_steps=5, min_progress=0.02, min_step=3)
    assert not stalled([0.1] * 4, 3, cfg)  # too early to judge
    assert stalled([0.1] * 10, 9, cfg)
    assert not stalled([0.1] * 5 + [0.2] * 5, 9, cfg)


def test_a_task_the_loop_cannot_run_is_refused_at_once(tmp_path, capsys, monkeypatch):
    from hiwm.tasks.so101.world import So101World
    from hiwm.tasks.world import TaskWorld

    monkeypatch.setattr(So101World, "restore_env", TaskWorld.restore_env)  # an arm that cannot restore
    out = tmp_path / "arm"
    assert hiwm(["experiment", "--task", "so101_pick", "--profile", "smoke", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("hiwm experiment: error: task 'so101_pick'")
    assert "session world" in err and "restore_env" in err
    assert not out.exists()  # nothing made
    with pytest.raises(ValueError, match="unknown task"):
        PROFILES["smoke"].replace(task="nope")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("experiment")
    results = out / "docs" / "results" / "pusht.json"  # a folder the run makes
    argv = ["experiment", "--profile", "smoke", "--from-scratch", "--out", str(out), "--results-json", str(results)]
    assert hiwm(argv) == 0
    return out


def test_smoke_runs_the_whole_loop(smoke):
    results = json.loads((smoke / "results.json").read_text())
    assert {(r["backbone"], r["method"]) for r in results["rows"]} == {
        ("act", "base"), ("act", "hiwm_r1"), ("act", "baseline"), ("act", "oracle_r1")
    }  # fmt: skip
    seeds = [PROFILES["smoke"].eval_first_seed + i for i in range(2)]
    for row in results["rows"]:
        assert row["real"]["episodes"] == 2 and row["model"]["episodes"] == 2
        assert 0.0 <= row["real"]["success_rate"] <= 1.0
        for world in ("real", "model"):  # each checkpoint on the same seeds, each seed's outcome kept
            assert [e["seed"] for e in row[world]["per_seed"]] == seeds
            assert sum(e["success"] for e in row[world]["per_seed"]) == round(2 * row[world]["success_rate"])
    # the headline figures: the run's own, copied to --results-json; paired on the same two seeds
    headline = json.loads((smoke / "headline.json").read_text())
    assert json.loads((smoke / "docs" / "results" / "pusht.json").read_text()) == headline == results["headline"]
    assert set(headline) == {"act", "pearson_r"}
    assert set(headline["act"]) == {"hiwm_vs_base", "hiwm_vs_baseline", "oracle_vs_base"}
    for entry in headline["act"].values():
        assert set(entry) == {"diff", "ci", "p", "significant", "n"} and entry["n"] == 2
        assert not entry["significant"]  # two seeds can never tell (McNemar p >= 0.5)
    assert headline["pearson_r"]["checkpoints"] == 4
    assert results["paired"]["act"]["hiwm_vs_base"]["a"] == "hiwm_r1"
    report = (smoke / "report.md").read_text()
    assert report.startswith("# Hi-WM on pusht: profile `smoke`")
    assert get_task("pusht").description in report and "real mean max coverage" in report
    assert "| act | hiwm_r1 |" in report and "Pearson r" in report and "| act | hiwm_r1 vs base | real | 2 |" in report
    for plot in ("success.png", "correlation.png", "corrections.png"):
        assert (smoke / plot).stat().st_size > 5000

    # the operator stepped in, forked corrections from each failure state, all in the branch cache
    summary = json.loads((smoke / "rollouts" / "act_hiwm_r1.json").read_text())
    assert summary["failure_states"] >= 1 and summary["corrections"] == 2 * summary["failure_states"]
    with BranchStore(smoke / "rollouts" / "act_hiwm_r1.db", readonly=True) as store:
        corrected = [b for b in store.branches() if "corrected" in b.labels]
        assert len(corrected) == summary["corrections"]
        nodes = store.trajectory(corrected[0].id)
        assert any(n.source == SOURCE_HUMAN for n in nodes) and nodes[0].step == 0
        assert all(b.parent_branch is not None for b in corrected)  # forks of the rollout

    # exported corrections: the operator's frames only (correction segment), lineage; the post-trained
    # policy is a new checkpoint
    corrections = smoke / "data" / "act_corrections"
    assert verify(corrections).ok
    ds = LeRobotDataset(corrections)
    flags = np.concatenate([ds.episode(i, videos=False)["intervention"] for i in range(ds.num_episodes)])
    assert flags.all() and 0 < len(flags) <= summary["corrections"] * PROFILES["smoke"].operator.correction_steps
    assert (corrections / "meta" / "branch_lineage.json").exists()
    base = (smoke / "policies/act/base/model.safetensors").read_bytes()
    assert (smoke / "policies/act/hiwm_r1/model.safetensors").read_bytes() != base

    # the world model also learned from the base policy's takeover sessions in the physics: exported
    # with their physics states, before the world model was trained
    takeover = json.loads((smoke / "rollouts" / "act_takeover.json").read_text())
    ds = LeRobotDataset(smoke / "data" / "act_takeover")
    assert ds.num_episodes == takeover["sessions"] + takeover["corrections"] >= 1
    assert "observation.environment_state" in ds.features and verify(smoke / "data" / "act_takeover").ok
    stages = list(json.loads((smoke / "timings.json").read_text()))
    assert stages.index("train base act") < stages.index("takeover sessions act") < stages.index("world model")
    # the stages the run announces ("[stage i/n] ...") are the ones it ran, in its order
    plan = [name for name, _, _ in Experiment(PROFILES["smoke"], smoke, progress=False).stages()]
    assert set(stages) <= set(plan) and stages == [name for name in plan if name in stages]

    # the oracle control: the same rounds in the physics, its corrections exported as their own data
    oracle = json.loads((smoke / "rollouts" / "act_oracle_r1.json").read_text())
    assert oracle["corrections"] == 2 * oracle["failure_states"] >= 2
    assert LeRobotDataset(smoke / "data" / "act_oracle").num_episodes == len(oracle["kept_branches"])
    assert (smoke / "policies/act/oracle_r1/model.safetensors").read_bytes() != base
    assert results["paired"]["act"]["oracle_vs_base"]["a"] == "oracle_r1"


def test_a_rerun_resumes_without_redoing_work(smoke):
    before = json.loads((smoke / "timings.json").read_text())
    row = smoke / "eval" / "act_base.json"  # as a run wrote it before rows kept each seed's outcome
    doc = json.loads(row.read_text())
    kept = doc["real"].pop("per_seed")
    row.write_text(json.dumps(doc))
    assert hiwm(["experiment", "--profile", "smoke", "--from-scratch", "--out", str(smoke)]) == 0
    results = json.loads((smoke / "results.json").read_text())
    base = next(r for r in results["rows"] if r["method"] == "base")
    assert base["real"]["per_seed"] == kept  # read back from that evaluation's episodes.json
    assert results["paired"]["act"]["hiwm_vs_base"]["real"]["n"] == 2
    after = json.loads((smoke / "timings.json").read_text())
    assert after["world model"] - before["world model"] < 2.0
    assert after["train base act"] - before["train base act"] < 2.0
    assert after["takeover sessions act"] - before["takeover sessions act"] < 2.0


def test_a_given_base_policy_is_post_trained_on_its_own_data(tmp_path):
    from hiwm.data.collect import CollectConfig, collect
    from hiwm.policy import build_model, save_checkpoint

    demos = tmp_path / "lab_demos"
    collect(CollectConfig(episodes=1, seed=7, max_steps=8), demos)
    model = build_model("act", {"image_size": 16, "crop": 16, "channels": [8], "dim": 16, "heads": 2, "ff_dim": 16})
    ckpt = save_checkpoint(tmp_path / "lab_act", model, {"data": [{"path": str(demos), "ratio": 2.0}]})

    exp = Experiment(PROFILES["smoke"].replace(base_policies={"act": str(ckpt)}), tmp_path / "run", progress=False)
    base, data = exp.base_policy("act")
    assert base == ckpt and data == [(str(demos), 2.0)]
    assert "train base act" not in exp.timings and not (tmp_path / "run" / "policies").exists()  # nothing trained
    share = exp.p.corrections_share
    assert exp.mix(data, tmp_path / "corr") == [f"{demos}:{1 - share}", f"{tmp_path / 'corr'}:{share}"]

    wrong = Experiment(PROFILES["smoke"].replace(base_policies={"diffusion": str(ckpt)}), tmp_path / "run2")
    with pytest.raises(ValueError, match="backbone act, not diffusion"):
        wrong.base_policy("diffusion")
    gone = save_checkpoint(tmp_path / "elsewhere", model, {"data": [{"path": str(tmp_path / "not_here")}]})
    with pytest.raises(ValueError, match="not on this machine"):
        Experiment(PROFILES["smoke"].replace(base_policies={"act": str(gone)}), tmp_path / "run3").base_policy("act")
    with pytest.raises(SystemExit, match="BACKBONE=CHECKPOINT"):
        hiwm(["--debug", "experiment", "--profile", "smoke", "--out", str(tmp_path / "run4"), "--base-policy", "arm=x"])
    with pytest.raises(SystemExit, match="not a backbone of this run"):  # smoke runs ACT only
        out = str(tmp_path / "run5")
        hiwm(["--debug", "experiment", "--profile", "smoke", "--out", out, "--base-policy", f"diffusion={ckpt}"])
    with pytest.raises(SystemExit, match="must be >= 0"):
        out = str(tmp_path / "run6")
        hiwm(["--debug", "experiment", "--profile", "smoke", "--out", out, "--wm-takeover-sessions", "-1"])


def test_a_given_world_model_is_used_as_is_and_nothing_is_collected_for_it(smoke, tmp_path, capsys):
    import shutil

    given = {"world_model": str(smoke / "world_model"), "base_policies": {"act": str(smoke / "policies/act/base")}}
    exp = Experiment(PROFILES["smoke"].replace(**given), tmp_path / "run", progress=False)
    exp.check()
    exp.collect()
    assert exp.world_model() == smoke / "world_model" and exp.world == smoke / "world_model"
    assert not (tmp_path / "run" / "data").exists() and not (tmp_path / "run" / "world_model").exists()

    blind = shutil.copytree(smoke / "world_model", tmp_path / "blind")  # a world model with no state probe
    doc = json.loads((blind / "config.json").read_text())
    (blind / "config.json").write_text(json.dumps({**doc, "probe": None}))
    with pytest.raises(ValueError, match="no state probe"):
        Experiment(PROFILES["smoke"].replace(world_model=str(blind)), tmp_path / "run2").check()
    out = str(tmp_path / "run3")
    assert hiwm(["experiment", "--profile", "smoke", "--out", out, "--world-model", "not_here"]) == 2
    assert re.match(r"hiwm experiment: error: .*not_here", capsys.readouterr().err)


def test_post_training_keeps_the_base_batch_size_at_a_gentle_rate(tmp_path):
    from hiwm.data.collect import CollectConfig, collect
    from hiwm.policy import build_model, save_checkpoint
    from hiwm.policy.checkpoint import read_config

    demos = tmp_path / "demos"
    collect(CollectConfig(episodes=2, seed=3, max_steps=20), demos)
    model = build_model("act", {"image_size": 16, "crop": 16, "channels": [8], "dim": 16, "heads": 2, "ff_dim": 16})
    base = save_checkpoint(tmp_path / "base", model, {"data": [{"path": str(demos)}], "batch_size": 8, "lr": 3e-4})
    exp = Experiment(PROFILES["smoke"], tmp_path / "run", progress=False)
    tuned = exp.train_policy("act", tmp_path / "tuned", [str(demos)], 0.02, base)
    train = read_config(tuned)["train"]
    assert train["batch_size"] == 8 and train["lr"] == exp.p.finetune_lr and train["init"] == str(base)
    fresh = exp.train_policy("act", tmp_path / "fresh", [str(demos)], 0.02, None)  # a base policy: the defaults
    assert read_config(fresh)["train"]["batch_size"] == 64
