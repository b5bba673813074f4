"""Launch graphs: one description for ``ros2 launch`` and ``hiwm launch``; real processes, real DDS."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, require, wait_for

from hiwm.launch import Arg, ArgRef, Graph, GraphError, IfArg, NodeSpec, Requires, to_launch_description
from hiwm.launch.supervisor import available_graphs, load_graph, plan, yaml_text
from hiwm.tasks import DEFAULT_TASK, task_names

SUPERVISED = str(ROOT / "tests" / "data" / "supervised.launch.py")
STARTED = re.compile(r"\[launch\]: process (\S+) started \(pid (\d+)\)")


def hiwm(*args: str) -> list[str]:
    return [sys.executable, "-m", "hiwm.cli.main", *args]


def started(text: str) -> list[tuple[str, int]]:
    return [(name, int(pid)) for name, pid in STARTED.findall(text)]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def children_of(pid: int) -> set[int]:
    """Live child processes of ``pid``, from /proc."""
    out = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.add(int(stat.parent.name))
    return out


def monitor_reports(text: str) -> list[dict]:
    return [json.loads(m) for m in re.findall(r"^\[image_monitor\] .*?: (\{.*\})$", text, re.M)]


# --- the description ---------------------------------------------------------------------


@pytest.mark.parametrize("name", available_graphs())
def test_every_launch_file_loads_and_validates(name):
    graph = load_graph(name)
    assert graph.name == name
    graph.validate()
    nodes = plan(graph, {})  # every executable exists, every param file is there
    assert nodes and all(n.argv[2].startswith("hiwm.nodes.") for n in nodes)


def test_launch_files_found():
    assert "demo" in available_graphs()


def test_validation_errors_are_clear():
    cam = NodeSpec("pattern_camera", "cam")
    with pytest.raises(GraphError, match=r"'rate'.*not declared"):
        Graph("g", "", [], [NodeSpec("pattern_camera", "cam", parameters={"rate_hz": ArgRef("rate")})])
    with pytest.raises(GraphError, match="'cam' is used twice"):
        Graph("g", "", [], [cam, cam])
    Graph("g", "", [], [cam, NodeSpec("pattern_camera", "cam", namespace="other")])  # other namespace: fine
    with pytest.raises(GraphError, match="default 'c' is not one of"):
        Arg("mode", "c", choices=["a", "b"])
    with pytest.raises(GraphError, match="can never hold"):
        Graph("g", "", [Arg("mode", "a", choices=["a", "b"])], [NodeSpec("x", "y", condition=IfArg("mode", "z"))])
    with pytest.raises(GraphError, match="required and respawned"):
        Graph("g", "", [], [NodeSpec("x", "y", respawn=True, required=True)])
    with pytest.raises(GraphError, match="relative to the hiwm share folder"):
        Graph("g", "", [], [NodeSpec("x", "y", param_files=["/etc/passwd"])])


def test_arguments_resolve_with_overrides_and_choices():
    graph = load_graph(SUPERVISED)
    assert graph.resolve_args({}) == {"mode": "respawn", "rate_hz": "10.0"}
    assert [n.required for n in graph.active_nodes(graph.resolve_args({"mode": "required"}))] == [True, False]
    with pytest.raises(GraphError, match=r"'nope' is not one of \['respawn', 'required'\]"):
        graph.resolve_args({"mode": "nope"})
    with pytest.raises(GraphError, match=r"no launch argument\(s\) \['bogus'\]"):
        graph.resolve_args({"bogus": "1"})


#: The nodes that take a ``task`` parameter, and so get the graph's.
TASK_NODES = {"world_model", "sim_robot", "arm_robot", "policy_server", "arbiter", "teleop_web", "recorder",
              "branch_cache", "ros2_control_bridge", "image_monitor"}  # fmt: skip


def given_task(argv: list[str]) -> list[str]:
    return [a.split(":=", 1)[1] for a in argv if a.startswith("task:=")]


@pytest.mark.parametrize(
    "overrides",
    [
        {"world": "model"},
        {"world": "model", "task": "so101_pick"},
        {"world": "real", "robot": "sim"},
        {"world": "real", "robot": "sim", "task": "so101_pick"},
        {"world": "real", "robot": "so101", "task": "so101_pick"},
        {"world": "real", "robot": "ros2_control"},
    ],
)
def test_the_hiwm_graph_gives_every_node_its_task(overrides):
    task = overrides.get("task", DEFAULT_TASK)
    nodes = plan(load_graph("hiwm"), overrides)
    world = {"model": "world_model", "real": {"sim": "sim_robot", "so101": "arm_robot"}}[overrides["world"]]
    world = world if isinstance(world, str) else world.get(overrides["robot"], "ros2_control_bridge")
    assert world in {n.spec.executable for n in nodes}
    for node in nodes:
        wanted = [task] if node.spec.executable in TASK_NODES else []
        assert given_task(node.argv) == wanted, (node.label, node.argv)
    assert not any("camera/image" in a for n in nodes for a in n.argv)  # no remap onto an old camera topic


def test_the_hiwm_graph_names_our_realsense_camera_for_the_task():
    nodes = plan(load_graph("hiwm"), {"world": "real", "robot": "ros2_control", "camera_name": "front"})
    (camera,) = [n for n in nodes if n.spec.executable == "realsense_camera"]
    assert "camera_name:=front" in camera.argv, camera.argv


def test_every_graph_takes_a_task_for_its_nodes():
    for name in ("sim", "policy_robot", "world_model", "hiwm"):
        graph = load_graph(name)
        assert graph.arg("task").default == DEFAULT_TASK and set(graph.arg("task").choices) == set(task_names())
        for node in plan(graph, {"task": "so101_pick"}):
            if node.spec.executable in TASK_NODES:
                assert given_task(node.argv) == ["so101_pick"], (name, node.label)


def test_the_so101_arm_needs_its_task_before_anything_starts():
    graph = load_graph("hiwm")
    with pytest.raises(GraphError, match=r"world:=real, robot:=so101 needs task:=so101_pick, got 'pusht'"):
        plan(graph, {"world": "real", "robot": "so101"})
    assert plan(graph, {"world": "model", "robot": "so101"})  # no arm in the world model's graph
    res = subprocess.run(hiwm("launch", "hiwm", "world:=real", "robot:=so101"), capture_output=True, text=True,
                         cwd=ROOT, timeout=60)  # fmt: skip
    assert res.returncode == 2 and "add task:=so101_pick" in res.stderr, res.stderr
    assert "process" not in res.stdout + res.stderr  # nothing was started
    with pytest.raises(GraphError, match="can never hold"):
        Graph("g", "", [Arg("a", "x", choices=["x", "y"])], [NodeSpec("x", "y")],
              [Requires(IfArg("a", "y"), IfArg("a", "z"), "no")])  # fmt: skip
    with pytest.raises(GraphError, match="'b', which is not declared"):
        Graph("g", "", [Arg("a", "x")], [NodeSpec("x", "y")], [Requires(IfArg("a", "y"), IfArg("b", "z"), "no")])


def test_plan_builds_ros_args():
    nodes = {n.label: n.argv for n in plan(load_graph("demo"), {"rate_hz": "20.0", "namespace": "robot"})}
    cam, mon = nodes["pattern_camera"], nodes["image_monitor"]
    assert cam[:4] == [sys.executable, "-m", "hiwm.nodes.pattern_camera", "--ros-args"]
    assert "__ns:=/robot" in cam and "__node:=pattern_camera" in cam and "rate_hz:=20.0" in cam
    params_file = Path(mon[mon.index("--params-file") + 1])
    assert params_file.is_absolute() and params_file.is_file()
    assert "/other_image" in " ".join(plan(load_graph(SUPERVISED), {})[1].argv)  # remapping


@pytest.mark.parametrize("value", [1, -3, 2.5, 1e-05, True, False, "hello", "10", "true", "", "a: b", [1.0, 2.0]])
def test_parameter_text_reads_back_as_the_same_value(value):
    assert yaml.safe_load(yaml_text(value)) == value


def test_missing_executable_fails_clearly():
    graph = Graph("g", "", [], [NodeSpec("no_such_node", "x")])
    with pytest.raises(GraphError, match=r"no module hiwm\.nodes\.no_such_node; known executables: .*pattern_camera"):
        plan(graph, {})


def test_to_launch_description_with_ros():
    require(importlib.util.find_spec("launch_ros") is not None, "launch_ros is not importable (no ROS 2 here)")
    from launch.actions import DeclareLaunchArgument
    from launch_ros.actions import Node

    from launch import LaunchDescription

    for name in available_graphs():
        graph = load_graph(name)
        desc = to_launch_description(graph)
        assert isinstance(desc, LaunchDescription)
        declared = [e for e in desc.entities if isinstance(e, DeclareLaunchArgument)]
        assert [d.name for d in declared] == [a.name for a in graph.args]
        assert len([e for e in desc.entities if isinstance(e, Node)]) == len(graph.nodes)


# --- hiwm launch: real processes -------------------------------------------------------


def test_unknown_argument_exits_2_and_names_it():
    res = subprocess.run(hiwm("launch", "demo", "bogus:=1"), capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert res.returncode == 2
    assert "bogus" in res.stderr and "rate_hz" in res.stderr
    res = subprocess.run(hiwm("launch", SUPERVISED, "mode:=nope"), capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "'nope' is not one of" in res.stderr
    res = subprocess.run(hiwm("launch", "no_such_graph"), capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "demo" in res.stderr  # lists what exists


def test_demo_runs_and_sigint_stops_every_child(procs):
    launcher = procs.python("hiwm.cli.main", "launch", "demo")
    assert wait_for(lambda: any(r["received"] > 0 for r in monitor_reports(procs.output(launcher))), 30), procs.output(
        launcher
    )
    pids = {pid for _, pid in started(procs.output(launcher))}
    assert len(pids) == 2
    assert children_of(launcher.pid) == pids
    launcher.send_signal(signal.SIGINT)
    assert launcher.wait(20) == 0, procs.output(launcher)
    assert not any(alive(p) for p in pids)
    out = procs.output(launcher)
    assert "got SIGINT" in out and out.count("exited cleanly") == 2


def test_override_reaches_the_node(procs):
    launcher = procs.python("hiwm.cli.main", "launch", "demo", "rate_hz:=25.0", "--duration", "5")
    assert launcher.wait(40) == 0, procs.output(launcher)
    reports = monitor_reports(procs.output(launcher))
    assert reports and reports[-1]["received"] > 0
    assert reports[-1]["rate_hz"] > 17.0, reports  # the default is 10 Hz


def test_killed_node_is_reported_and_respawned(procs):
    launcher = procs.python("hiwm.cli.main", "launch", SUPERVISED, "mode:=respawn")
    assert wait_for(lambda: len(started(procs.output(launcher))) == 2, 30), procs.output(launcher)
    first = dict(started(procs.output(launcher)))["camera"]
    assert wait_for(lambda: "[camera]" in procs.output(launcher), 30)  # running, not just forked
    os.kill(first, signal.SIGKILL)
    assert wait_for(lambda: len(started(procs.output(launcher))) == 3, 20), procs.output(launcher)
    out = procs.output(launcher)
    assert f"process camera (pid {first}) stopped by signal SIGKILL" in out
    second = started(out)[-1]
    assert second[0] == "camera" and second[1] != first and alive(second[1])
    pids = {pid for _, pid in started(out)}
    launcher.send_signal(signal.SIGTERM)
    assert launcher.wait(20) == 1, procs.output(launcher)  # a node died during the run
    assert not any(alive(p) for p in pids)


def test_required_node_exit_stops_the_graph(procs):
    launcher = procs.python("hiwm.cli.main", "launch", SUPERVISED, "mode:=required", "rate_hz:=-1", "--duration", "60")
    assert launcher.wait(40) == 1, procs.output(launcher)
    out = procs.output(launcher)
    assert re.search(r"process camera \(pid \d+\) died with exit code 2", out)
    assert "rate_hz must be > 0" in out  # the node's own error line, prefixed
    assert "required node camera exited: shutting the graph down" in out
    assert re.search(r"process monitor \(pid \d+\) (exited cleanly|stopped by signal|died with)", out)
    assert "duration of" not in out
    assert not any(alive(p) for _, p in started(out))


def test_children_die_with_a_killed_launcher(procs):
    launcher = procs.python("hiwm.cli.main", "launch", "demo")
    assert wait_for(lambda: len(started(procs.output(launcher))) == 2, 30), procs.output(launcher)
    pids = {pid for _, pid in started(procs.output(launcher))}
    launcher.kill()
    launcher.wait()
    assert wait_for(lambda: not any(alive(p) for p in pids), 15)
