"""RIHS01 type hashes against what rosidl generates for the same definitions.

The reference is the ROS 2 Jazzy core's installed type description files
(``share/<pkg>/msg|srv/*.json``, each with its ``type_hashes``) and, for hiwm_msgs, the
files the colcon build of ``msgs/`` generates. The hashes themselves are computed
without ROS: the DDS backend runs where ROS is not installed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import ROOT

from hiwm.comm.interfaces import InterfaceError
from hiwm.comm.type_hash import type_description, type_hash, user_data

ROS_SHARE = Path("/opt/ros/jazzy/share")
NO_ROS = "needs the ROS 2 Jazzy core's rosidl output in /opt/ros/jazzy/share (sh ../shared/ros2/install.sh)"

# Every standard type hiwm's graph puts on the wire (services: request and response).
GRAPH_TYPES = [
    "sensor_msgs/msg/Image",
    "sensor_msgs/msg/JointState",
    "sensor_msgs/msg/CameraInfo",
    "std_msgs/msg/Float64MultiArray",
    "std_msgs/msg/String",
    "trajectory_msgs/msg/JointTrajectory",
    "std_srvs/srv/Trigger",
    "std_srvs/srv/SetBool",
    "std_srvs/srv/Empty",
    "rcl_interfaces/msg/ParameterEvent",
    "rcl_interfaces/srv/ListParameters",
    "rcl_interfaces/srv/GetParameters",
    "rcl_interfaces/srv/SetParameters",
    "rcl_interfaces/srv/SetParametersAtomically",
    "rcl_interfaces/srv/DescribeParameters",
    "rcl_interfaces/srv/GetParameterTypes",
    "rmw_dds_common/msg/ParticipantEntitiesInfo",
]


def _hashes(path: Path) -> dict[str, str]:
    return {e["type_name"]: e["hash_string"] for e in json.loads(path.read_text())["type_hashes"]}


def _hiwm_msgs_share() -> Path | None:
    prefixes = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    for prefix in [*map(Path, prefixes), ROOT / "install" / "hiwm_msgs"]:
        share = prefix / "share" / "hiwm_msgs"
        if list(share.glob("msg/*.json")):
            return share
    return None


def test_hashes_are_stable_without_ros():
    # Values rosidl generated for Jazzy; checked here so machines without ROS test them too.
    assert type_hash("std_msgs/msg/String") == "RIHS01_df668c740482bbd48fb39d76a70dfd4bd59db1288021743503259e948f6b1a18"
    assert type_hash("sensor_msgs/msg/Image") == (
        "RIHS01_d31d41a9a4c4bc8eae9be757b0beed306564f7526c88ea6a4588fb9582527d47"
    )
    assert user_data("std_msgs/msg/String", "clientid=01.2;") == (
        b"clientid=01.2;typehash=RIHS01_df668c740482bbd48fb39d76a70dfd4bd59db1288021743503259e948f6b1a18;"
    )


def test_type_description_lists_every_referenced_type_once_sorted():
    desc = type_description("sensor_msgs/msg/CameraInfo")
    refs = [d["type_name"] for d in desc["referenced_type_descriptions"]]
    assert refs == ["builtin_interfaces/msg/Time", "sensor_msgs/msg/RegionOfInterest", "std_msgs/msg/Header"]
    empty = type_description("std_srvs/srv/Trigger_Request")["type_description"]
    assert empty["fields"][0]["name"] == "structure_needs_at_least_one_member"  # as rosidl pads empty structs


@pytest.mark.probe("type hash of an unknown type", "InterfaceError naming it")
def test_unknown_types_are_refused_by_name():
    with pytest.raises(InterfaceError, match="no_pkg/msg/Nothing"):
        type_hash("no_pkg/msg/Nothing")


@pytest.mark.skipif(not ROS_SHARE.is_dir(), reason=NO_ROS)
@pytest.mark.parametrize("name", GRAPH_TYPES)
def test_graph_types_hash_as_rosidl_generates(name):
    pkg, kind, base = name.split("/")
    expected = _hashes(ROS_SHARE / pkg / kind / f"{base}.json")
    # A file lists its type and every type it references (a service: its request, response, event).
    assert expected and {n: type_hash(n) for n in expected} == expected


@pytest.mark.skipif(not ROS_SHARE.is_dir(), reason=NO_ROS)
def test_every_installed_type_the_typestore_knows_hashes_as_rosidl_generates():
    checked, wrong = 0, []
    for path in sorted(ROS_SHARE.glob("*/[ms][sr][gv]/*.json")):
        for name, expected in _hashes(path).items():
            try:
                got = type_hash(name)
            except InterfaceError:
                continue  # a type hiwm does not define (rosbags' store lacks most services)
            checked += 1
            if got != expected:
                wrong.append(name)
    assert checked > 400 and not wrong


def test_hiwm_msgs_hash_as_their_colcon_build_generates():
    share = _hiwm_msgs_share()
    if share is None:
        if not ROS_SHARE.is_dir():
            pytest.skip(NO_ROS)
        pytest.skip("hiwm_msgs is not built: colcon build --base-paths . msgs (then . install/setup.sh)")
    files = sorted(share.glob("msg/*.json")) + sorted(share.glob("srv/*.json"))
    defined = {p.stem for p in (ROOT / "msgs").glob("*/*.*") if p.suffix in (".msg", ".srv")}
    assert {p.stem for p in files} == defined  # every msg and srv of the package
    for path in files:
        expected = _hashes(path)
        assert {n: type_hash(n) for n in expected} == expected, path.name
