"""``hiwm topic list|echo|hz`` and ``hiwm service list|call``: graph introspection without ROS.

They talk DDS directly, so they see ROS 2 nodes on rmw_cyclonedds as well as hiwm's.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any

import numpy as np
import yaml

from hiwm.comm import to_dict
from hiwm.comm.qos import QoSProfile, Reliability

# Best effort matches reliable and best-effort publishers alike, as `ros2 topic echo` does.
ECHO_QOS = QoSProfile(reliability=Reliability.BEST_EFFORT, depth=10)


def _node(name: str):
    from hiwm.comm.dds.node import DdsNode

    return DdsNode(name)


def _graph(wait: float):
    from hiwm.comm.dds.graph import discover

    return discover(wait)


def cmd_list(args: argparse.Namespace, kind: str) -> int:
    for name, entry in _graph(args.wait).items():
        if entry.kind != kind:
            continue
        line = name
        if args.show_types:
            line += f" [{', '.join(sorted(entry.types))}]"
        if args.verbose:
            who = ("clients", "servers") if kind == "service" else ("publishers", "subscribers")
            line += f"  {who[0]}: {entry.publishers}  {who[1]}: {entry.subscribers}"
        print(line)
    return 0


def _type_of(topic: str, given: str | None, wait: float, kind: str = "topic") -> str:
    if given:
        return given
    deadline = time.monotonic() + max(wait, 0.5) * 4
    while time.monotonic() < deadline:
        entry = _graph(wait).get(topic)
        if entry and entry.kind == kind and entry.types:
            if len(entry.types) > 1:
                raise SystemExit(f"{topic} carries several types {sorted(entry.types)}: pick one with --type")
            return next(iter(entry.types))
    raise SystemExit(f"no {kind} {topic} on the graph (ROS_DOMAIN_ID={_domain()}); give --type to wait for it")


def _domain() -> int:
    from hiwm.comm.dds.node import _Process

    return _Process.get().settings.domain_id


def _abbreviate(value: Any, limit: int) -> Any:
    if isinstance(value, dict):
        return {k: _abbreviate(v, limit) for k, v in value.items()}
    if isinstance(value, list):
        if len(value) > limit:
            return f"<{len(value)} items: {value[:limit]} ...>"
        return [_abbreviate(v, limit) for v in value]
    return value


def cmd_echo(args: argparse.Namespace) -> int:
    topic = "/" + args.topic.lstrip("/")
    msg_type = _type_of(topic, args.type, args.wait)
    node = _node("hiwm_topic_echo")
    count = [0]

    def show(msg: Any) -> None:
        data = to_dict(msg)
        if args.json:
            print(json.dumps(data, default=lambda o: o.tolist() if isinstance(o, np.ndarray) else str(o)), flush=True)
        else:
            print(yaml.safe_dump(_abbreviate(data, args.array_limit), sort_keys=False).rstrip() + "\n---", flush=True)
        count[0] += 1

    node.create_subscription(msg_type, topic, show, ECHO_QOS)
    done = node.spin_until(lambda: args.count is not None and count[0] >= args.count, args.timeout or 1e12)
    return 0 if done or args.count is None else 1


def cmd_hz(args: argparse.Namespace) -> int:
    topic = "/" + args.topic.lstrip("/")
    msg_type = _type_of(topic, args.type, args.wait)
    node = _node("hiwm_topic_hz")
    arrivals: list[float] = []
    node.create_subscription(msg_type, topic, lambda _raw: arrivals.append(time.monotonic()), ECHO_QOS, raw=True)
    end = time.monotonic() + (args.duration or 1e12)
    next_report = time.monotonic() + args.period
    reports = 0
    while time.monotonic() < end:
        node.spin_once(0.05)
        if time.monotonic() >= next_report:
            next_report += args.period
            window = arrivals[-args.window :]
            if len(window) < 2:
                print("no new messages", flush=True)
                continue
            gaps = np.diff(window)
            report = {
                "rate_hz": round(1.0 / float(np.mean(gaps)), 3),
                "min_s": round(float(gaps.min()), 6),
                "max_s": round(float(gaps.max()), 6),
                "std_s": round(statistics.pstdev(gaps.tolist()), 6),
                "window": len(window),
            }
            print(json.dumps(report) if args.json else "  ".join(f"{k}: {v}" for k, v in report.items()), flush=True)
            reports += 1
    return 0 if arrivals else 1


def cmd_call(args: argparse.Namespace) -> int:
    from hiwm.comm import new_message

    service = "/" + args.service.lstrip("/")
    srv_type = _type_of(service, args.type, args.wait, kind="service")
    node = _node("hiwm_service_call")
    client = node.create_client(srv_type, service)
    values = yaml.safe_load(args.request) if args.request else {}
    if not isinstance(values, dict):
        raise SystemExit("request must be a YAML mapping, e.g. '{data: true}'")
    request = new_message(f"{srv_type}_Request", **{k: _array_if_list(v) for k, v in values.items()})
    response = client.call(request, args.timeout)
    print(yaml.safe_dump(to_dict(response), sort_keys=False).rstrip())
    return 0


def _array_if_list(value: Any) -> Any:
    return np.asarray(value) if isinstance(value, list) and all(isinstance(v, (int, float)) for v in value) else value


def register(sub: argparse._SubParsersAction) -> None:
    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--wait", type=float, default=1.5, help="seconds of discovery before answering")

    topic = sub.add_parser("topic", help="list, echo and measure topics over DDS (no ROS needed)")
    tsub = topic.add_subparsers(dest="topic_command", required=True, metavar="SUBCOMMAND")

    p = tsub.add_parser("list", help="topics seen on the graph")
    p.add_argument("-t", "--show-types", action="store_true")
    p.add_argument("-v", "--verbose", action="store_true", help="also count publishers and subscribers")
    common(p)
    p.set_defaults(func=lambda a: cmd_list(a, "topic"))

    p = tsub.add_parser("echo", help="print messages of a topic")
    p.add_argument("topic")
    p.add_argument("--type", help="message type (default: discovered)")
    p.add_argument("--count", type=int, help="stop after this many messages")
    p.add_argument("--timeout", type=float, help="give up after this many seconds")
    p.add_argument("--json", action="store_true", help="one JSON object per line, arrays in full")
    p.add_argument("--array-limit", type=int, default=16, help="arrays longer than this are abbreviated")
    common(p)
    p.set_defaults(func=cmd_echo)

    p = tsub.add_parser("hz", help="message rate of a topic")
    p.add_argument("topic")
    p.add_argument("--type")
    p.add_argument("--window", type=int, default=100)
    p.add_argument("--period", type=float, default=1.0, help="seconds between reports")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.add_argument("--json", action="store_true")
    common(p)
    p.set_defaults(func=cmd_hz)

    service = sub.add_parser("service", help="list and call services over DDS (no ROS needed)")
    ssub = service.add_subparsers(dest="service_command", required=True, metavar="SUBCOMMAND")
    p = ssub.add_parser("list", help="services seen on the graph")
    p.add_argument("-t", "--show-types", action="store_true")
    p.add_argument("-v", "--verbose", action="store_true", help="also count clients and servers")
    common(p)
    p.set_defaults(func=lambda a: cmd_list(a, "service"))

    p = ssub.add_parser("call", help="call a service with a YAML request")
    p.add_argument("service")
    p.add_argument("request", nargs="?", default="", help="YAML mapping, e.g. '{data: true}'")
    p.add_argument("--type", help="service type (default: discovered)")
    p.add_argument("--timeout", type=float, default=5.0)
    common(p)
    p.set_defaults(func=cmd_call)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use: hiwm topic ...")
