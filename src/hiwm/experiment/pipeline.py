"""``hiwm experiment``: the Hi-WM post-training loop end to end on a task, and its results table.

Stages, each skipped when its output already exists (a run resumes where it stopped):

1. data: limited expert demos (the base policy's) and sloppy/failing expert episodes (the world
   model's, with the demos);
2. per backbone, the base policy on the demos (or a checkpoint trained elsewhere: ``--base-policy``);
   with ``wm_takeover_sessions``, sessions of it with the operator in the physics, recorded for the
   world model with their states (the failure states a policy reaches and the recoveries from them);
3. the world model and its state probe on all of that (or a trained one: ``--world-model``), and
   where the task's verdict is a learned success detector, that detector on the real episodes;
4. per backbone, Hi-WM rounds: rollouts in the world model from real initial states, the simulated
   operator's corrections into the branch cache, export of the corrections (all, or the successful
   ones; whole trajectories or the operator's frames), post-training of the policy on demos +
   corrections (intervention frames weighted);
5. per backbone, the closed-loop baseline: the same rollouts with no operator, the successful ones
   exported, the base policy fine-tuned on demos + those; with ``oracle``, the same rounds with the
   physics instead of the model as the world (what a perfect world model would give);
6. evaluation of every checkpoint in the real env and in the world model from the same initial
   states (the same seeds for every checkpoint, each seed's outcome kept); the report (markdown,
   plots, paired differences between checkpoints, Pearson r between the two worlds, the headline
   figures in ``headline.json``).

Each stage that starts says which of how many it is and how long the rest should take: the training
budgets of the stages to come, or the measured durations of stages of their kind.

The task is the profile's (``Profile.task``), the profile sized to it (:meth:`Profile.for_task`: its
episode length bounds ``max_steps`` and the operator's step counts). The loop needs the task's
physics as a session world (:class:`hiwm.worlds.RealWorld`: snapshot, restore), observations of a
world model and a scripted expert for the simulated operator (:mod:`hiwm.experiment.rollouts`), all
through its :class:`~hiwm.tasks.world.TaskWorld`: :func:`missing_parts` says what a task lacks, and an
:class:`Experiment` of it is refused before anything is done. The world model's success verdict is
the task's (``Task.loop.detector``) unless the profile names one: its state probe, or a learned
detector trained after the world model on the run's real episodes (stage ``success detector``).
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from hiwm.experiment.profiles import Profile
from hiwm.files import atomic_write_json
from hiwm.progress import redraw_interval
from hiwm.stats import majority_rate
from hiwm.tasks import Task, get_task

log = logging.getLogger("hiwm.experiment")

DEMO_SEED, WM_SEED, ROLLOUT_SEED, TAKEOVER_SEED = 0, 50_000, 20_000, 30_000
REJECTED_DETECTOR = "detector_rejected"  # a world model's learned detector the loop did not use


def detector_rejection(metrics: dict[str, Any]) -> str:
    """Why a trained detector's figures (:func:`hiwm.world_model.detector.train`) unfit it for the
    verdict ("" when fit): a calibration whose scale is not positive has success falling as the net's
    evidence rises on held-out episodes, so every ordinary frame would read as a success; one whose
    verdict on the world model's open-loop replays of real episodes (``in_model``) does no better than
    a constant answer on their successes and failures alike judges nothing there (a model's predicted
    joints the detector misreads)."""
    scale = metrics.get("calibration", {}).get("scale")
    if scale is None:
        return "no calibration"
    if scale <= 0:
        return f"its calibration inverts it (Platt scale {scale:.3g} <= 0)"
    model = metrics.get("in_model")
    if model and model["balanced"] <= 0.5:  # NaN (one outcome only) tells nothing either way
        return (
            f"on the world model's replays of {model['episodes']} real episodes its balanced agreement with "
            f"their outcomes is {model['balanced']:.0%}, no better than a constant answer (50%)"
        )
    return ""


START_SHARE = 0.1  # a verdict may call at most this share of real episodes' first frames a success


def threshold_uninformative(calibration: dict[str, Any], start_metrics: list[float] | None = None) -> bool:
    """Whether a probe's fitted success threshold (its ``calibration`` figures,
    :func:`hiwm.world_model.verdict.calibrate`) carries nothing: it agrees with the real outcomes no
    more often than answering the majority outcome for every episode, or the probe's readings of real
    episodes' first frames (``start_metrics``) pass it more often than :data:`START_SHARE` (a probe too
    coarse for the metric fits a threshold within its own error of the start and calls a start a
    success: every session then ends at its first frame)."""
    episodes, successes = calibration.get("episodes", 0), calibration.get("successes", 0)
    if not episodes:
        return False
    if start_metrics and np.mean(np.asarray(start_metrics) > calibration["threshold"]) > START_SHARE:
        return True
    return calibration["agreement"] <= majority_rate(successes, episodes)


def missing_parts(task: Task) -> list[str]:
    """What the loop lacks to run ``task`` (none: it runs): what its task world
    (:class:`~hiwm.tasks.world.TaskWorld`) must add to the generic one. Its physics as a session world
    (:class:`hiwm.worlds.RealWorld`) restores an episode from a true state; the world model's
    observations are built from their parts; the simulated operator (:mod:`hiwm.experiment.rollouts`)
    is the task's scripted expert."""
    from hiwm.tasks.world import TaskWorld, load_world

    world = type(load_world(task))
    needs = {
        "restore_env": "its physics as a session world (snapshot and restore: TaskWorld.restore_env)",
        "make_observation": "observations of a world model (TaskWorld.make_observation)",
        "make_expert": "a scripted expert for the simulated operator (TaskWorld.make_expert)",
    }
    return [what for name, what in needs.items() if getattr(world, name) is getattr(TaskWorld, name)]


