"""Several policies on the same seeds, each seed's outcome paired: success differences against the
first, with a paired bootstrap interval and McNemar's exact test (:mod:`hiwm.stats`).

A single rate on 100 seeds is +-10 points; two checkpoints that solve the same easy seeds and fail
the same hard ones differ by much less noise than two separate intervals suggest, so a comparison
pairs the seeds rather than overlapping intervals.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

from hiwm.policy.evaluate import EvalConfig, evaluate, parse_seeds
from hiwm.stats import BOOTSTRAP_RESAMPLES, outcomes_by_seed, paired_difference

COMPARE_EPISODES = 200  # seeds a comparison takes when the seed range leaves the number open


def _folder(index: int, policy: str) -> str:
    return f"{index}-" + (re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(policy).name or policy) or "policy")


def compare(cfg: EvalConfig, policies: list[str], worlds: dict[str, str]) -> dict[str, Any]:
    """Evaluate each of ``policies`` with ``cfg`` (its ``policy`` replaced) in each of ``worlds``
    (name -> world-model checkpoint, "" for the physics) on the same seeds; the paired differences
    of each policy after the first against the first. With ``cfg.out``: one folder per policy and
    world under it, and ``comparison.json``."""
    if len(policies) < 2:
        raise ValueError(f"a comparison needs at least two policies, got {len(policies)}")
    seeds = parse_seeds(cfg.seeds, cfg.episodes)
    if len(set(seeds)) != len(seeds):  # refused before any episode runs
        raise ValueError(f"seeds {cfg.seeds!r} repeat a seed; a paired comparison needs each seed once")
    out = Path(cfg.out) if cfg.out else None
    evaluated: list[dict[str, Any]] = []
    for i, policy in enumerate(policies):
        entry: dict[str, Any] = {"policy": policy}
        for world, ckpt in worlds.items():
            where = str(out / _folder(i, policy) / world) if out else None
            summary = evaluate(dataclasses.replace(cfg, policy=policy, world=ckpt, out=where))
            entry[world] = {k: summary[k] for k in ("episodes", "success_rate", "success_ci95", "per_seed")}
        evaluated.append(entry)
    first = evaluated[0]
    paired = []
    for other in evaluated[1:]:
        row: dict[str, Any] = {"policy": other["policy"], "vs": first["policy"]}
        for world in worlds:
            row[world] = paired_difference(
                outcomes_by_seed(other[world]["per_seed"]), outcomes_by_seed(first[world]["per_seed"])
            )
        paired.append(row)
    result = {"seeds": seeds, "worlds": worlds, "policies": evaluated, "paired": paired}
    if out:
        out.mkdir(parents=True, exist_ok=True)
        (out / "comparison.json").write_text(json.dumps(result, indent=1))
    return result


def format_table(result: dict[str, Any]) -> str:
    """The comparison as text: each policy's success, then the paired differences against the first."""
    n, first = len(result["seeds"]), result["policies"][0]["policy"]
    width = max(12, *(len(p["policy"]) for p in result["policies"]))
    lines = []
    for world in result["worlds"]:
        span = f"{min(result['seeds'])}..{max(result['seeds'])}"
        lines += [f"{world} world, {n} seeds ({span})", f"{'policy':{width}s} {'success':>8s} {'95 % CI':>13s}"]
        for p in result["policies"]:
            low, high = p[world]["success_ci95"]
            rate = 100 * p[world]["success_rate"]
            lines.append(f"{p['policy']:{width}s} {rate:7.1f}% {100 * low:5.1f}-{100 * high:5.1f}%")
        lines += [
            f"paired differences vs {first} (points; 95 % paired bootstrap CI, {BOOTSTRAP_RESAMPLES} resamples "
            "of the seeds; McNemar exact p; significant: CI excludes 0 and p < 0.05)",
            f"{'policy':{width}s} {'diff':>6s} {'95 % CI':>16s} {'it only':>8s} {'first only':>11s} {'p':>8s} "
            " significant",
        ]
        for row in result["paired"]:
            d = row[world]
            ci = f"{d['ci'][0]:+.1f} to {d['ci'][1]:+.1f}"
            lines.append(
                f"{row['policy']:{width}s} {d['diff']:+6.1f} {ci:>16s} {d['only_a']:8d} {d['only_b']:11d} "
                f"{d['p']:8.3g}  {'yes' if d['significant'] else 'no'}"
            )
        lines.append("")
    return "\n".join(lines).rstrip("\n")
