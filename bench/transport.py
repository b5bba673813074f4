"""Transport benchmark: round trips and lossless image throughput between two processes, per backend pair.

Each pair ``A-to-B`` runs a driver process on backend A (publisher of the images, sender of pings and
service requests) against peers on backend B (image sink, echo): ``dds-to-dds``, and where rclpy is
importable ``rclpy-to-rclpy``, ``dds-to-rclpy`` and ``rclpy-to-dds``. Prints one JSON object: every pair's
figures, and a summary with the pairs side by side. Targets for the DDS backend: 640x480 rgb8 >= 400
msg/s, 96x96 rgb8 >= 5,000 msg/s (both lossless), small-message round trip p50 <= 1 ms.

    python bench/transport.py [--images 2000] [--big-images 300] [--round-trips 1000] [--pairs dds-to-dds ...]
"""

from __future__ import annotations

import argparse
import importlib.util
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


PAIRS = ["dds-to-dds", "rclpy-to-rclpy", "dds-to-rclpy", "rclpy-to-dds"]


def spawn(*args: str, backend: str | None = None) -> subprocess.Popen:
    """This script in another process; ``backend`` (else this process's) is its HIWM_BACKEND."""
    env = {**os.environ, "HIWM_BACKEND": backend or os.environ.get("HIWM_BACKEND", "dds")}
    return subprocess.Popen([sys.executable, HERE, *args], stdout=subprocess.PIPE, text=True, env=env)


def throughput(node, height: int, width: int, count: int, peer: str) -> dict:
    sink = spawn("--role", "sink", "--expect", str(count), backend=peer)
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


def round_trips(node, count: int, peer: str) -> dict:
    echo = spawn("--role", "echo", backend=peer)
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


def drive(args: argparse.Namespace) -> None:
    """One pair: this process on its backend against peers on ``--peer-backend``."""
    node = create_node("bench_main")
    report = {
        "images_96x96": throughput(node, 96, 96, args.images, args.peer_backend),
        "images_640x480": throughput(node, 480, 640, args.big_images, args.peer_backend),
        "round_trip": round_trips(node, args.round_trips, args.peer_backend),
    }
    print(json.dumps(report), flush=True)


def side_by_side(pairs: dict) -> dict:
    done = {name: r for name, r in pairs.items() if "error" not in r}

    def col(get) -> dict:
        return {name: get(r) for name, r in done.items()}

    return {
        "640x480_msg_per_s": col(lambda r: r["images_640x480"]["msg_per_s"]),
        "640x480_lossless": col(lambda r: r["images_640x480"]["lossless"]),
        "96x96_msg_per_s": col(lambda r: r["images_96x96"]["msg_per_s"]),
        "topic_rtt_p50_ms": col(lambda r: r["round_trip"]["topic_ping_pong"]["p50_ms"]),
        "topic_rtt_p99_ms": col(lambda r: r["round_trip"]["topic_ping_pong"]["p99_ms"]),
        "service_rtt_p50_ms": col(lambda r: r["round_trip"]["service_call"]["p50_ms"]),
        "service_rtt_p99_ms": col(lambda r: r["round_trip"]["service_call"]["p99_ms"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--role", choices=["main", "driver", "sink", "echo"], default="main")
    parser.add_argument("--peer-backend", choices=["dds", "rclpy"], default="dds")
    parser.add_argument("--expect", type=int, default=0)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--big-images", type=int, default=300)
    parser.add_argument("--round-trips", type=int, default=1000)
    parser.add_argument("--pairs", nargs="+", choices=PAIRS, default=PAIRS)
    parser.add_argument("--discovery-range", choices=["LOCALHOST", "SUBNET"], default="LOCALHOST")
    args = parser.parse_args()
    if args.role == "sink":
        return role_sink(args.expect)
    if args.role == "echo":
        return role_echo()
    if args.role == "driver":
        return drive(args)
    from hiwm.comm.dds.config import dds_settings

    # Both backends on loopback unless asked otherwise (a sourced ROS 2 tree may say SUBNET).
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = args.discovery_range
    has_rclpy = importlib.util.find_spec("rclpy") is not None
    pairs: dict[str, dict] = {}
    for pair in args.pairs:
        driver, peer = pair.split("-to-")
        if "rclpy" in (driver, peer) and not has_rclpy:
            pairs[pair] = {"error": "rclpy is not importable (no ROS 2 sourced)"}
            continue
        counts = ["--images", str(args.images), "--big-images", str(args.big_images)]
        proc = spawn("--role", "driver", "--peer-backend", peer, *counts, "--round-trips", str(args.round_trips),
                     backend=driver)  # fmt: skip
        out, _ = proc.communicate(timeout=1800)
        lines = [line for line in out.splitlines() if line.startswith("{")]
        pairs[pair] = json.loads(lines[-1]) if proc.returncode == 0 and lines else {"error": f"exit {proc.returncode}"}
    dds_pair = pairs.get("dds-to-dds", {})
    report = {
        "cpus": os.cpu_count(),
        "load_avg_1m_at_end": round(os.getloadavg()[0], 2),
        "dds_scope": dds_settings().scope,
        "rmw": os.environ.get("RMW_IMPLEMENTATION"),
        "discovery_range": args.discovery_range,
        "summary": side_by_side(pairs),
        "pairs": pairs,
    }
    if "error" not in dds_pair and dds_pair:
        report["dds_targets_met"] = {
            "96x96_ge_5000": dds_pair["images_96x96"]["lossless"] and dds_pair["images_96x96"]["msg_per_s"] >= 5000,
            "640x480_ge_400": dds_pair["images_640x480"]["lossless"] and dds_pair["images_640x480"]["msg_per_s"] >= 400,
            "rtt_p50_le_1ms": dds_pair["round_trip"]["service_call"]["p50_ms"] <= 1.0
            and dds_pair["round_trip"]["topic_ping_pong"]["p50_ms"] <= 1.0,
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
