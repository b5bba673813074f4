"""``hiwm experiment``: the Hi-WM post-training loop end to end on a task, with a report."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def cmd_experiment(args: argparse.Namespace) -> int:
    from hiwm.experiment.pipeline import Experiment
    from hiwm.experiment.profiles import PROFILES

    profile = PROFILES[args.profile].replace(task=args.task)
    if args.backbones:
        profile = profile.replace(backbones=args.backbones)
    if args.workers:
        profile = profile.replace(workers=args.workers)
    if args.base_policy:
        given = dict(spec.partition("=")[::2] for spec in args.base_policy)
        unknown = sorted(set(given) - {"act", "diffusion"})
        if unknown or not all(given.values()):
            raise SystemExit(f"--base-policy takes BACKBONE=CHECKPOINT (act or diffusion), got {args.base_policy}")
        idle = sorted(set(given) - set(profile.backbones))
        if idle:
            raise SystemExit(f"--base-policy {', '.join(idle)}: not a backbone of this run {profile.backbones}")
        profile = profile.replace(base_policies=given)
    if args.world_model:
        profile = profile.replace(world_model=args.world_model)
    if args.from_scratch and not profile.trains:
        raise SystemExit(f"hiwm experiment: error: profile {profile.name!r} trains no models (--from-scratch)")
    if not args.from_scratch:  # the models hiwm ships for the task, where none is named
        profile = profile.with_shipped()
    if args.wm_takeover_sessions is not None:
        try:
            profile = profile.replace(wm_takeover_sessions=args.wm_takeover_sessions)
        except ValueError as exc:
            raise SystemExit(f"--wm-takeover-sessions: {exc}") from None
    results_json = Path(args.results_json) if args.results_json else None
    if results_json is not None and results_json.is_dir():  # refused now, not after hours of work
        raise SystemExit(f"hiwm experiment: error: --results-json {results_json}: a folder, not a file")
    from hiwm.checkpoints import CheckpointError

    try:
        experiment = Experiment(profile, args.out or f"runs/experiment-{profile.name}")  # refuses a task it can't run
        experiment.check()
    except (ValueError, CheckpointError) as exc:  # a checkpoint given to the run that it cannot use
        raise SystemExit(f"hiwm experiment: error: {exc}") from None
    result = experiment.run()
    if results_json is not None:  # the run's own headline file, copied where the caller wants it
        from hiwm.files import atomic_write_text

        atomic_write_text(results_json, (experiment.out / "headline.json").read_text())
    print(json.dumps({k: result[k] for k in ("headline", "seconds")}))
    print(f"report: {experiment.out / 'report.md'} (plots and the branch tree beside it)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from hiwm.experiment.profiles import PROFILES
    from hiwm.tasks import DEFAULT_TASK, task_names

    p = sub.add_parser("experiment", help="the Hi-WM loop end to end: data, world model, policies, corrections, table")
    p.add_argument("--task", choices=task_names(), default=DEFAULT_TASK, help="the task the loop runs on")
    p.add_argument("--profile", choices=sorted(PROFILES), default="quick",
                   help="demo: one round on the shipped models, minutes; quick: ~20 min on 2 cores; "
                        "full: the table; smoke: CI-sized")  # fmt: skip
    p.add_argument("--out", help="run folder (default runs/experiment-<profile>); a rerun resumes")
    p.add_argument("--backbones", nargs="+", choices=["diffusion", "act"])
    p.add_argument("--workers", type=int)
    p.add_argument("--base-policy", nargs="+", metavar="BACKBONE=CHECKPOINT",
                   help="post-train this checkpoint (e.g. act=runs/act) instead of training a base policy")  # fmt: skip
    p.add_argument("--world-model", metavar="CHECKPOINT",
                   help="use this trained world model (with its state probe) instead of training one")  # fmt: skip
    p.add_argument("--from-scratch", action="store_true",
                   help="train the world model and base policies here even where hiwm ships them")  # fmt: skip
    p.add_argument("--wm-takeover-sessions", type=int, metavar="N",
                   help="train the world model also on N sessions of each base policy with the operator "
                        "in the physics (the profile's number unless given)")  # fmt: skip
    p.add_argument("--results-json", metavar="PATH",
                   help="also write the headline figures (headline.json of the run folder: paired differences "
                        "per backbone, Pearson r) to PATH, e.g. docs/results/<task>.json")  # fmt: skip
    p.set_defaults(func=cmd_experiment)
