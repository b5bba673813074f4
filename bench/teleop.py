"""Key-to-frame latency of the browser playground, measured in headless Chromium.

Starts the world (the world-model node with ``--checkpoint``, else the Push-T robot), the arbiter
and the teleop bridge as separate processes over DDS (lockstep: each key message steps the world
once), opens the page, and presses keys. The page stamps each key message (``t_client``); the
frame it produced echoes the stamp; latency = when that frame was drawn on the canvas - stamp.

    python bench/teleop.py [--presses 200] [--checkpoint runs/wm/checkpoint]

Prints one JSON object (targets: p50 <= 30 ms, p99 <= 60 ms with the world model in the loop).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time

import numpy as np
from tqdm import tqdm


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presses", type=int, default=200)
    parser.add_argument("--checkpoint", help="world-model checkpoint: measure against the world model")
    args = parser.parse_args()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains

    env = {**os.environ, "ROS_DOMAIN_ID": str(150 + os.getpid() % 50), "HIWM_BACKEND": "dds"}
    port, ros = free_port(), ["--ros-args", "-r", "__ns:=/bench_teleop"]
    if args.checkpoint:
        world = ["hiwm.nodes.world_model", *ros, "-p", "clock:=lockstep", "-p", f"checkpoint:={args.checkpoint}"]
    else:
        world = ["hiwm.nodes.sim_robot", *ros, "-p", "clock:=lockstep"]
    web = ["hiwm.nodes.teleop_web", *ros, "-p", f"port:={port}"]  # the world and page share the task's camera topic
    cmds = [world, ["hiwm.nodes.arbiter", *ros], web]
    procs = [
        subprocess.Popen([sys.executable, "-m", *c], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for c in cmds
    ]
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "chromedriver"), options=options)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                driver.get(f"http://127.0.0.1:{port}/")
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        while not driver.execute_script("return window.hiwm.open && window.hiwm.phase"):
            time.sleep(0.1)
        driver.execute_script("document.getElementById('reset').click()")
        while not driver.execute_script("return window.hiwm.frames > 0"):
            time.sleep(0.1)
        body = driver.find_element("tag name", "body")
        body.click()
        keys = "dsaw"
        for k in tqdm(range(args.presses), desc="key presses", unit="key"):
            n = driver.execute_script("return window.hiwm.latencies.length")
            key = keys[(k // 10) % 4]  # ten presses each way: the agent walks a square
            ActionChains(driver).key_down(key).key_up(key).perform()
            t0 = time.monotonic()
            while driver.execute_script("return window.hiwm.latencies.length") == n and time.monotonic() - t0 < 2:
                time.sleep(0.002)
            time.sleep(0.02)
        lat = np.array(driver.execute_script("return window.hiwm.latencies"), dtype=float)
    finally:
        driver.quit()
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(10)
    out = {
        "world": "model" if args.checkpoint else "real (Push-T robot)",
        "presses": args.presses,
        "frames_measured": len(lat),
        "p50_ms": round(float(np.percentile(lat, 50)), 2) if len(lat) else None,
        "p99_ms": round(float(np.percentile(lat, 99)), 2) if len(lat) else None,
        "mean_ms": round(float(lat.mean()), 2) if len(lat) else None,
    }
    out["targets_met"] = {
        "p50_le_30ms": bool(len(lat) and out["p50_ms"] <= 30),
        "p99_le_60ms": bool(len(lat) and out["p99_ms"] <= 60),
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