class Experiment:
    def __init__(self, profile: Profile, out: str | Path, progress: bool = True) -> None:
        self.task = get_task(profile.task)
        missing = missing_parts(self.task)
        if missing:  # before anything is made
            raise ValueError(
                f"task {self.task.name!r}: the Hi-WM loop cannot run it yet; it lacks {' and '.join(missing)}"
            )
        if untrained := profile.untrained_parts():  # before anything is made
            raise ValueError(
                f"profile {profile.name!r} trains no models of its own and hiwm ships no {', '.join(untrained)} "
                f"for task {profile.task!r}: name them (--world-model, --base-policy) or use another profile"
            )
        self.metric = self.task.success.metric
        self.p, self.out, self.progress = profile.for_task(), Path(out), progress
        self.out.mkdir(parents=True, exist_ok=True)
        self.timings: dict[str, float] = {}
        self._load_timings()
        self._announced: set[str] = set()

    # -- bookkeeping -----------------------------------------------------------
    def _load_timings(self) -> None:
        path = self.out / "timings.json"
        if path.exists():
            self.timings = json.loads(path.read_text())

    def stages(self) -> list[tuple[str, str, float]]:
        """The run's stages in order as (name, kind, training budget in minutes or 0): the names
        ``timings.json`` records; a stage with nothing to do (nothing exported to train on) is skipped."""
        p = self.p
        plan = [("collect", "collect", 0.0)]
        trained = [b for b in p.backbones if b not in p.base_policies]
        if self.takeover_data:
            for b in p.backbones:
                plan += [(f"train base {b}", "train base", p.policy_minutes)] if b in trained else []
                plan.append((f"takeover sessions {b}", "takeover sessions", 0.0))
        plan.append(("world model", "world model", 0.0 if p.world_model else p.wm_minutes))
        if self.trains_detector:
            plan.append(("success detector", "success detector", 0.0))
        for b in p.backbones:
            if b in trained and not self.takeover_data:
                plan.append((f"train base {b}", "train base", p.policy_minutes))
            methods = ["base"]
            for k in range(1, p.rounds + 1):
                plan.append((f"hi-wm rollouts {b} r{k}", "hi-wm rollouts", 0.0))
                plan.append((f"post-train {b} r{k}", "fine-tune", p.finetune_minutes))
                methods.append(f"hiwm_r{k}")
            if p.baseline:
                plan.append((f"baseline rollouts {b}", "baseline rollouts", 0.0))
                plan.append((f"baseline fine-tune {b}", "fine-tune", p.finetune_minutes))
                methods.append("baseline")
            for k in range(1, p.rounds + 1) if p.oracle else ():
                plan.append((f"oracle rollouts {b} r{k}", "oracle rollouts", 0.0))
                plan.append((f"oracle fine-tune {b} r{k}", "fine-tune", p.finetune_minutes))
                methods.append(f"oracle_r{k}")
            plan += [(f"eval {b} {m}", "eval", 0.0) for m in methods]
        return plan

    def forecast(self, after: int) -> tuple[float, int]:
        """Minutes the stages after the ``after``-th (0-based) should take, and how many of them have
        no estimate yet. Stages done (in the timings) count nothing; the others the mean measured
        duration of the stages of their kind, else their training budget."""
        plan = self.stages()
        measured: dict[str, list[float]] = {}
        for name, kind, _ in plan:
            if name in self.timings:
                measured.setdefault(kind, []).append(self.timings[name])
        minutes, unknown = 0.0, 0
        for name, kind, budget in plan[after + 1 :]:
            if name in self.timings:
                continue
            if kind in measured:
                minutes += sum(measured[kind]) / len(measured[kind]) / 60
            elif budget:
                minutes += budget
            else:
                unknown += 1
        return minutes, unknown

    def stage_line(self, name: str) -> str:
        """``[stage 3/11] train base act (budget 2.5 min); the rest: ~40 min + 2 stages not yet timed``."""
        plan = self.stages()
        index = next((i for i, (n, _, _) in enumerate(plan) if n == name), None)
        if index is None:
            return f"[stage] {name}"
        budget = plan[index][2]
        minutes, unknown = self.forecast(index)
        line = f"[stage {index + 1}/{len(plan)}] {name}" + (f" (budget {budget:g} min)" if budget else "")
        if index + 1 < len(plan):
            rest = f"~{minutes:.{int(minutes < 10)}f} min" if minutes >= 0.05 else "< 0.1 min"
            line += f"; the rest: {rest}" if minutes or not unknown else "; the rest:"
            line += f" + {unknown} stage{'s' * (unknown > 1)} not yet timed" if unknown else ""
        return line

    def _timed(self, name: str, fn: Any, *args: Any) -> Any:
        if self.progress and name not in self._announced and name not in self.timings:
            tqdm.write(self.stage_line(name), file=sys.stderr)
        self._announced.add(name)
        start = time.monotonic()
        result = fn(*args)
        self.timings[name] = round(self.timings.get(name, 0.0) + time.monotonic() - start, 1)
        atomic_write_json(self.out / "timings.json", self.timings, indent=1)
        return result

    def path(self, *parts: str) -> Path:
        return self.out.joinpath(*parts)

    @property
    def world(self) -> Path:
        """The world-model checkpoint: the profile's, or the one trained in this run."""
        return Path(self.p.world_model) if self.p.world_model else self.path("world_model")

    @property
    def trains_detector(self) -> bool:
        """Whether this run trains a learned success detector into its world model (a given world
        model comes with its own verdict)."""
        return not self.p.world_model and self.p.detector == "learned"

    def real_data(self) -> list[Path]:
        """The run's datasets of real episodes: the demos, the sloppy expert episodes and the takeover
        sessions recorded so far."""
        takeovers = [self.path("data", f"{b}_takeover") for b in self.p.backbones]
        expert = [self.path("data", "demos"), self.path("data", "wm_noisy")]
        return expert + [t for t in takeovers if (t / "meta").exists()]

    @property
    def takeover_data(self) -> bool:
        """Whether the world model trained here learns from takeover sessions too."""
        return not self.p.world_model and self.p.wm_takeover_sessions > 0

    # -- stages ----------------------------------------------------------------
    def collect(self) -> None:
        from hiwm.data.collect import CollectConfig, collect

        p = self.p
        # the demos train the base policies and, with the sloppy episodes, the world model: only
        # what this run trains is collected
        need_demos = not p.world_model or any(b not in p.base_policies for b in p.backbones)
        if need_demos and not self.path("data", "demos", "meta", "info.json").exists():
            cfg = CollectConfig(episodes=p.demo_episodes, seed=DEMO_SEED, workers=p.workers, task=p.task)
            collect(cfg, self.path("data", "demos"))
        for backbone in p.base_policies:  # a given base policy's data, recorded as how it was collected
            for _, path, recipe in self.base_recipes(backbone):
                if not Path(path, "meta", "info.json").exists():
                    collect(CollectConfig(**recipe, workers=p.workers), path)
        if not p.world_model and not self.path("data", "wm_noisy", "meta", "info.json").exists():
            cfg = CollectConfig(
                episodes=p.wm_noisy_episodes, seed=WM_SEED, noise=p.wm_noise, workers=p.workers, task=p.task
            )
            collect(cfg, self.path("data", "wm_noisy"))

    def world_model(self) -> Path:
        from hiwm.world_model.config import WorldModelTrainConfig
        from hiwm.world_model.train import train

        if self.p.world_model:
            from hiwm.world_model.checkpoint import read_config

            if read_config(self.world)[0].probe is None:
                raise ValueError(f"world model {self.world}: no state probe; success in it cannot be judged")
            return self.world
        out = self.path("world_model")
        if not (out / "config.json").exists() or not json.loads((out / "config.json").read_text()).get("done"):
            from hiwm.world_model.config import preset
            from hiwm.world_model.train import probe_config, task_model_fields

            p = self.p
            cfg = WorldModelTrainConfig(
                steps=1_000_000,
                max_minutes=p.wm_minutes,
                threads=p.threads,
                probe_steps=p.probe_steps,
                probe_calibration=p.probe_calibration,
            )
            data = [str(d) for d in self.real_data()]
            # the task's interface (actions, proprio, cameras as recorded) on the default size, as
            # `hiwm train world-model --task` builds it
            model = preset("small", **task_model_fields(self.task, data, {}), task=self.task.name)
            train(data, out, model, cfg, probe_config(model), progress=self.progress)
            doc = json.loads((out / "config.json").read_text())
            doc["done"] = True
            atomic_write_json(out / "config.json", doc, indent=1)
        return out

    def _spread_real_episodes(self, episodes: int) -> tuple[list[Path], set[int]]:
        """The run's real datasets and the numbers of up to ``episodes`` of their episodes, evenly spread
        (numbered across the datasets in order, as :func:`hiwm.world_model.data.load_episodes` takes them)."""
        from hiwm.data import LeRobotDataset

        data = self.real_data()
        total = sum(LeRobotDataset(d).num_episodes for d in data)
        return data, set(range(0, total, max(1, total // episodes))[:episodes])

    def _detector_in_model(self, found: Any, episodes: int = 20) -> dict[str, float]:
        """``found``'s verdict on the run's world model replaying up to ``episodes`` of its real
        episodes open loop, evenly spread (:func:`hiwm.world_model.detector.agreement_in_model`); only
        those are decoded."""
        from hiwm.world_model.checkpoint import load
        from hiwm.world_model.data import load_episodes
        from hiwm.world_model.detector import agreement_in_model

        _, model, _ = load(self.world, with_probe=False)
        cfg, (data, picked) = model.cfg, self._spread_real_episodes(episodes)
        cameras = [name for name, _, _ in cfg.camera_list]
        real = load_episodes(data, False, cameras, cfg.proprio_dim, cfg.action_dim, only=picked)
        return agreement_in_model(model, found, real)

    def _probe_start_metrics(self, probe: Any, episodes: int = 20) -> list[float]:
        """The probe's reading of the success metric on the first frame of up to ``episodes`` of the
        run's real episodes, evenly spread: what a start state reads as."""
        from hiwm.world_model.data import load_episodes

        data, picked = self._spread_real_episodes(episodes)
        camera = self.task.cameras[0].name
        real = load_episodes(data, False, [camera], 0, self.task.action_dim, only=picked)
        return [float(probe.metric(probe.predict(e.frames[:1])[0])) for e in real]

    def success_detector(self) -> Path:
        """The success detector of the run's world model (``world_model/detector``, which the world
        model then judges success by): a learned one trained on the run's real episodes, calibrated and
        scored on held-out ones (``metrics.json`` beside it). One that cannot be calibrated, that its
        calibration inverts, or that judges the world model's replays of real episodes no better than a
        constant answer (:func:`detector_rejection`) goes to ``world_model/detector_rejected``,
        and the probe judges instead: at its fitted threshold, or at the task's own where that fit is
        no better than a constant answer (:func:`threshold_uninformative`)."""
        from hiwm.world_model import detector

        out, rejected = self.world / detector.FOLDER, self.world / REJECTED_DETECTOR
        if (out / detector.CONFIG).exists() or (rejected / "metrics.json").exists():
            return out
        cfg, metric = detector.for_task(self.task)
        episodes = detector.load_outcomes(self.real_data(), proprio=self.task.loop.detector_proprio, metric=metric)
        train_cfg = detector.DetectorTrainConfig(steps=self.p.detector_steps, threads=1)
        try:
            found, metrics = detector.train(episodes, cfg, train_cfg)
            reason = detector_rejection(metrics)
        except ValueError as exc:  # too few episodes of one outcome for its held-out splits
            found, metrics, reason = None, {}, str(exc)
        if not reason:  # it must also hold on what it will judge: the world model's predictions
            metrics["in_model"] = self._detector_in_model(found)
            reason = detector_rejection(metrics)
        if not reason:
            out.mkdir(parents=True, exist_ok=True)
            atomic_write_json(out / "metrics.json", metrics, indent=1)
            found.save(out)  # its detector.json last: the world model judges by it from then on
            return out
        from hiwm.world_model.checkpoint import load, read_config

        rejected.mkdir(parents=True, exist_ok=True)
        if found is not None:
            found.save(rejected)
        atomic_write_json(rejected / "metrics.json", {**metrics, "rejected": reason}, indent=1)
        calibration = read_config(self.world)[0].metrics.get("probe", {}).get("calibration", {})
        judge = "the state probe"
        _, _, probe = load(self.world)
        if threshold_uninformative(calibration, self._probe_start_metrics(probe)):
            # the probe at the task's own threshold, saved as the detector
            probe.cfg.success_threshold = self.task.success.threshold
            detector.ProbeDetector(probe).save(out)
            judge += f" at the task's threshold {self.task.success.threshold:g}"
        log.warning("the learned success detector is not used (%s): %s judges success", reason, judge)
        if self.progress:
            tqdm.write(f"success detector rejected ({reason}); {judge} judges success", file=sys.stderr)
        return out

    def verdict(self) -> str:
        """What judges success in the run's world model (a key of
        :data:`hiwm.experiment.report.VERDICTS`): its ``detector/`` (a learned one or the probe at the
        task's threshold), else its probe."""
        from hiwm.world_model import detector

        config = self.world / detector.FOLDER / detector.CONFIG
        if not config.exists():
            return "probe"
        return "learned" if json.loads(config.read_text()).get("kind") == "learned" else "task threshold"

    def train_policy(self, backbone: str, out: Path, data: list[str], minutes: float, init: Path | None) -> Path:
        from hiwm.policy.train import PolicyTrainConfig, train

        if (out / "done").exists():
            return out
        tuning = {}
        if init is not None:  # post-training: the init's batch size unless the profile names one
            from hiwm.policy.checkpoint import read_config

            batch = self.p.finetune_batch or int(read_config(init).get("train", {}).get("batch_size", 0))
            tuning = {"lr": self.p.finetune_lr, **({"batch_size": batch} if batch else {})}
        cfg = PolicyTrainConfig(
            backbone=backbone,
            data=data,
            out=str(out),
            steps=1_000_000,
            max_minutes=minutes,
            threads=self.p.threads,
            intervention_weight=self.p.intervention_weight,
            init=str(init) if init else "",
            task=self.p.task,
            **tuning,
        )
        train(cfg)
        (out / "done").write_text("")
        return out

    def rollouts(
        self, backbone: str, policy: Path, tag: str, operator: bool, real: bool = False, seeds: range | None = None
    ) -> dict[str, Any]:
        """World-model rollouts of ``policy`` (with or without the operator) into a branch store; with
        ``real``, the same sessions in the physics (the oracle control). ``seeds``: the profile's
        ``rollouts`` sessions from ``ROLLOUT_SEED`` unless given."""
        import torch

        from hiwm.branch_cache.store import BranchStore
        from hiwm.experiment.rollouts import run_session
        from hiwm.policy.runtime import load_policy
        from hiwm.world_model.world import ModelWorld
        from hiwm.worlds import RealWorld

        summary_path = self.path("rollouts", f"{backbone}_{tag}.json")
        if summary_path.exists():
            return json.loads(summary_path.read_text())
        summary_path.parent.mkdir(parents=True, exist_ok=True)
        # batch-1 steps of small models gain nothing from a second thread, and two threads on a
        # busy 2-core machine spin against the other process: measured 3x slower per session
        torch.set_num_threads(1)
        db = self.path("rollouts", f"{backbone}_{tag}.db")
        db.unlink(missing_ok=True)
        world = RealWorld(self.p.task) if real else ModelWorld(self.world, max_steps=self.p.max_steps, task=self.p.task)
        pol = load_policy(policy)
        results = []
        with BranchStore(db) as store:
            if seeds is None:
                seeds = range(ROLLOUT_SEED, ROLLOUT_SEED + self.p.rollouts)
            bar = tqdm(
                seeds,
                f"rollouts {backbone} {tag}",
                unit="session",
                disable=not self.progress,
                mininterval=redraw_interval(),
            )
            for seed in bar:
                r = run_session(
                    pol, world, store, f"{tag}-{seed}", seed, self.p.max_steps, self.p.operator if operator else None
                )
                results.append(r)
        keep_all = operator and self.p.keep_corrections == "all"  # the baseline keeps successes by definition
        # a branch that took no action (its world called the start a success) is no episode to learn from
        keep = [
            b.branch_id
            for r in results
            for b in (r.corrections if operator else [r.rollout])
            if (b.success or keep_all) and b.taken
        ]
        summary = {
            "store": str(db),
            "sessions": len(results),
            "rollout_success": sum(r.rollout.success for r in results) / max(1, len(results)),
            "failure_states": sum(bool(r.failure_state) for r in results),
            "corrections": sum(len(r.corrections) for r in results),
            "successful_corrections": sum(b.success for r in results for b in r.corrections),
            "corrections_per_failure_state": [len(r.corrections) for r in results if r.failure_state],
            "successful_per_failure_state": [sum(b.success for b in r.corrections) for r in results if r.failure_state],
            "kept_branches": keep,
        }
        atomic_write_json(summary_path, summary, indent=1)
        return summary

    def export(self, summary: dict[str, Any], out: Path, segment: str = "trajectory") -> bool:
        """The kept branches (``segment`` of each) into a dataset (appended); False when there was
        nothing to keep."""
        from hiwm.branch_cache.export import export_branches
        from hiwm.branch_cache.store import BranchStore

        marker = out / f".exported-{Path(summary['store']).stem}"
        if marker.exists():
            return True
        if not summary["kept_branches"]:
            return out.joinpath("meta", "info.json").exists()
        with BranchStore(summary["store"], readonly=True) as store:
            export_branches(
                store, summary["kept_branches"], out, task=self.p.task, segment=segment, progress=self.progress
            )
        marker.write_text("")
        return True

    def takeovers(self, backbone: str) -> None:
        """``wm_takeover_sessions`` sessions of the base policy with the operator in the physics (seeds
        of their own), exported with their physics states as world-model data: each session's policy
        rollout whole and each correction from its fork node on."""
        from hiwm.branch_cache.export import export_branches
        from hiwm.branch_cache.store import BranchStore
        from hiwm.worlds import RealWorld

        out = self.path("data", f"{backbone}_takeover")
        if out.joinpath(".done").exists():
            return
        shutil.rmtree(out, ignore_errors=True)  # a half export from a stopped run: the store is redone whole
        base, _ = self.base_policy(backbone)
        seeds = range(TAKEOVER_SEED, TAKEOVER_SEED + self.p.wm_takeover_sessions)
        summary = self.rollouts(backbone, base, "takeover", True, True, seeds)
        with BranchStore(summary["store"], readonly=True) as store:
            branches = store.branches()
            roots = [b.id for b in branches if b.parent_branch is None]
            forks = [b.id for b in branches if b.parent_branch is not None]
            common = {"task": self.p.task, "env_state": RealWorld.state_of, "progress": self.progress}
            export_branches(store, roots, out, **common)
            if forks:
                export_branches(store, forks, out, segment="branch", **common)
        out.joinpath(".done").write_text("")

    def base_policy(self, backbone: str) -> tuple[Path, list[tuple[str, float]]]:
        """The base checkpoint and the data it was trained on, (path, ratio): what post-training
        mixes the corrections with. Trained on the demos here unless the profile names one; a named
        one's data must be on this machine, or be recorded as how it was collected (a shipped model's:
        :func:`base_recipes`), which the collect stage then collects into the run folder."""
        from hiwm.policy.checkpoint import read_config

        given = self.p.base_policies.get(backbone)
        if not given:
            demos = str(self.path("data", "demos"))
            base = self.path("policies", backbone, "base")
            self._timed(
                f"train base {backbone}", self.train_policy, backbone, base, [demos], self.p.policy_minutes, None
            )
            return base, [(demos, 1.0)]
        config = read_config(given)
        if config["backbone"] != backbone:
            raise ValueError(f"base policy {given}: backbone {config['backbone']}, not {backbone}")
        recipes = {i: path for i, path, _ in self.base_recipes(backbone)}
        entries = config.get("train", {}).get("data", [])
        data = [(recipes.get(i) or d["path"], float(d.get("ratio", 1.0))) for i, d in enumerate(entries)]
        here = [i in recipes or Path(path, "meta", "info.json").exists() for i, (path, _) in enumerate(data)]
        missing = [path for (path, _), ok in zip(data, here, strict=True) if not ok]
        if not data or missing:
            raise ValueError(
                f"base policy {given}: its training data {missing or '(none recorded)'} is not on this machine; "
                "post-training mixes it with the corrections"
            )
        return Path(given), data

    def base_recipes(self, backbone: str) -> list[tuple[int, str, dict[str, Any]]]:
        """(index, run-folder path, recipe) of each training dataset of the given base policy that is not on
        this machine but records how it was collected (``"collect"``: a :class:`CollectConfig`'s
        fields, as a shipped model's config does): the scripted expert reproduces it seed for seed."""
        from hiwm.policy.checkpoint import read_config

        given = self.p.base_policies.get(backbone)
        if not given:
            return []
        entries = read_config(given).get("train", {}).get("data", [])
        return [
            (i, str(self.path("data", f"{backbone}_base_{i}")), d["collect"])
            for i, d in enumerate(entries)
            if isinstance(d.get("collect"), dict) and not Path(d.get("path", ""), "meta", "info.json").exists()
        ]

    def mix(self, base_data: list[tuple[str, float]], extra: Path) -> list[str]:
        """Data specs for post-training: the base data keeps its own proportions, ``extra`` gets the
        profile's ``corrections_share``."""
        share, total = self.p.corrections_share, sum(r for _, r in base_data)
        return [f"{path}:{(1 - share) * r / total}" for path, r in base_data] + [f"{extra}:{share}"]

    def fine_tune(
        self, backbone: str, method: str, stage: str, summary: dict[str, Any], data: Path, segment: str,
        init: Path, base_data: list[tuple[str, float]],
    ) -> Path | None:  # fmt: skip
        """Export the rollouts' kept branches into ``data`` (appended) and fine-tune ``init`` on the
        base data + ``data`` into ``policies/<backbone>/<method>``; None when there is nothing to
        train on. ``stage`` names the step in timings.json."""
        if not self.export(summary, data, segment):
            return None
        out = self.path("policies", backbone, method)
        mixed = self.mix(base_data, data)
        self._timed(stage, self.train_policy, backbone, out, mixed, self.p.finetune_minutes, init)
        return out

    def loop_rounds(self, backbone: str, base: Path, base_data: list[tuple[str, float]], real: bool) -> dict[str, Path]:
        """The profile's rounds of the loop for one backbone, in the world model (methods ``hiwm_r<k>``)
        or, with ``real``, in the physics (``oracle_r<k>``): each round's sessions with the operator
        run the previous round's checkpoint, their corrections join the ones before (one dataset), and
        that checkpoint is fine-tuned on the base data + all of them. A round that kept nothing leaves
        the checkpoint as it was."""
        method, data = ("oracle", "oracle") if real else ("hiwm", "corrections")
        rollouts, tune = ("oracle rollouts", "oracle fine-tune") if real else ("hi-wm rollouts", "post-train")
        ckpts, current, corrections = {}, base, self.path("data", f"{backbone}_{data}")
        for k in range(1, self.p.rounds + 1):
            name = f"{method}_r{k}"
            summary = self._timed(f"{rollouts} {backbone} r{k}", self.rollouts, backbone, current, name, True, real)
            args = (summary, corrections, self.p.correction_segment, current, base_data)
            current = self.fine_tune(backbone, name, f"{tune} {backbone} r{k}", *args) or current
            ckpts[name] = current
        return ckpts

    def post_train(self, backbone: str) -> dict[str, Path]:
        """Base, Hi-WM rounds, the closed-loop baseline and (with ``oracle``) the same rounds in the
        physics for one backbone: their checkpoints."""
        p = self.p
        base, base_data = self.base_policy(backbone)
        ckpts = {"base": base, **self.loop_rounds(backbone, base, base_data, real=False)}
        if p.baseline:
            summary = self._timed(f"baseline rollouts {backbone}", self.rollouts, backbone, base, "baseline", False)
            data = self.path("data", f"{backbone}_baseline")
            stage = f"baseline fine-tune {backbone}"
            tuned = self.fine_tune(backbone, "baseline", stage, summary, data, "trajectory", base, base_data)
            ckpts["baseline"] = tuned or base
        if p.oracle:
            ckpts |= self.loop_rounds(backbone, base, base_data, real=True)
        return ckpts

    def evaluate(self, backbone: str, method: str, ckpt: Path) -> dict[str, Any]:
        """Success of one checkpoint in the real env and in the world model, same initial states."""
        from hiwm.policy.evaluate import EvalConfig, evaluate

        path = self.path("eval", f"{backbone}_{method}.json")
        if path.exists():
            row = json.loads(path.read_text())
            for world in ("real", "model"):  # a row from before rows kept each seed's outcome
                episodes = self.path("eval", f"{backbone}_{method}_{world}", "episodes.json")
                if "per_seed" not in row[world] and episodes.exists():
                    kept = ("seed", "success", f"max_{self.metric}")
                    row[world]["per_seed"] = [{k: e[k] for k in kept} for e in json.loads(episodes.read_text())]
            return row
        path.parent.mkdir(parents=True, exist_ok=True)
        p = self.p
        seeds = f"{p.eval_first_seed}:{p.eval_first_seed + p.eval_episodes}"
        common = {"policy": str(ckpt), "seeds": seeds, "workers": p.workers, "max_steps": p.max_steps, "videos": 2}
        common["task"] = p.task
        real = evaluate(EvalConfig(**common, out=str(self.path("eval", f"{backbone}_{method}_real"))))
        model = evaluate(
            EvalConfig(**common, world=str(self.world), out=str(self.path("eval", f"{backbone}_{method}_model")))
        )
        kept = ("success_rate", "success_ci95", f"mean_max_{self.metric}", "episodes", "per_seed")
        row = {
            "backbone": backbone,
            "method": method,
            "checkpoint": str(ckpt),
            "real": {k: real[k] for k in kept},
            "model": {k: model[k] for k in kept},
        }
        atomic_write_json(path, row, indent=1)
        return row

    def check(self) -> None:
        """Refuse, before any work, checkpoints given to the run that it cannot use (ValueError)."""
        if self.p.world_model:
            self.world_model()
        for backbone in self.p.base_policies:
            self.base_policy(backbone)

    def run(self) -> dict[str, Any]:
        start = time.monotonic()
        self.check()
        atomic_write_json(self.out / "profile.json", asdict(self.p), indent=1)
        self._timed("collect", self.collect)
        if self.takeover_data:
            for backbone in self.p.backbones:
                self.base_policy(backbone)  # trained (and timed) on its own before its sessions
                self._timed(f"takeover sessions {backbone}", self.takeovers, backbone)
        self._timed("world model", self.world_model)
        if self.trains_detector:
            self._timed("success detector", self.success_detector)
        rows = []
        for backbone in self.p.backbones:
            ckpts = self.post_train(backbone)
            for method, ckpt in ckpts.items():
                rows.append(self._timed(f"eval {backbone} {method}", self.evaluate, backbone, method, ckpt))
        from hiwm.experiment.report import write_report

        summaries = {f.stem: json.loads(f.read_text()) for f in sorted(self.path("rollouts").glob("*.json"))}
        seconds = time.monotonic() - start
        result = write_report(self.out, self.p, rows, summaries, self.timings, seconds, self.verdict())
        return result
