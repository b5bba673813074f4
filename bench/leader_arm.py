"""Leader-arm read-loop benchmark: sync reads of 6 servos from the emulator (its own process, real pty).

Prints one JSON object: per protocol, free-running reads/s with read-latency percentiles, and the rate a
paced 100 Hz loop achieves, with an instant pty and with the wire time of a 1 Mbaud bus plus the servos'
return delay emulated. Target (issue 7): >= 50 Hz.

    python bench/leader_arm.py [--seconds 3]
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

from hiwm.leader.bus import LeaderArmReader
from hiwm.leader.calibration import parse_calibration

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()
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
