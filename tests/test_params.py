"""Parameters from ROS 2 YAML files and -p overrides, with type checks naming the key."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from hiwm.comm.node import parse_ros_args
from hiwm.comm.params import ParameterError, load_parameter_file, parse_override


@dataclass
class Limits:
    max_speed: float = 1.0
    names: list = field(default_factory=lambda: ["x", "y"])


@dataclass
class Cfg:
    rate_hz: float = 10.0
    width: int = 96
    enabled: bool = True
    label: str = "cam"
    limits: Limits = field(default_factory=Limits)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return path


def make_node(*argv: str):
    from hiwm.comm.dds.node import DdsNode

    ros_args, _ = parse_ros_args(["--ros-args", *argv])
    return DdsNode("cam", "/lab", ros_args)


def test_file_and_override_values_reach_a_typed_config(tmp_path):
    path = write(
        tmp_path,
        "/**:\n  ros__parameters:\n    label: everyone\n"
        "/lab/cam:\n  ros__parameters:\n    rate_hz: 15\n    limits:\n      max_speed: 0.5\n",
    )
    node = make_node("--params-file", str(path), "-p", "width:=128", "-p", "limits.names:=[a, b, c]")
    cfg = node.load_config(Cfg)
    assert cfg.rate_hz == 15.0 and isinstance(cfg.rate_hz, float)  # int widened to float
    assert cfg.width == 128
    assert cfg.label == "everyone"
    assert cfg.limits == Limits(max_speed=0.5, names=["a", "b", "c"])
    assert node.get_parameter("limits.max_speed") == 0.5


def test_other_nodes_entries_do_not_apply(tmp_path):
    path = write(tmp_path, "other:\n  ros__parameters:\n    width: 7\n")
    assert load_parameter_file(path, "/lab/cam") == {}


@pytest.mark.parametrize(
    ("yaml_text", "key"),
    [
        ("cam:\n  ros__parameters:\n    width: ninety\n", "width"),
        ("cam:\n  ros__parameters:\n    enabled: 1\n", "enabled"),
        ("cam:\n  ros__parameters:\n    width: 3.5\n", "width"),
        ("cam:\n  ros__parameters:\n    limits:\n      max_speed: fast\n", "limits.max_speed"),
    ],
)
def test_wrong_types_are_rejected_naming_the_key(tmp_path, yaml_text, key):
    path = write(tmp_path, yaml_text)
    node = make_node("--params-file", str(path))
    with pytest.raises(ParameterError, match=rf"'{key}'.*must be") as info:
        node.load_config(Cfg)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("cam: [1, 2\n", "not valid YAML"),
        ("cam:\n  width: 3\n", "ros__parameters"),
        ("- a\n- b\n", "top level"),
        ("cam:\n  ros__parameters:\n    width: {a: [1, {b: 2}]}\n", "unsupported value"),
    ],
)
def test_malformed_files_get_clear_errors(tmp_path, yaml_text, message):
    with pytest.raises(ParameterError, match=message):
        load_parameter_file(write(tmp_path, yaml_text), "/cam")


def test_missing_file_and_bad_override():
    with pytest.raises(ParameterError, match="cannot read"):
        load_parameter_file("/nonexistent/params.yaml", "/cam")
    with pytest.raises(ParameterError, match="name:=value"):
        parse_override("width=3")


def test_ros_args_are_parsed_like_ros2_run():
    ros, rest = parse_ros_args(
        ["--verbose", "--ros-args", "-r", "__node:=cam2", "-r", "__ns:=/x", "-r", "image:=/other", "-p", "a:=1", "--"]
    )
    assert rest == ["--verbose"]
    assert (ros.node_name, ros.namespace, ros.remaps, ros.overrides) == ("cam2", "/x", {"image": "/other"}, ["a:=1"])
