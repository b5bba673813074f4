"""Cost of one jog key press per task: the key -> action mapping the keyboard and the playground run.

Push-T's keys add a pixel step; an arm's end-effector keys run the task's IK (MuJoCo, damped least
squares) on every press. Prints one JSON object: per task, per-press latency percentiles (ms) over
``--presses`` presses cycling through the task's keys from its start pose.

    python bench/jog.py [--presses 300]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from hiwm.tasks import get_task, task_names
from hiwm.tasks.jog import Jogger


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presses", type=int, default=300)
    args = parser.parse_args()
    out = {}
    for name in task_names():
        task = get_task(name)
        t0 = time.perf_counter()
        jog = Jogger(task)
        build_s = time.perf_counter() - t0
        low, high = np.asarray(task.action.low), np.asarray(task.action.high)
        action = jog.hold((low + high) / 2)
        keys = jog.keys
        times = []
        for k in range(args.presses):
            t = time.perf_counter()
            action = jog.jog(action, [keys[(k // 5) % len(keys)]])  # five presses of each key in turn
            times.append((time.perf_counter() - t) * 1e3)
        out[name] = {
            "space": task.jog.space,
            "presses": args.presses,
            "setup_s": round(build_s, 3),
            "p50_ms": round(float(np.percentile(times, 50)), 3),
            "p95_ms": round(float(np.percentile(times, 95)), 3),
            "max_ms": round(float(np.max(times)), 3),
        }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
