"""What a node exposes on the network with the loopback DDS configuration, read from the kernel (``ss``).

Cyclone DDS (0.10.5 under rmw_cyclonedds, 11.0.1 in the Python binding) binds its transmit socket to
the configured interface's address but always binds its unicast receive sockets to the wildcard
address; the loopback configuration opens no multicast socket at all. These tests pin that down, so
a configuration change that widens it fails here (README, "What DDS exposes").
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import time

import pytest
from conftest import ROOT

from hiwm.comm.dds.config import dds_settings

WILDCARDS = ("0.0.0.0", "*", "[::]", "::")
MAX_PARTICIPANTS = 32  # MaxAutoParticipantIndex in config/dds/localhost.xml


def udp_sockets(pid: int) -> list[tuple[str, int]]:
    """(local address, port) of every UDP socket of process ``pid``."""
    out = subprocess.run(["ss", "-H", "-lunp"], capture_output=True, text=True, check=True).stdout
    sockets = []
    for line in out.splitlines():
        if f"pid={pid}," not in line:
            continue
        local = line.split()[3]
        address, _, port = local.rpartition(":")
        sockets.append((address.split("%")[0], int(port)))
    return sockets


def wait_sockets(pid: int, n: int, timeout: float = 40.0) -> list[tuple[str, int]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sockets = udp_sockets(pid)
        if len(sockets) >= n:
            time.sleep(1.0)  # and whatever it opens right after
            return udp_sockets(pid)
        time.sleep(0.2)
    return udp_sockets(pid)


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2)")
@pytest.mark.parametrize("backend", ["dds", "rclpy"])
@pytest.mark.probe("list a node's UDP sockets with ss -lunp (loopback DDS configuration)",
                   "sends from 127.0.0.1, no multicast socket, wildcard only on Cyclone's unicast ports")  # fmt: skip
def test_a_node_on_the_loopback_configuration_listens_only_where_cyclone_must(procs, backend):
    env = {"HIWM_BACKEND": backend}
    if backend == "rclpy":
        if importlib.util.find_spec("rclpy") is None:
            pytest.skip("rclpy backend: rclpy is not importable (no ROS 2 on this machine)")
        # under rclpy the RMW reads the configuration itself: the README's loopback setting for ROS users
        env.update(RMW_IMPLEMENTATION="rmw_cyclonedds_cpp", CYCLONEDDS_URI=(ROOT / "config/dds/localhost.xml").as_uri())
    settings = dds_settings()
    assert settings.scope == "localhost" and "localhost.xml" in settings.config_uri
    base = 7400 + 250 * settings.domain_id  # DDSI port mapping: PB + DG * domain
    proc = procs.python("hiwm.nodes.pattern_camera", env=env)
    sockets = wait_sockets(proc.pid, 3)
    assert proc.poll() is None, procs.output(proc)
    assert len(sockets) >= 3, (sockets, procs.output(proc))
    loopback = [s for s in sockets if s[0] == "127.0.0.1"]
    wildcard = [s for s in sockets if s[0] in WILDCARDS]
    others = [s for s in sockets if s not in loopback and s not in wildcard]
    assert loopback, f"no socket on 127.0.0.1: {sockets}"  # the transmit socket, bound to the interface
    assert not others, f"sockets on addresses other than loopback: {others}"
    # multicast discovery and data ports (PB + DG * domain + d0 / d2) are not opened at all
    assert all(port not in (base, base + 1) for _, port in sockets), sockets
    # what stays on the wildcard: the participant's unicast discovery and user ports (d1 + PG * i, d3 + PG * i)
    unicast = {base + 10 + k for k in range(2 * MAX_PARTICIPANTS + 2)}
    assert wildcard and all(port in unicast for _, port in wildcard), (wildcard, base)
    if backend == "dds":
        assert os.environ.get("CYCLONEDDS_URI") is None  # the shipped loopback file, not an outside one
