"""``hiwm models``: the trained models hiwm ships (``models/<task>/<kind>/``), and ``hiwm models ship``,
which copies a run's world model and base policies there with a model card each."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

KINDS = ("world_model", "act", "diffusion")
CARD = "MODEL_CARD.md"


def size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def listing() -> list[dict[str, Any]]:
    """One row per shipped model: task, kind, folder, size and the card's summary line."""
    from hiwm.paths import shipped_model
    from hiwm.tasks import task_names

    rows = []
    for task in task_names():
        for kind in KINDS:
            path = shipped_model(task, kind)
            if path is None:
                continue
            card = (path / CARD).read_text().splitlines() if (path / CARD).exists() else []
            summary = next((line for line in card[1:] if line.strip()), "")
            rows.append({"task": task, "kind": kind, "path": str(path), "mb": round(size_mb(path), 2), "card": summary})
    return rows


def cmd_list(args: argparse.Namespace) -> int:
    rows = listing()
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    if not rows:
        print("hiwm ships no trained models in this installation")
    for r in rows:
        print(f"{r['task']:12s} {r['kind']:12s} {r['mb']:6.2f} MB  {r['path']}\n    {r['card']}")
    return 0


def eval_row(run: Path, backbone: str, method: str) -> dict[str, Any] | None:
    path = run / "eval" / f"{backbone}_{method}.json"
    return json.loads(path.read_text()) if path.exists() else None


def rate(world: dict[str, Any]) -> str:
    low, high = world["success_ci95"]
    n = len(world.get("per_seed", [])) or world.get("episodes", 0)
    return f"{100 * world['success_rate']:.1f} % (95 % CI {100 * low:.1f}-{100 * high:.1f} %, {n} held-out seeds)"


def ship_world_model(run: Path, profile: dict[str, Any], into: Path, command: str) -> Path:
    from hiwm.world_model import detector
    from hiwm.world_model.checkpoint import CONFIG, MODEL, PROBE, read_config

    FOLDER = detector.FOLDER
    src, out = run / "world_model", into / "world_model"
    ckpt, doc = read_config(src)
    shutil.rmtree(out, ignore_errors=True)
    (out / FOLDER).mkdir(parents=True)
    for name in (MODEL, PROBE):  # inference weights: the optimizer's state stays behind
        if (src / name).exists():
            shutil.copy2(src / name, out / name)
    doc.pop("optimizer", None)  # and its entries go from the config with it
    doc["digests"] = {k: v for k, v in doc.get("digests", {}).items() if (out / k).exists()}
    (out / CONFIG).write_text(json.dumps(doc, indent=1))
    for name in (detector.CONFIG, detector.WEIGHTS, detector.PROBE_WEIGHTS, "metrics.json"):
        if (src / FOLDER / name).exists():
            shutil.copy2(src / FOLDER / name, out / FOLDER / name)
    if not any((out / FOLDER).iterdir()):
        (out / FOLDER).rmdir()
    judge = "its state probe"
    if (out / FOLDER / detector.CONFIG).exists():
        kind = json.loads((out / FOLDER / detector.CONFIG).read_text()).get("kind")
        judge = "a learned success detector (detector/)" if kind == "learned" else "its state probe (detector/)"
    metrics = ckpt.metrics
    lines = [
        f"# {profile['task']} world model",
        "",
        f"hiwm's world model of {profile['task']}: {doc['model'].get('preset', 'small')} preset, "
        f"{ckpt.step} training steps, success judged by {judge}.",
        "",
        "## Data",
        f"{profile['demo_episodes']} scripted-expert demos (seeds from 0) and {profile['wm_noisy_episodes']} "
        f"sloppy expert episodes (noise {profile['wm_noise']}, seeds from 50000), collected by the run.",
        "",
        "## Trained by",
        f"```\n{command}\n```",
        f"({profile['wm_minutes']:g} min budget on a 2-core CPU; the run's `world_model/`.)",
        "",
        "## Figures",
        "```json",
        json.dumps(metrics, indent=1)[:4000],
        "```",
    ]
    (out / CARD).write_text("\n".join(lines) + "\n")
    return out


def ship_policy(run: Path, profile: dict[str, Any], backbone: str, into: Path, command: str) -> Path:
    from hiwm.experiment.pipeline import DEMO_SEED
    from hiwm.policy.checkpoint import CONFIG, MODEL

    src, out = run / "policies" / backbone / "base", into / backbone
    doc = json.loads((src / CONFIG).read_text())
    demos = (run / "data" / "demos").resolve()
    for entry in doc.get("train", {}).get("data", []):
        if Path(entry["path"]).resolve() == demos:  # how it was collected, for post-training to reproduce
            entry["path"] = "demos"
            entry["collect"] = {"episodes": profile["demo_episodes"], "seed": DEMO_SEED, "task": profile["task"]}
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    shutil.copy2(src / MODEL, out / MODEL)  # inference weights, not the training state
    (out / CONFIG).write_text(json.dumps(doc, indent=1))
    row = eval_row(run, backbone, "base")
    figures = ["(not evaluated)"]
    if row:
        figures = [f"- real success: {rate(row['real'])}", f"- in the shipped world model: {rate(row['model'])}"]
    lines = [
        f"# {profile['task']} base {backbone}",
        "",
        f"hiwm's base {backbone} policy for {profile['task']}, trained on {profile['demo_episodes']} scripted-expert "
        "demos: the starting point the Hi-WM loop post-trains.",
        "",
        "## Data",
        f"{profile['demo_episodes']} scripted-expert demos from seed {DEMO_SEED} "
        "(recorded in config.json as how they were collected: post-training collects them again).",
        "",
        "## Trained by",
        f"```\n{command}\n```",
        f"({profile['policy_minutes']:g} min budget on a 2-core CPU; the run's `policies/{backbone}/base`.)",
        "",
        "## Figures",
        *figures,
    ]
    (out / CARD).write_text("\n".join(lines) + "\n")
    return out


def cmd_ship(args: argparse.Namespace) -> int:
    run = Path(args.run)
    profile_path = run / "profile.json"
    if not profile_path.exists():
        raise SystemExit(f"hiwm models ship: error: {run}: no profile.json; not a `hiwm experiment` run folder")
    profile = json.loads(profile_path.read_text())
    into = Path(args.into) / profile["task"]
    command = args.command or (
        f"hiwm experiment --task {profile['task']} --profile {profile['name']} --from-scratch "
        f"--backbones {' '.join(profile['backbones'])}"
    )
    shipped = []
    if (run / "world_model" / "config.json").exists() and not profile.get("world_model"):
        shipped.append(ship_world_model(run, profile, into, command))
    for backbone in profile["backbones"]:
        if (run / "policies" / backbone / "base" / "done").exists() and backbone not in profile["base_policies"]:
            shipped.append(ship_policy(run, profile, backbone, into, command))
    if not shipped:
        raise SystemExit(f"hiwm models ship: error: {run}: no world model or base policy trained by the run")
    for path in shipped:
        print(f"{path}  {size_mb(path):.2f} MB")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="the trained models hiwm ships, and shipping a run's", description=__doc__)
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p.set_defaults(func=cmd_list)
    verbs = p.add_subparsers(dest="verb")
    ship = verbs.add_parser("ship", help="copy a run's world model and base policies into models/<task>/, with cards")
    ship.add_argument("run", help="a `hiwm experiment` run folder")
    ship.add_argument("--into", default="models", help="the models folder (default: ./models, the checkout's)")
    ship.add_argument("--command", default="", help="the command that trained them, for the cards")
    ship.set_defaults(func=cmd_ship)
