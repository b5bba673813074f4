"""Test peer for the interop matrix: every topic type and service of the graph, on this process's backend.

``--role source`` publishes every case of :data:`TOPICS` (after each has matched) and serves every type of
:data:`SERVICES`; ``--role sink`` subscribes to every topic (the latched one only when told ``late`` on
stdin, after the source published) and calls every service. Messages are deterministic (:func:`message`),
so each side reports sha256 digests of what it received, re-serialized, and the test compares them with
what was sent. Commands on stdin, one JSON line back for each: ``report`` (source: matched subscribers per
topic, requests served; sink: received digests, matched publishers, responses), ``late``, ``quit``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import queue
import sys
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

from hiwm.comm import create_node, new_message, serialize
from hiwm.comm.images import numpy_to_image
from hiwm.comm.interfaces import service_types, typestore

#: name: (type, QoS profile, messages sent). The QoS is what the graph uses on such a topic.
TOPICS: dict[str, tuple[str, str, int]] = {
    "image_640x480": ("sensor_msgs/msg/Image", "keep_all", 10),
    "image_96x96": ("sensor_msgs/msg/Image", "keep_all", 40),
    "joint_state": ("sensor_msgs/msg/JointState", "keep_all", 40),
    "action_chunk": ("hiwm_msgs/msg/ActionChunk", "keep_all", 40),
    "state_handle": ("hiwm_msgs/msg/StateHandle", "keep_all", 40),
    "state_snapshot": ("hiwm_msgs/msg/StateSnapshot", "keep_all", 40),
    "task_status": ("hiwm_msgs/msg/TaskStatus", "keep_all", 40),
    "phase": ("hiwm_msgs/msg/Phase", "latched", 3),  # a late subscriber gets the last one only
}
LATE = {"phase"}
SERVICES = [
    "hiwm_msgs/srv/Export",
    "hiwm_msgs/srv/Fork",
    "hiwm_msgs/srv/Label",
    "hiwm_msgs/srv/List",
    "hiwm_msgs/srv/Reset",
    "hiwm_msgs/srv/Restore",
    "hiwm_msgs/srv/Rollback",
    "hiwm_msgs/srv/SetPhase",
    "std_srvs/srv/Trigger",
    "std_srvs/srv/SetBool",
]
CALLS = 3  # requests per service
_NUMPY = {
    "bool": np.bool_, "byte": np.uint8, "char": np.uint8, "uint8": np.uint8, "int8": np.int8, "uint16": np.uint16,
    "int16": np.int16, "uint32": np.uint32, "int32": np.int32, "uint64": np.uint64, "int64": np.int64,
    "float32": np.float32, "float64": np.float64,
}  # fmt: skip


def _value(field_def: tuple, n: int, label: str) -> Any:
    kind, detail = field_def
    if kind.name == "NAME":
        return sample(detail, n)
    if kind.name == "BASE":
        base = detail[0]
        if base == "string":
            return f"{label}-{n}-ü✓"  # not ASCII: UTF-8 must cross intact
        if base == "bool":
            return n % 2 == 1
        if base.startswith("float"):
            return n + 0.25
        return n % 100 if base in ("int8", "uint8", "byte", "char") else n
    inner, length = detail
    size = length if kind.name == "ARRAY" else 1 + n % 4
    if inner[0].name == "BASE" and inner[1][0] in _NUMPY:
        return np.array([_value(inner, n + i, label) for i in range(size)], dtype=_NUMPY[inner[1][0]])
    return [_value(inner, n + i, f"{label}{i}") for i in range(size)]


def sample(msg_type: str, n: int) -> Any:
    """A message of ``msg_type`` with every field set from ``n`` (no field left at its default)."""
    _, fields = typestore().fielddefs[msg_type]
    # an empty type's placeholder byte is no content: rclpy's messages do not even expose it
    fields = [(f, d) for f, d in fields if f != "structure_needs_at_least_one_member"]
    return new_message(msg_type, **{f: _value(d, n * 37 + k, f) for k, (f, d) in enumerate(fields)})


def message(topic: str, i: int) -> Any:
    msg_type = TOPICS[topic][0]
    if topic.startswith("image_"):
        width, height = map(int, topic.removeprefix("image_").split("x"))
        frame = np.random.default_rng(i).integers(0, 256, (height, width, 3), dtype=np.uint8)
        return numpy_to_image(frame, sample("std_msgs/msg/Header", i))
    return sample(msg_type, i)


def request(srv_type: str, i: int) -> Any:
    return sample(service_types(srv_type)[0], i)


def response(srv_type: str, i: int) -> Any:
    return sample(service_types(srv_type)[1], 1000 + i)


def digest(msg: Any) -> str:
    return hashlib.sha256(serialize(msg)).hexdigest()[:16]


def topic_name(topic: str) -> str:
    return f"/interop/{topic}"


def service_name(srv_type: str) -> str:
    return f"/interop/{srv_type.rsplit('/', 1)[-1].lower()}"


def _commands(node: Any) -> Iterator[str]:
    """Lines from stdin, one at a time, while the node spins; ends on ``quit`` or the end of input."""
    lines: queue.Queue = queue.Queue()

    def read() -> None:
        for line in sys.stdin:
            lines.put(line.strip())
        lines.put("quit")

    threading.Thread(target=read, daemon=True).start()
    while node.ok:
        node.spin_once(0.05)
        try:
            line = lines.get_nowait()
        except queue.Empty:
            continue
        if line == "quit":
            return
        yield line


def _say(obj: object) -> None:
    print(json.dumps(obj), flush=True)


def source() -> None:
    node = create_node("interop_source")
    pubs = {t: node.create_publisher(msg_type, topic_name(t), qos) for t, (msg_type, qos, _) in TOPICS.items()}
    served: dict[str, list[str]] = {s: [] for s in SERVICES}
    for srv_type in SERVICES:

        def handle(req: Any, srv_type: str = srv_type) -> Any:
            served[srv_type].append(digest(req))
            return response(srv_type, len(served[srv_type]) - 1)  # the i-th call gets the i-th response

        node.create_service(srv_type, service_name(srv_type), handle)
    streaming = [t for t in TOPICS if t not in LATE]
    matched = node.spin_until(lambda: all(pubs[t].matched_count() for t in streaming), 90)
    node.spin_until(lambda: False, 0.5)  # let every reader's match settle on the reader's side too
    for t, (_, _, count) in TOPICS.items():
        for i in range(count):
            pubs[t].publish(message(t, i))
    _say({"published": matched})
    for line in _commands(node):
        if line == "report":
            _say({"matched": {t: pub.matched_count() for t, pub in pubs.items()}, "served": served})
    node.destroy()


def sink() -> None:
    node = create_node("interop_sink")
    got: dict[str, list[str]] = {t: [] for t in TOPICS}
    subs: dict[str, Any] = {}

    def subscribe(t: str) -> None:
        msg_type, qos, _ = TOPICS[t]
        subs[t] = node.create_subscription(msg_type, topic_name(t), lambda m, t=t: got[t].append(digest(m)), qos)

    for t in TOPICS:
        if t not in LATE:
            subscribe(t)
    clients = {s: node.create_client(s, service_name(s)) for s in SERVICES}
    _say({"ready": True})
    for line in _commands(node):
        if line == "late":
            for t in LATE:
                subscribe(t)
            _say({"subscribed": sorted(LATE)})
        elif line == "wait":  # until every stream is complete and the late subscriber has its sample
            node.spin_until(
                lambda: (
                    all(len(got[t]) >= (1 if t in LATE else TOPICS[t][2]) for t in TOPICS) and len(subs) == len(TOPICS)
                ),
                90,
            )
            node.spin_until(lambda: False, 0.5)  # anything beyond the expected count would show now
            _say({"received": got, "publishers": {t: s.publisher_count() for t, s in subs.items()}})
        elif line == "call":
            answers: dict[str, Any] = {}
            for srv_type, client in clients.items():
                if not client.wait_for_service(60):
                    answers[srv_type] = "not available"
                    continue
                answers[srv_type] = [digest(client.call(request(srv_type, i), timeout=30)) for i in range(CALLS)]
            _say({"responses": answers})
    node.destroy()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--role", choices=["source", "sink"], required=True)
    args = parser.parse_args()
    source() if args.role == "source" else sink()
