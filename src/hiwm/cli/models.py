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


def write_card(
    out: Path, title: str, summary: str, data: list[str], command: str, note: str, figures: list[str]
) -> None:
    lines = [f"# {title}", "", summary, "", "## Data", *data, "", "## Trained by", f"```\n{command}\n```"]
    lines += [note] if note else []
    (out / CARD).write_text("\n".join([*lines, "", "## Figures", *figures]) + "\n")


def ship_world_model(src: Path, out: Path, task: str, data: list[str], command: str, note: str = "") -> Path:
    """The inference files of the world-model checkpoint ``src`` (weights, probe, success detector;
    not the optimizer's state) into ``out``, with a model card."""
    from hiwm.world_model import detector
    from hiwm.world_model.checkpoint import CONFIG, MODEL, PROBE, read_config

    ckpt, doc = read_config(src)
    shutil.rmtree(out, ignore_errors=True)
    (out / detector.FOLDER).mkdir(parents=True)
    for name in (MODEL, PROBE):
        if (src / name).exists():
            shutil.copy2(src / name, out / name)
    doc.pop("optimizer", None)  # and its entries go from the config with it
    doc["digests"] = {k: v for k, v in doc.get("digests", {}).items() if (out / k).exists()}
    (out / CONFIG).write_text(json.dumps(doc, indent=1))
    for name in (detector.CONFIG, detector.WEIGHTS, detector.PROBE_WEIGHTS, "metrics.json"):
        if (src / detector.FOLDER / name).exists():
            shutil.copy2(src / detector.FOLDER / name, out / detector.FOLDER / name)
    judge = "its state probe"
    if (out / detector.FOLDER / detector.CONFIG).exists():
        kind = json.loads((out / detector.FOLDER / detector.CONFIG).read_text()).get("kind")
        judge = "a learned success detector (detector/)" if kind == "learned" else "its state probe (detector/)"
    if not any((out / detector.FOLDER).iterdir()):
        (out / detector.FOLDER).rmdir()
    summary = (
        f"hiwm's world model of {task}: {doc['model'].get('preset', 'small')} preset, {ckpt.step} training "
        f"steps, success judged by {judge}."
    )
    figures = ["```json", json.dumps(ckpt.metrics, indent=1)[:4000], "```"]
    write_card(out, f"{task} world model", summary, data, command, note, figures)
    return out


def data_lines(doc: dict[str, Any]) -> list[str]:
    """A policy's training data, one line per dataset: how it was collected where it records that."""
    lines = []
    for d in doc.get("train", {}).get("data", []):
        how = d.get("collect")
        source = (
            f"{how['episodes']} scripted-expert episodes from seed {how['seed']} (noise {how.get('noise', 0)})"
            if how
            else f"`{d['path']}`"
        )
        lines.append(
            f"- {source}: {d.get('train_episodes', '?')} training episodes, {d.get('train_frames', '?')} frames"
        )
    return lines


def ship_policy(
    src: Path,
    out: Path,
    task: str,
    backbone: str,
    command: str,
    note: str = "",
    figures: list[str] | None = None,
    trained_on: str = "",
) -> Path:
    """The weights and config of the policy checkpoint ``src`` (not its training state) into ``out``, with a
    model card; each training dataset that `hiwm collect` wrote whole is recorded as how it was collected
    (:func:`hiwm.data.collect.recipe`), for post-training to collect it again."""
    from hiwm.data.collect import recipe
    from hiwm.policy.checkpoint import CONFIG, MODEL

    doc = json.loads((src / CONFIG).read_text())
    for entry in doc.get("train", {}).get("data", []):
        if (how := recipe(entry["path"])) is not None:
            entry["path"], entry["collect"] = Path(entry["path"]).name, how
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    shutil.copy2(src / MODEL, out / MODEL)
    (out / CONFIG).write_text(json.dumps(doc, indent=1))
    summary = f"hiwm's base {backbone} policy for {task}{trained_on}: the starting point the Hi-WM loop post-trains."
    figures = figures or ["(not evaluated)"]
    write_card(out, f"{task} base {backbone}", summary, data_lines(doc), command, note, figures)
    return out


