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
