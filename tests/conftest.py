"""Shared test plumbing: an isolated DDS domain per test run and real node processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Test runs on one machine must not hear each other: one DDS domain per run, on loopback.
os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 200))
os.environ.pop("CYCLONEDDS_URI", None)
# Loopback for both backends: a sourced ROS 2 tree says SUBNET, which rclpy would follow.
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("HIWM_BACKEND", "dds")
os.environ.setdefault("PYTHONUNBUFFERED", "1")


class Procs:
    """Starts processes (python -m ... or console scripts) and always stops them."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[subprocess.Popen] = []

    def start(self, *args: str, env: dict | None = None, name: str | None = None) -> subprocess.Popen:
        log = self.tmp / f"{name or Path(args[0]).name}-{len(self.procs)}.log"
        proc = subprocess.Popen(
            list(args),
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=ROOT,
        )
        proc.log_path = log  # type: ignore[attr-defined]
        self.procs.append(proc)
        return proc

    def python(self, module: str, *args: str, **kw) -> subprocess.Popen:
        return self.start(sys.executable, "-m", module, *args, name=module.rsplit(".", 1)[-1], **kw)

    @staticmethod
    def output(proc: subprocess.Popen) -> str:
        return proc.log_path.read_text(errors="replace")  # type: ignore[attr-defined]

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 5
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    p = Procs(tmp_path)
    try:
        yield p
    finally:
        p.stop_all()


@pytest.fixture
def share(tmp_path, monkeypatch):
    """A share folder of hiwm's own config, launch and msgs with an empty ``models/`` to ship into."""
    from hiwm import paths

    root = tmp_path / "share"
    root.mkdir()
    for sub in ("config", "launch", "msgs"):
        (root / sub).symlink_to(paths.share_path(sub))
    (root / "models").mkdir()
    monkeypatch.setenv("HIWM_SHARE_DIR", str(root))
    paths.share_dir.cache_clear()
    yield root
    paths.share_dir.cache_clear()


def pytest_configure(config) -> None:
    config.addinivalue_line(
        "markers", "probe(attack, expected): an attack or fault probe; listed in the probe table after the run"
    )


_PROBES: list[tuple[str, str, str]] = []


def pytest_runtest_logreport(report) -> None:
    """Keep each probe's outcome (its call, or a setup failure or skip) for the table."""
    marker = next((m for m in getattr(report, "probe_markers", ())), None)
    if marker is None or (report.when != "call" and report.passed):
        return
    attack, expected = marker
    outcome = "refused as expected" if report.passed else report.outcome.upper()
    _PROBES.append((attack, expected, outcome))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    report.probe_markers = [tuple(m.args) for m in item.iter_markers("probe")]


def pytest_terminal_summary(terminalreporter) -> None:
    """One line per probe: what was tried, what must happen, what did."""
    if not _PROBES:
        return
    terminalreporter.section("security and robustness probes")
    width = max(len(a) for a, _, _ in _PROBES)
    for attack, expected, outcome in _PROBES:
        terminalreporter.write_line(f"{attack:<{width}}  {outcome:<19}  {expected}")


def require(available: bool, what: str) -> None:
    """Skip a test that needs a ROS 2 part (rclpy, launch_ros, colcon, a built workspace) this machine lacks.

    ``HIWM_REQUIRE_ROS=1`` (set by tools/test.sh where it found a ROS 2 tree) turns the skip into a
    failure: there, every test must run on both backends.
    """
    if available:
        return
    if os.environ.get("HIWM_REQUIRE_ROS") == "1":
        pytest.fail(f"{what}, but HIWM_REQUIRE_ROS=1 (a ROS 2 tree is sourced)")
    pytest.skip(what)


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
