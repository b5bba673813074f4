"""Leader-arm benchmarks: the read loop, or (``--task``) the latency from the leader to the arm's command.

Read loop: sync reads of 6 servos from the emulator (its own process, real pty). Prints one JSON object:
per protocol, free-running reads/s with read-latency percentiles, and the rate a paced 100 Hz loop
achieves, with an instant pty and with the wire time of a 1 Mbaud bus plus the servos' return delay
emulated. Target: >= 50 Hz.

``--task so101_pick``: the SO-101 leader emulator (1 Mbaud wire time) -> leader_arm (100 Hz, an action
per read, config/leader/so101_arm.yaml) -> arbiter (the operator in control) -> ``robot/command`` ->
ros2_control_bridge -> the arm_robot's joint trajectory, all real processes over DDS. Each sample moves
the leader's shoulder and times until a command carrying the new joint position arrives. Prints one JSON
object with p50/p90 of both hops. Target: p50 <= 20 ms to ``robot/command``.

    python bench/leader_arm.py [--seconds 3]
    python bench/leader_arm.py --task so101_pick [--samples 40]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from hiwm.comm import create_node
from hiwm.comm.qos import KEEP_ALL
from hiwm.leader.bus import LeaderArmReader
from hiwm.leader.calibration import parse_calibration
from hiwm.paths import share_path

IDS = [1, 2, 3, 4, 5, 6]


def bench(protocol: str, seconds: float, tmp: Path, wire: list[str]) -> dict:
    link = tmp / f"{protocol}_bus"
    emu = subprocess.Popen(
        [sys.executable, "-m", "hiwm.leader.emulator", "--protocol", protocol, "--ids", ",".join(map(str, IDS)),
         "--link", str(link), "--sweep", *wire],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert emu.stdout.readline().startswith("ready")
        joints = [{"name": f"j{i}", "id": i, "homing": 2048} for i in IDS]
        reader = LeaderArmReader(parse_calibration({"protocol": protocol, "port": str(link), "joints": joints}))
        while reader.poll() is None:
            time.sleep(0.01)
        lat, t_end = [], time.perf_counter() + seconds
        while time.perf_counter() < t_end:
            t0 = time.perf_counter()
            ok = reader.poll() is not None
            if ok:
                lat.append(time.perf_counter() - t0)
        free = len(lat) / seconds
        period, n, t0 = 0.01, 0, time.perf_counter()  # a 100 Hz control loop, as the node runs it
        while time.perf_counter() - t0 < seconds:
            n += reader.poll() is not None
            time.sleep(max(0.0, t0 + (n + 1) * period - time.perf_counter()))
        paced = n / (time.perf_counter() - t0)
        reader.close()
        ms = np.asarray(lat) * 1000
        return {
            "servos": len(IDS),
            "reads_per_s": round(free, 1),
            "read_ms_p50": round(float(np.percentile(ms, 50)), 3),
            "read_ms_p99": round(float(np.percentile(ms, 99)), 3),
            "paced_100hz_reads_per_s": round(paced, 1),
            "checksum_errors": reader.stats.checksum_errors,
            "timeouts": reader.stats.timeouts,
        }
    finally:
        emu.terminate()
        emu.wait(5)


def percentiles(samples: list[float]) -> dict:
    ms = np.asarray(samples) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2), "p90_ms": round(float(np.percentile(ms, 90)), 2)}


def chain(task: str, samples: int, tmp: Path) -> dict:
    """Leader emulator -> leader_arm -> arbiter -> robot/command (-> bridge -> joint trajectory): latencies."""
    if task != "so101_pick":
        raise SystemExit(f"--task: only so101_pick has a leader-arm calibration here, got {task!r}")
    doc = yaml.safe_load(share_path("config", "leader", "so101_arm.yaml").read_text())
    link = tmp / "so101_leader"
    cal_path = tmp / "so101_arm.yaml"
    cal_path.write_text(yaml.safe_dump({**doc, "port": str(link)}))
    cal = parse_calibration({**doc, "port": str(link)})
    pan = cal.joints[0]
    emu = subprocess.Popen(
        [sys.executable, "-m", "hiwm.leader.emulator", "--protocol", "feetech", "--ids", ",".join(map(str, cal.ids)),
         "--positions", ",".join(str(j.homing) for j in cal.joints), "--link", str(link),
         "--baud", "1000000", "--return-delay-us", "500"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert emu.stdout.readline().startswith("ready")
    ros = ["--ros-args", "-r", "__ns:=/bench"]
    nodes = [
        ("leader_arm", ["-p", f"calibration:={cal_path}", "-p", "rate_hz:=100.0", "-p", "action_rate_hz:=0.0"]),
        ("arbiter", ["-p", f"task:={task}", "-p", "initial_phase:=correcting"]),
        ("ros2_control_bridge", ["--params-file", str(share_path("config", "ros2_control", "bridge_so101.yaml"))]),
        ("arm_robot", ["-p", f"task:={task}", "-p", "clock:=realtime"]),
    ]
    procs = [
        subprocess.Popen([sys.executable, "-m", f"hiwm.nodes.{name}", *ros, *args], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
        for name, args in nodes
    ]  # fmt: skip
    node = create_node("leader_chain_bench")
    got: dict[str, list[tuple[float, float]]] = {"command": [], "trajectory": []}
    node.create_subscription(
        "hiwm_msgs/msg/ActionChunk", "/bench/robot/command",
        lambda m: got["command"].append((time.perf_counter(), float(m.data[0]))), KEEP_ALL,
    )  # fmt: skip
    node.create_subscription(
        "trajectory_msgs/msg/JointTrajectory", "/joint_trajectory_controller/joint_trajectory",
        lambda m: m.points and got["trajectory"].append((time.perf_counter(), float(m.points[-1].positions[0]))),
        KEEP_ALL,
    )  # fmt: skip

    def arrival(key: str, value: float, since: float) -> float | None:
        hits = [t for t, v in got[key] if t >= since and abs(v - value) < 1e-4]
        return hits[0] - since if hits else None

    try:
        if not node.spin_until(lambda: got["command"] and got["trajectory"], 60.0):
            raise RuntimeError("no commands reach the arm: a node did not start")
        lat: dict[str, list[float]] = {"command": [], "trajectory": []}
        for i in range(samples):
            raw = pan.homing + (1 if i % 2 else -1) * (100 + i)  # a new position each time
            value = float(np.float32(pan.to_radians(raw)))  # the chunk carries float32
            node.spin_until(lambda: False, 0.05)  # settle; drop what came before
            t0 = time.perf_counter()
            emu.stdin.write(f"pos {pan.id} {raw}\n")
            emu.stdin.flush()
            emu.stdout.readline()  # ok pos ...
            for key in lat:
                node.spin_until(lambda k=key, v=value, t=t0: arrival(k, v, t) is not None, 10.0)
                if (dt := arrival(key, value, t0)) is not None:
                    lat[key].append(dt)
        return {
            "task": task,
            "samples": samples,
            "robot_command": {"received": len(lat["command"]), **percentiles(lat["command"])},
            "joint_trajectory": {"received": len(lat["trajectory"]), **percentiles(lat["trajectory"])},
            "target_p50_ms": 20,
            "meets_target": bool(lat["command"]) and percentiles(lat["command"])["p50_ms"] <= 20,
        }
    finally:
        node.destroy()
        for proc in [*procs, emu]:
            proc.terminate()
        for proc in [*procs, emu]:
            proc.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--task", default="", help="measure leader -> arm command latency for this task instead")
    ap.add_argument("--samples", type=int, default=40)
    args = ap.parse_args()
    if args.task:
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps({"bench": "leader_arm_chain", **chain(args.task, args.samples, Path(tmp))}))
        return
    with tempfile.TemporaryDirectory() as tmp:
        results = {p: bench(p, args.seconds, Path(tmp), []) for p in ("feetech", "dynamixel")}
        # As on a real bus: 1 Mbaud and the servos' default Return Delay Time (Feetech 500 us, Dynamixel X 250 us).
        for protocol, delay in (("feetech", 500), ("dynamixel", 250)):
            wire = ["--baud", "1000000", "--return-delay-us", str(delay)]
            results[f"{protocol}_1mbaud"] = bench(protocol, args.seconds, Path(tmp), wire)
    ok = all(r["paced_100hz_reads_per_s"] >= 50 for r in results.values())
    print(json.dumps({"bench": "leader_arm", "target_hz": 50, "meets_target": ok, **results}))


if __name__ == "__main__":
    main()
