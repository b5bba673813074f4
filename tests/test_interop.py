"""The interop matrix over real processes: {DDS backend, rclpy} publisher x subscriber, client x server.

Every topic type the graph uses (camera images 640x480 and 96x96, JointState, ActionChunk, the latched
Phase, StateHandle, StateSnapshot, TaskStatus) and every service type (hiwm_msgs' and std_srvs'), with the
QoS the graph gives them. Each pair asserts content (digests of what arrived against what was sent), QoS
compatibility (both sides matched) and that nothing was lost or duplicated (exact counts); a subscriber
that joins after the latched Phase was published still gets its last value. One source and one sink
process per pair carry every case (tests/peers/interop.py).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, require
from peers.interop import CALLS, LATE, SERVICES, TOPICS, digest, message, request, response

PAIRS = [("dds", "dds"), ("dds", "rclpy"), ("rclpy", "dds"), ("rclpy", "rclpy")]


class Peer:
    def __init__(self, role: str, backend: str, env: dict, log: Path) -> None:
        self.log = log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.peers.interop", "--role", role],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log.open("wb"),  # a file: a full pipe would stall the peer
            text=True,
            cwd=ROOT,
            env={**env, "HIWM_BACKEND": backend},
        )

    def ask(self, command: str | None = None) -> dict:
        """Send a command (or none) and read the next JSON line; the peer's stderr if it died instead."""
        if command is not None:
            self.proc.stdin.write(command + "\n")
            self.proc.stdin.flush()
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise AssertionError(f"peer exited ({self.proc.wait(10)}): {self.log.read_text()[-3000:]}")
            if line.startswith("{"):
                return json.loads(line)

    def close(self) -> int:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.close()
                return self.proc.wait(30)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.proc.kill()
        return self.proc.wait()


@pytest.mark.parametrize(("source", "sink"), PAIRS, ids=[f"{a}-to-{b}" for a, b in PAIRS])
def test_every_topic_and_service_crosses_between_backends(source, sink, tmp_path):
    if "rclpy" in (source, sink):
        require(importlib.util.find_spec("rclpy") is not None, "rclpy is not importable (no ROS 2 on this machine)")
    env = dict(os.environ)
    sub, pub = Peer("sink", sink, env, tmp_path / "sink.log"), None
    try:
        assert sub.ask() == {"ready": True}
        pub = Peer("source", source, env, tmp_path / "source.log")
        assert pub.ask() == {"published": True}, "a streaming subscriber never matched its publisher"
        assert sub.ask("late") == {"subscribed": sorted(LATE)}
        got = sub.ask("wait")
        answers = sub.ask("call")["responses"]
        report = pub.ask("report")
    finally:
        codes = [p.close() for p in (pub, sub) if p is not None]

    for topic, (_, _, count) in TOPICS.items():
        sent = [digest(message(topic, i)) for i in range(count)]
        expected = sent[-1:] if topic in LATE else sent  # keep-last-1, transient local: the last value only
        assert got["received"][topic] == expected, f"{topic}: {len(got['received'][topic])}/{len(expected)} arrived"
        assert report["matched"][topic] == 1 and got["publishers"][topic] == 1, topic  # QoS compatible
    for srv_type in SERVICES:
        assert answers[srv_type] == [digest(response(srv_type, i)) for i in range(CALLS)], srv_type
        assert report["served"][srv_type] == [digest(request(srv_type, i)) for i in range(CALLS)], srv_type
    assert codes == [0, 0]
