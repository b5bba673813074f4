"""The repository is a colcon workspace source: two ROS packages, every node runnable."""

from __future__ import annotations

import ast
import importlib
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET

from conftest import ROOT, require


def setup_nodes() -> dict[str, str]:
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "NODES":
            return ast.literal_eval(node.value)
    raise AssertionError("NODES not found in setup.py")


def test_colcon_finds_both_packages_with_the_readme_command():
    require(shutil.which("colcon") is not None, "colcon not installed (pip install colcon-common-extensions)")
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"colcon list (--base-paths [^\n`]+)`", readme)
    assert match, "README must give the repository-root colcon command with --base-paths"
    out = subprocess.run(
        ["colcon", "list", *match.group(1).split()], capture_output=True, text=True, cwd=ROOT, check=True
    ).stdout
    found = {line.split()[0]: line.split()[-1] for line in out.splitlines() if line.strip()}
    assert found == {"hiwm": "(ros.ament_python)", "hiwm_msgs": "(ros.ament_cmake)"}


def test_package_manifests():
    hiwm = ET.parse(ROOT / "package.xml").getroot()
    assert hiwm.get("format") == "3" and hiwm.findtext("name") == "hiwm"
    assert hiwm.find("export/build_type").text == "ament_python"
    assert {e.text for e in hiwm.findall("exec_depend")} >= {"hiwm_msgs", "rclpy", "launch_ros", "sensor_msgs"}
    msgs = ET.parse(ROOT / "msgs" / "package.xml").getroot()
    assert msgs.findtext("name") == "hiwm_msgs"
    assert msgs.findtext("member_of_group") == "rosidl_interface_packages"
    assert "rosidl_generate_interfaces" in (ROOT / "msgs" / "CMakeLists.txt").read_text()
    assert (ROOT / "resource" / "hiwm").is_file()
    assert "$base/lib/hiwm" in (ROOT / "setup.cfg").read_text()


def test_every_node_module_has_an_executable_and_main():
    nodes = setup_nodes()
    modules = {p.stem for p in (ROOT / "src" / "hiwm" / "nodes").glob("*.py") if p.stem != "__init__"}
    assert set(nodes) == modules
    for name, target in nodes.items():
        module, func = target.split(":")
        assert module == f"hiwm.nodes.{name}"  # `hiwm launch` runs python -m hiwm.nodes.<executable>
        assert callable(getattr(importlib.import_module(module), func))


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- test-command -->\s*```(?:bash|sh)?\n(.+?)\n```", readme, re.S)
    assert match, "README must mark its test command"
    assert match.group(1).strip() in (ROOT / ".ci" / "run").read_text()


# The layers of src/hiwm, bottom first: a module imports only from its own layer or one below.
LAYERS = (
    ("paths", "progress", "files", "checkpoints", "training", "stats"),  # helpers that know no model or robot
    ("comm",),  # messages, DDS and ROS
    ("tasks",),  # what a task is: action spaces, cameras, chunks; its worlds
    ("robot", "leader", "camera"),  # devices
    ("data", "worlds"),  # datasets; the worlds a policy acts in and the rollout loop
    ("world_model",),
    ("policy", "branch_cache", "teleop"),
    ("experiment",),
    ("nodes", "launch", "cli"),
)


def _imports(path, package: tuple[str, ...]):
    """(line, top-level hiwm module) of every import in a file, lazy ones included."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level:  # relative: from the file's package
            base = package[: len(package) - node.level + 1]
            names = [".".join(("hiwm", *base[1:], *([node.module] if node.module else [])))]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
            if node.module == "hiwm":  # from hiwm import x
                names = [f"hiwm.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "hiwm" and len(parts) > 1:
                yield node.lineno, parts[1]


def test_modules_import_only_from_their_layer_or_below():
    layer = {name: i for i, names in enumerate(LAYERS) for name in names}
    src = ROOT / "src" / "hiwm"
    upward, unplaced = [], set()
    for path in sorted(src.rglob("*.py")):
        rel = path.relative_to(src)
        if rel.parts == ("__init__.py",):
            continue
        own = rel.parts[0].removesuffix(".py")
        if own not in layer:
            unplaced.add(own)
            continue
        for line, target in _imports(path, ("hiwm", *rel.parent.parts)):
            if target not in layer:
                unplaced.add(target)
            elif layer[target] > layer[own]:
                upward.append(f"{rel}:{line} ({own}) imports hiwm.{target}")
    assert not unplaced, f"give these modules a layer in LAYERS: {sorted(unplaced)}"
    assert not upward, "imports from a layer above:\n" + "\n".join(upward)


def test_the_layer_check_sees_an_upward_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from hiwm.experiment.pipeline import run\n    from . import sim\n")
    assert list(_imports(bad, ("hiwm", "policy"))) == [(2, "experiment"), (3, "policy")]


def test_no_class_name_has_two_meanings():
    src = ROOT / "src" / "hiwm"
    where: dict[str, list[str]] = {}
    for path in sorted(src.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                where.setdefault(node.name, []).append(f"{path.relative_to(src)}:{node.lineno}")
    twice = {name: places for name, places in where.items() if len(places) > 1}
    assert not twice, f"class names defined more than once: {twice}"


# Push-T is named only in its own module and the registry; everything else asks the Task it is given.
# (The SO-101 is also a leader arm, a device, so its name is not a task's alone.)
PUSHT = re.compile(r"push[-_ ]?t\b|pusht", re.I)


def test_no_source_outside_its_task_module_names_push_t():
    src = ROOT / "src" / "hiwm"
    hits = []
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src).as_posix()
        if path.suffix not in (".py", ".html", ".js", ".css") or rel == "tasks/__init__.py":
            continue
        if rel.startswith("tasks/pusht/"):
            continue
        hits += [
            f"{rel}:{n}: {line.strip()}"
            for n, line in enumerate(path.read_text().splitlines(), 1)
            if PUSHT.search(line)
        ]
    assert not hits, "Push-T named outside hiwm.tasks.pusht and the registry:\n" + "\n".join(hits)


def test_the_push_t_check_sees_a_mention():
    assert all(PUSHT.search(s) for s in ("Push-T's block", "gym_pusht", "PushTEnv", "push_t", "push-T"))
    assert not any(PUSHT.search(s) for s in ("pushes the cube", "push to the target", "pusher"))
