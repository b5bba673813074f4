"""What being a full ROS 2 graph citizen costs a DDS-backend node: creation times.

Prints one JSON object: median milliseconds to create a node (which now also creates its
six parameter services and ``/parameter_events`` writer and announces itself on
``ros_discovery_info``), a publisher, a subscription and a service (each with its type
hash in USER_DATA and a graph announcement), the first node of a process (participant
start included), and the per-node announcement alone. Runs in one process, no peers.

    nice -n 10 python bench/graph_overhead.py [--nodes 20]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

from hiwm.comm.dds.node import DdsNode, _Process


def ms(seconds: list[float]) -> float:
    return round(statistics.median(seconds) * 1e3, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=20)
    args = parser.parse_args()
    os.environ.setdefault("ROS_DOMAIN_ID", "199")

    t0 = time.perf_counter()
    first = DdsNode("bench_first")
    first_s = time.perf_counter() - t0
    nodes, pubs, subs, srvs, announce = [], [], [], [], []
    made = []
    for i in range(args.nodes):
        t = time.perf_counter()
        node = DdsNode(f"bench_{i}")
        nodes.append(time.perf_counter() - t)
        t = time.perf_counter()
        node.create_publisher("sensor_msgs/msg/JointState", f"state_{i}")
        pubs.append(time.perf_counter() - t)
        t = time.perf_counter()
        node.create_subscription("sensor_msgs/msg/JointState", f"cmd_{i}", lambda _m: None)
        subs.append(time.perf_counter() - t)
        t = time.perf_counter()
        node.create_service("std_srvs/srv/Trigger", f"~/go_{i}", lambda _r: None)
        srvs.append(time.perf_counter() - t)
        t = time.perf_counter()
        _Process.get().announce()
        announce.append(time.perf_counter() - t)
        made.append(node)
    result = {
        "first_node_ms": round(first_s * 1e3, 1),
        "node_ms": ms(nodes),
        "publisher_ms": ms(pubs),
        "subscription_ms": ms(subs),
        "service_ms": ms(srvs),
        "announce_ms": ms(announce),
        "announce_nodes": len(made) + 1,
        "nodes": args.nodes,
    }
    for node in [*made, first]:
        node.destroy()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
