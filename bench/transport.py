"""Transport benchmark: round trips and lossless image throughput between two processes over DDS.

Prints one JSON object. Targets (issue 2): 640x480 rgb8 >= 400 msg/s, 96x96 rgb8 >= 5,000 msg/s
(both lossless), small-message round trip p50 <= 1 ms.

    python bench/transport.py [--images 3000] [--big-images 600] [--round-trips 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

from hiwm.comm import KEEP_ALL, create_node, new_message
from hiwm.comm.images import numpy_to_image

HERE = os.path.abspath(__file__)


def role_sink(expect: int) -> None:
    """Receive `expect` images (decoded), then print arrival-time figures."""
    node = create_node("bench_sink")
    times: list[float] = []
    sizes: set = set()

    def on_image(msg: object) -> None:
        times.append(time.perf_counter())
        sizes.add((msg.height, msg.width))

    node.create_subscription("sensor_msgs/msg/Image", "/bench/images", on_image, KEEP_ALL)
    ready = node.create_publisher("std_msgs/msg/String", "/bench/ready", "latched")
    ready.publish(new_message("std_msgs/msg/String", data="ready"))
    node.spin_until(lambda: len(times) >= expect, 300)
    span = times[-1] - times[0] if len(times) > 1 else float("nan")
    print(json.dumps({"received": len(times), "span_s": span, "sizes": sorted(sizes)}), flush=True)


def role_echo() -> None:
    """Answer pings on a topic and a service until killed."""
    node = create_node("bench_echo")
    pong = node.create_publisher("std_msgs/msg/String", "/bench/pong", "default")
    node.create_subscription("std_msgs/msg/String", "/bench/ping", pong.publish, "default")
    node.create_service(
        "std_srvs/srv/Trigger",
        "/bench/trigger",
        lambda _r: new_message("std_srvs/srv/Trigger_Response", success=True, message="pong"),
    )
    node.spin()


def spawn(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, HERE, *args], stdout=subprocess.PIPE, text=True)


def throughput(node, height: int, width: int, count: int) -> dict:
    sink = spawn("--role", "sink", "--expect", str(count))
    ready: list = []
    ready_sub = node.create_subscription("std_msgs/msg/String", "/bench/ready", ready.append, "latched")
    pub = node.create_publisher("sensor_msgs/msg/Image", "/bench/images", KEEP_ALL)
    node.spin_until(lambda: ready and pub.matched_count() > 0, 60)
    frame = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    msg = numpy_to_image(frame, node.header("bench"))
    start = time.perf_counter()
    for _ in range(count):
        pub.publish(msg)  # keep-all + reliable: blocks when the reader falls behind, never drops
    sent_s = time.perf_counter() - start
    out, _ = sink.communicate(timeout=300)
    result = json.loads(out.strip().splitlines()[-1])
    del ready_sub
    return {
        "size": f"{width}x{height}",
        "messages": count,
        "received": result["received"],
        "lossless": result["received"] == count,
        "msg_per_s": round(count / max(sent_s, result["span_s"]), 1),
        "mbyte_per_s": round(count * frame.nbytes / max(sent_s, result["span_s"]) / 1e6, 1),
    }


def percentiles(samples: list[float]) -> dict:
    ms = np.array(samples) * 1e3
    return {
        "n": len(ms),
        "p50_ms": round(float(np.percentile(ms, 50)), 4),
        "p99_ms": round(float(np.percentile(ms, 99)), 4),
    }


def round_trips(node, count: int) -> dict:
    echo = spawn("--role", "echo")
    try:
        got: list = []
        ping = node.create_publisher("std_msgs/msg/String", "/bench/ping", "default")
        node.create_subscription("std_msgs/msg/String", "/bench/pong", got.append, "default")
        client = node.create_client("std_srvs/srv/Trigger", "/bench/trigger")
        assert client.wait_for_service(60), "echo process did not come up"
        node.spin_until(lambda: ping.matched_count() > 0, 30)
        node.spin_until(lambda: False, 0.5)  # let the pong publisher match us
        topic_rtt = []
        msg = new_message("std_msgs/msg/String", data="ping")
        for _ in range(count):
            n = len(got)
            t0 = time.perf_counter()
            ping.publish(msg)
            node.spin_until(lambda n=n: len(got) > n, 5)
            topic_rtt.append(time.perf_counter() - t0)
        request = new_message("std_srvs/srv/Trigger_Request")
        service_rtt = []
        for _ in range(count):
            t0 = time.perf_counter()
            client.call(request, timeout=5)
            service_rtt.append(time.perf_counter() - t0)
        return {"topic_ping_pong": percentiles(topic_rtt), "service_call": percentiles(service_rtt)}
    finally:
        echo.terminate()
        echo.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--role", choices=["main", "sink", "echo"], default="main")
    parser.add_argument("--expect", type=int, default=0)
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--big-images", type=int, default=1000)
    parser.add_argument("--round-trips", type=int, default=2000)
    args = parser.parse_args()
    if args.role == "sink":
        return role_sink(args.expect)
    if args.role == "echo":
        return role_echo()
    from hiwm.comm.dds.node import _Process

    node = create_node("bench_main")
    report = {
        "backend": node.backend,
        "dds_scope": _Process.get().settings.scope if node.backend == "dds" else None,
        "cpus": os.cpu_count(),
        "images_96x96": throughput(node, 96, 96, args.images),
        "images_640x480": throughput(node, 480, 640, args.big_images),
        "round_trip": round_trips(node, args.round_trips),
    }
    report["targets_met"] = {
        "96x96_ge_5000": report["images_96x96"]["lossless"] and report["images_96x96"]["msg_per_s"] >= 5000,
        "640x480_ge_400": report["images_640x480"]["lossless"] and report["images_640x480"]["msg_per_s"] >= 400,
        "rtt_p50_le_1ms": report["round_trip"]["service_call"]["p50_ms"] <= 1.0
        and report["round_trip"]["topic_ping_pong"]["p50_ms"] <= 1.0,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
