"""What is on the DDS graph: topics and services of every participant (ROS 2 nodes included)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from cyclonedds.builtin import BuiltinDataReader, BuiltinTopicDcpsPublication, BuiltinTopicDcpsSubscription
from cyclonedds.core import InstanceState, ReadCondition, SampleState, ViewState

from hiwm.comm import names
from hiwm.comm.dds.node import _Process
from hiwm.comm.interfaces import InterfaceError, normalize_type_name


@dataclass
class Endpoints:
    """Publishers and subscribers seen on one ROS name."""

    kind: str  # "topic" or "service"
    types: set[str] = field(default_factory=set)
    publishers: int = 0  # for a service: clients (request writers)
    subscribers: int = 0  # for a service: servers (request readers)


def _ros_type(dds_type: str) -> str:
    try:
        name = normalize_type_name(dds_type)
    except InterfaceError:
        return dds_type
    return name.removesuffix("_Request").removesuffix("_Response")


def discover(wait: float = 1.5) -> dict[str, Endpoints]:
    """Endpoints seen within ``wait`` seconds, keyed by ROS name (``/robot/state``)."""
    participant = _Process.get().participant
    alive = SampleState.Any | ViewState.Any | InstanceState.Alive
    readers = [
        (BuiltinDataReader(participant, BuiltinTopicDcpsPublication), "pub"),
        (BuiltinDataReader(participant, BuiltinTopicDcpsSubscription), "sub"),
    ]
    time.sleep(wait)
    own = participant.guid
    seen: dict[str, Endpoints] = {}
    for reader, side in readers:
        for sample in reader.read(N=100_000, condition=ReadCondition(reader, alive)):
            if sample.participant_key == own:
                continue
            mapped = names.ros_name_of_dds_topic(sample.topic_name)
            if mapped is None:
                continue
            kind, ros_name = mapped
            entry = seen.setdefault(ros_name, Endpoints(kind))
            entry.types.add(_ros_type(sample.type_name))
            if sample.topic_name.startswith("rr/"):
                continue  # a service is counted once, on its request topic
            if side == "pub":
                entry.publishers += 1
            else:
                entry.subscribers += 1
    return dict(sorted(seen.items()))