def ship_run(run: Path, into: Path, command: str) -> list[Path]:
    """A `hiwm experiment` run's world model and base policies (those it trained) into ``into/<task>``."""
    profile_path = run / "profile.json"
    if not profile_path.exists():
        raise SystemExit(f"hiwm models ship: error: {run}: no profile.json; not a `hiwm experiment` run folder")
    profile = json.loads(profile_path.read_text())
    task, into = profile["task"], into / profile["task"]
    command = command or (
        f"hiwm experiment --task {task} --profile {profile['name']} --from-scratch "
        f"--backbones {' '.join(profile['backbones'])}"
    )
    shipped = []
    if (run / "world_model" / "config.json").exists() and not profile.get("world_model"):
        data = [
            f"{profile['demo_episodes']} scripted-expert demos (seeds from 0) and {profile['wm_noisy_episodes']} "
            f"sloppy expert episodes (noise {profile['wm_noise']}, seeds from 50000), collected by the run."
        ]
        note = f"({profile['wm_minutes']:g} min budget on a 2-core CPU; the run's `world_model/`.)"
        shipped.append(ship_world_model(run / "world_model", into / "world_model", task, data, command, note))
    for backbone in profile["backbones"]:
        if not (run / "policies" / backbone / "base" / "done").exists() or backbone in profile["base_policies"]:
            continue
        row = eval_row(run, backbone, "base")
        figures = None
        if row:
            figures = [f"- real success: {rate(row['real'])}", f"- in the shipped world model: {rate(row['model'])}"]
        note = f"({profile['policy_minutes']:g} min budget on a 2-core CPU; the run's `policies/{backbone}/base`.)"
        src = run / "policies" / backbone / "base"
        trained_on = f", trained on {profile['demo_episodes']} scripted-expert demos"
        shipped.append(ship_policy(src, into / backbone, task, backbone, command, note, figures, trained_on))
    return shipped


def ship_checkpoints(task: str, world_model: str, policies: list[str], into: Path, command: str) -> list[Path]:
    """Checkpoint folders (`hiwm train world-model`, `hiwm train policy BACKBONE=FOLDER`) into ``into/<task>``;
    every one is checked before any is copied."""
    from hiwm.policy.checkpoint import read_config as read_policy

    named = []
    for spec in policies:
        backbone, sep, folder = spec.partition("=")
        if not sep or backbone not in KINDS[1:]:
            raise SystemExit(
                f"hiwm models ship: error: --policy {spec!r}: expected BACKBONE=FOLDER, BACKBONE in {KINDS[1:]}"
            )
        if read_policy(folder).get("backbone") != backbone:
            raise SystemExit(f"hiwm models ship: error: {folder}: not a {backbone} checkpoint")
        named.append((backbone, Path(folder)))
    shipped = []
    if world_model:
        out = into / task / "world_model"
        shipped.append(ship_world_model(Path(world_model), out, task, [f"`{world_model}`"], command))
    for backbone, folder in named:
        shipped.append(ship_policy(folder, into / task / backbone, task, backbone, command))
    return shipped


def cmd_ship(args: argparse.Namespace) -> int:
    into = Path(args.into)
    if args.run and (args.world_model or args.policy):
        raise SystemExit("hiwm models ship: error: give a run folder or --world-model/--policy checkpoints, not both")
    if args.run:
        shipped = ship_run(Path(args.run), into, args.command)
    elif args.world_model or args.policy:
        shipped = ship_checkpoints(args.task, args.world_model, args.policy, into, args.command or "(not recorded)")
    else:
        raise SystemExit("hiwm models ship: error: give a `hiwm experiment` run folder or --world-model/--policy")
    if not shipped:
        raise SystemExit(f"hiwm models ship: error: {args.run}: no world model or base policy trained by the run")
    for path in shipped:
        print(f"{path}  {size_mb(path):.2f} MB")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from hiwm.tasks import DEFAULT_TASK, task_names

    p = sub.add_parser("models", help="the trained models hiwm ships, and shipping a run's", description=__doc__)
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p.set_defaults(func=cmd_list)
    verbs = p.add_subparsers(dest="verb")
    ship = verbs.add_parser("ship", help="copy a run's world model and base policies into models/<task>/, with cards")
    ship.add_argument("run", nargs="?", help="a `hiwm experiment` run folder")
    ship.add_argument("--task", choices=task_names(), default=DEFAULT_TASK, help="the checkpoints' task")
    ship.add_argument("--world-model", default="", metavar="FOLDER", help="a `hiwm train world-model` checkpoint")
    ship.add_argument(
        "--policy", nargs="+", default=[], metavar="BACKBONE=FOLDER", help="`hiwm train policy` checkpoints"
    )
    ship.add_argument("--into", default="models", help="the models folder (default: ./models, the checkout's)")
    ship.add_argument("--command", default="", help="the command that trained them, for the cards")
    ship.set_defaults(func=cmd_ship)
