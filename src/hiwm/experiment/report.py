"""The experiment's report: the table (markdown + JSON), paired differences between checkpoints, the
headline figures (``headline.json``) and the plots people would rather see."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from hiwm.experiment.profiles import Profile
from hiwm.files import atomic_write_json, atomic_write_text
from hiwm.stats import BOOTSTRAP_RESAMPLES, outcomes_by_seed, paired_difference, pearson
from hiwm.tasks import get_task

METHOD_ORDER = ("base", "baseline")
# the comparisons the report makes, per backbone: (name, method, against); "hiwm" and "oracle" are
# their loops' last rounds
PAIRS = (
    ("hiwm_vs_base", "hiwm", "base"),
    ("hiwm_vs_baseline", "hiwm", "baseline"),
    ("oracle_vs_base", "oracle", "base"),
)
WORLDS = ("real", "model")
#: What judges success in the world model, by the profile's detector (:class:`hiwm.tasks.base.LoopOptions`).
VERDICTS = {
    "probe": "the success detector of the state probe (the task's metric of the state it reads)",
    "learned": "a learned success detector (trained on the run's real episodes)",
    "task threshold": "the state probe's metric above the task's own threshold (its fitted one told nothing)",
}


def _order(method: str) -> tuple[int, str]:
    return (METHOD_ORDER.index(method), "") if method in METHOD_ORDER else (len(METHOD_ORDER), method)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def plot_success(rows: list[dict], path: Path) -> None:
    backbones = sorted({r["backbone"] for r in rows})
    fig, axes = plt.subplots(1, len(backbones), figsize=(5.5 * len(backbones), 4), squeeze=False)
    for ax, backbone in zip(axes[0], backbones, strict=True):
        mine = sorted((r for r in rows if r["backbone"] == backbone), key=lambda r: _order(r["method"]))
        x = np.arange(len(mine))
        for offset, world, color in ((-0.2, "real", "#3b6fb6"), (0.2, "model", "#e39b2d")):
            rate = np.array([r[world]["success_rate"] for r in mine])
            ci = np.array([r[world]["success_ci95"] for r in mine])
            err = np.abs(ci.T - rate)
            ax.bar(x + offset, 100 * rate, 0.38, yerr=100 * err, capsize=3, color=color, label=f"{world} world")
        ax.set_xticks(x, [r["method"] for r in mine])
        ax.set_ylim(0, 105)
        ax.set_ylabel("success %")
        ax.set_title(backbone)
        ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_correlation(rows: list[dict], corr: dict, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    for backbone, marker in zip(sorted({r["backbone"] for r in rows}), "os^D", strict=False):
        mine = [r for r in rows if r["backbone"] == backbone]
        ax.scatter([100 * r["model"]["success_rate"] for r in mine], [100 * r["real"]["success_rate"] for r in mine],
                   marker=marker, s=50, label=backbone)  # fmt: skip
        for r in mine:
            ax.annotate(r["method"], (100 * r["model"]["success_rate"], 100 * r["real"]["success_rate"]), fontsize=7)
    ax.plot([0, 100], [0, 100], color="#999", lw=0.8, ls="--")
    r = corr["r"]
    ax.set_title(f"world model vs real: r = {r:.3f}" if r is not None else "world model vs real: r undefined")
    ax.set_xlabel("success in the world model %")
    ax.set_ylabel("success in the real env %")
    ax.set_xlim(-3, 103)
    ax.set_ylim(-3, 103)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_corrections(summaries: dict[str, dict], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(5, 3.5))
    labels, made, good = [], [], []
    for name, s in summaries.items():
        if s.get("corrections_per_failure_state"):
            labels.append(name)
            made.append(np.mean(s["corrections_per_failure_state"]))
            good.append(np.mean(s["successful_per_failure_state"]))
    x = np.arange(len(labels))
    ax.bar(x - 0.2, made, 0.38, label="corrections", color="#888")
    ax.bar(x + 0.2, good, 0.38, label="successful", color="#3c9a4e")
    ax.set_xticks(x, labels, rotation=20, fontsize=8)
    ax.set_ylabel("per failure state")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def draw_branch_tree(summaries: dict[str, dict], path: Path) -> str | None:
    """The branch tree of the Hi-WM session with the most branches (rollback and forks from a failure
    state) as a PNG at ``path``, and its text listing; None when no session forked."""
    from hiwm.branch_cache.render import render_tree, text_tree
    from hiwm.branch_cache.store import BranchStore

    best: tuple[int, str, str] | None = None
    for name, s in summaries.items():
        if "_hiwm_" not in name or not s.get("corrections") or not Path(s["store"]).exists():
            continue
        with BranchStore(s["store"], readonly=True) as store:
            for session in store.sessions():
                n = len(store.branches(session.id))
                if best is None or n > best[0]:
                    best = (n, s["store"], session.id)
    if best is None or best[0] < 2:
        return None
    with BranchStore(best[1], readonly=True) as store:
        render_tree(store, best[2], path)
        return text_tree(store, best[2])


def exported(out: Path) -> list[tuple[str, int, int]]:
    """The datasets the run exported corrections and rollouts into: (folder, episodes, frames)."""
    from hiwm.data.lerobot import LeRobotDataset

    found = []
    for info in sorted(out.glob("data/*_*/meta/info.json")):
        folder = info.parent.parent
        if folder.name.endswith(("_corrections", "_baseline", "_oracle")):
            ds = LeRobotDataset(folder)
            found.append((str(folder.relative_to(out)), ds.num_episodes, ds.num_frames))
    return found


def last_round(methods: list[str], loop: str = "hiwm") -> str | None:
    """The last round of ``loop`` ("hiwm" or "oracle") among ``methods`` (``hiwm_r3`` over
    ``hiwm_r2``), None without one."""
    prefix = f"{loop}_r"
    rounds = [(int(m[len(prefix) :]), m) for m in methods if m.startswith(prefix) and m[len(prefix) :].isdigit()]
    return max(rounds)[1] if rounds else None


def paired(rows: list[dict]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per backbone, the report's comparisons (:data:`PAIRS`) seed by seed in each world:
    ``{backbone: {pair: {"a": method, "b": method, "real": diff, "model": diff}}}`` with
    :func:`hiwm.stats.paired_difference` for a diff (None where a row kept no per-seed outcomes).
    A pair whose methods the run lacks (no oracle, no round) is left out."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for backbone in sorted({r["backbone"] for r in rows}):
        by = {r["method"]: r for r in rows if r["backbone"] == backbone}
        last = {loop: last_round(list(by), loop) for loop in ("hiwm", "oracle")}
        mine: dict[str, dict[str, Any]] = {}
        for name, a, b in PAIRS:
            a = last.get(a) or a
            if a not in by or b not in by:
                continue
            entry: dict[str, Any] = {"a": a, "b": b}
            for world in WORLDS:
                seeds_a, seeds_b = by[a][world].get("per_seed"), by[b][world].get("per_seed")
                entry[world] = (
                    paired_difference(outcomes_by_seed(seeds_a), outcomes_by_seed(seeds_b))
                    if seeds_a and seeds_b
                    else None
                )
            mine[name] = entry
        out[backbone] = mine
    return out


def headline(pairs: dict[str, dict[str, dict[str, Any]]], corr: dict[str, Any]) -> dict[str, Any]:
    """The run's headline figures in real success: per backbone each comparison's difference
    (points), paired 95 % interval, McNemar p and verdict; Pearson r between the worlds."""
    keys = ("diff", "ci", "p", "significant", "n")
    out: dict[str, Any] = {
        backbone: {name: {k: e["real"][k] for k in keys} for name, e in mine.items() if e["real"] is not None}
        for backbone, mine in pairs.items()
    }
    ci = [corr["ci_low"], corr["ci_high"]] if corr.get("ci_low") is not None else None
    out["pearson_r"] = {"r": corr["r"], "ci": ci, "checkpoints": corr["n"]}
    return out


def paired_lines(pairs: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    lines = [
        "Paired differences in success (points), each pair of checkpoints on the same seeds: 95 % paired "
        f"bootstrap interval ({BOOTSTRAP_RESAMPLES} resamples of the seeds, fixed RNG seed), McNemar's exact "
        "test on the seeds only one of the two solved; significant: the interval excludes 0 and p < 0.05.",
        "",
        "| backbone | comparison | world | seeds | difference | 95 % CI | solved by one only (a / b) | McNemar p "
        "| significant |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for backbone, mine in pairs.items():
        for entry in mine.values():
            for world in WORLDS:
                d = entry[world]
                label = f"| {backbone} | {entry['a']} vs {entry['b']} | {world} |"
                if d is None:
                    lines.append(f"{label} - | no per-seed outcomes | | | | |")
                    continue
                seeds = f"{d['n']}" + (f" ({d['missing']} unpaired)" if d["missing"] else "")
                lines.append(
                    f"{label} {seeds} | {d['diff']:+.1f} | {d['ci'][0]:+.1f} to {d['ci'][1]:+.1f} "
                    f"| {d['only_a']} / {d['only_b']} | {d['p']:.3g} | {'yes' if d['significant'] else 'no'} |"
                )
    return lines


def write_report(
    out: Path,
    profile: Profile,
    rows: list[dict],
    summaries: dict[str, dict],
    timings: dict,
    seconds: float,
    verdict: str = "",
) -> dict[str, Any]:
    """report.md, results.json, headline.json and three plots in ``out``; returns the results.
    ``verdict``: what judged success in the world model (:data:`VERDICTS`; the profile's by default)."""
    real = np.array([r["real"]["success_rate"] for r in rows])
    model = np.array([r["model"]["success_rate"] for r in rows])
    corr = pearson(model, real)  # r undefined (None) for fewer than three rows
    pairs = paired(rows)
    heads = headline(pairs, corr)
    plot_success(rows, out / "success.png")
    plot_correlation(rows, corr, out / "correlation.png")
    plot_corrections(summaries, out / "corrections.png")
    task = get_task(profile.task)
    metric = task.success.metric
    judge = VERDICTS[verdict or profile.detector or task.loop.detector]
    lines = [
        f"# Hi-WM on {task.name}: profile `{profile.name}`",
        "",
        f"Task: {task.description} Success: {task.success.description}.",
        "",
        f"Wall time {seconds / 60:.1f} min on this machine. Real success: the task's own world (its physics, "
        f"{task.world}), {profile.eval_episodes} held-out seeds from {profile.eval_first_seed}; world-model "
        f"success: the same initial states, judged on generated frames by {judge}. 95 % Wilson intervals.",
        "",
        f"| backbone | method | real success % | 95 % CI | world-model success % | 95 % CI | real mean max {metric} |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in sorted(rows, key=lambda r: (r["backbone"], _order(r["method"]))):
        rc, mc = r["real"]["success_ci95"], r["model"]["success_ci95"]
        real_max = r["real"][f"mean_max_{metric}"]
        lines.append(
            f"| {r['backbone']} | {r['method']} | {_pct(r['real']['success_rate'])} | {_pct(rc[0])}-{_pct(rc[1])} "
            f"| {_pct(r['model']['success_rate'])} | {_pct(mc[0])}-{_pct(mc[1])} | {real_max:.3f} |"
        )
    lines += ["", *paired_lines(pairs)]
    r = corr["r"]
    ci = f" (95 % CI {corr['ci_low']:.3f} to {corr['ci_high']:.3f})" if corr.get("ci_low") is not None else ""
    lines += ["", f"Pearson r between world-model and real success over {corr['n']} checkpoints: "
              + (f"{r:.3f}{ci}" if r is not None else
                 "undefined (fewer than three checkpoints, or no variation)"), ""]  # fmt: skip
    lines += ["| rollouts | sessions | policy success in its world | failure states | corrections | successful |",
              "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for name, s in summaries.items():
        lines.append(f"| {name} | {s['sessions']} | {_pct(s['rollout_success'])} % | {s['failure_states']} "
                     f"| {s['corrections']} | {s['successful_corrections']} |")  # fmt: skip
    lines += ["", "![success](success.png) ![correlation](correlation.png) ![corrections](corrections.png)", ""]
    datasets = exported(out)
    if datasets:
        lines += ["Exported for post-training (LeRobot datasets in the run folder): " + ", ".join(
            f"`{name}` {episodes} episodes, {frames} frames" for name, episodes, frames in datasets), ""]  # fmt: skip
    tree = draw_branch_tree(summaries, out / "branch_tree.png")
    if tree is not None:
        lines += ["The session with the most branches: the policy's rollout, the operator's rollback to the "
                  "failure state and the corrections forked from it.", "", "![branch tree](branch_tree.png)", "",
                  "```", tree, "```", ""]  # fmt: skip
    lines += ["Time per stage (s): " + ", ".join(f"{k} {v}" for k, v in timings.items()), ""]
    lines += ["Settings:", "", "```json", json.dumps(asdict(profile), indent=1), "```", ""]
    atomic_write_text(out / "report.md", "\n".join(lines))
    result = {
        "rows": rows,
        "pearson": corr,
        "paired": pairs,
        "headline": heads,
        "seconds": round(seconds, 1),
        "timings": timings,
    }
    atomic_write_json(out / "results.json", result, indent=1)
    atomic_write_json(out / "headline.json", heads, indent=1)
    return result
