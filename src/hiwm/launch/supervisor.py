"""``hiwm launch`` without ROS: a launch file's graph as supervised child processes.

Each node runs as ``python -m hiwm.nodes.<executable> --ros-args ...`` in its own
process group. Output lines come back prefixed with ``[name]``; a node that exits is
reported with its exit code or signal, respawned if its spec says so, and ends the
graph if it is ``required``. SIGINT/SIGTERM (or ``--duration``) stop the graph: SIGINT
to every child, then SIGTERM after a grace period, then SIGKILL.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import json
import math
import os
import pkgutil
import selectors
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from hiwm.launch.graph import _NAMESPACE, STOP_GRACE_S, ArgRef, Graph, GraphError, NodeSpec
from hiwm.paths import share_path

LAUNCH_SUFFIX = ".launch.py"
EXIT_USAGE = 2
EXIT_FAILED = 1
# Exit statuses that mean "stopped because we asked it to".
_STOPPED = {0, 130, 143, -signal.SIGINT, -signal.SIGTERM}


# --- loading -------------------------------------------------------------------------


def available_graphs() -> list[str]:
    """Names of the launch files in the share folder's ``launch/``."""
    return sorted(p.name[: -len(LAUNCH_SUFFIX)] for p in share_path("launch").glob(f"*{LAUNCH_SUFFIX}"))


def graph_file(name: str) -> Path:
    """``demo`` -> ``<share>/launch/demo.launch.py``; a path (with ``/`` or ``.py``) is taken as is."""
    if "/" in name or name.endswith(".py"):
        return Path(name).resolve()
    return share_path("launch", f"{name}{LAUNCH_SUFFIX}")


def load_graph(name: str) -> Graph:
    """Import a launch file (no ROS needed) and return its validated ``GRAPH``."""
    path = graph_file(name)
    if not path.is_file():
        raise GraphError(f"no launch file {name!r} ({path}); available: {', '.join(available_graphs()) or 'none'}")
    module_name = "hiwm_launch_file_" + path.name[: -len(LAUNCH_SUFFIX)].replace("-", "_").replace(".", "_")
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise GraphError(f"{path}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except GraphError as exc:
        raise GraphError(f"{path}: {exc}") from exc
    except Exception as exc:
        raise GraphError(f"{path}: failed to load: {type(exc).__name__}: {exc}") from exc
    graph = getattr(module, "GRAPH", None)
    if not isinstance(graph, Graph):
        raise GraphError(f"{path}: defines no GRAPH = hiwm.launch.Graph(...)")
    return graph


# --- planning ------------------------------------------------------------------------


@dataclass
class Launchable:
    """A node resolved against launch arguments: its label and full command line."""

    label: str
    spec: NodeSpec
    argv: list[str]


def yaml_text(value: Any) -> str:
    """A parameter value as ``-p name:=<text>`` text that YAML reads back as the same value."""
    import yaml

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return ".nan"
        if math.isinf(value):
            return ".inf" if value > 0 else "-.inf"
        text = repr(value)
        if "e" in text and "." not in text:  # PyYAML reads 1e-05 as a string
            mantissa, exponent = text.split("e")
            text = f"{mantissa}.0e{exponent}"
        return text
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(yaml_text(v) for v in value) + "]"
    text = str(value)
    return text if text and yaml.safe_load(text) == text else json.dumps(text)


def _namespace(spec: NodeSpec, args: dict[str, str]) -> str:
    ns = args[spec.namespace.name] if isinstance(spec.namespace, ArgRef) else spec.namespace
    if not _NAMESPACE.match(ns):
        raise GraphError(f"node {spec.name!r}: namespace {ns!r} is not a valid ROS namespace")
    ns = ns.strip("/")
    return f"/{ns}" if ns else ""


def node_modules() -> list[str]:
    """The executables under ``hiwm.nodes``."""
    import hiwm.nodes

    return sorted(m.name for m in pkgutil.iter_modules(hiwm.nodes.__path__) if not m.name.startswith("_"))


def plan(graph: Graph, overrides: dict[str, str]) -> list[Launchable]:
    """Resolve arguments and conditions into command lines; GraphError on anything wrong."""
    args = graph.resolve_args(overrides)
    nodes = graph.active_nodes(args)
    spaces = [_namespace(n, args) for n in nodes]
    fqns = [f"{ns}/{n.name}" for ns, n in zip(spaces, nodes, strict=True)]
    dupes = sorted({f for f in fqns if fqns.count(f) > 1})
    if dupes:
        raise GraphError(f"graph {graph.name!r}: node name(s) {dupes} used more than once")
    names = [n.name for n in nodes]
    out = []
    for spec, ns, fqn in zip(nodes, spaces, fqns, strict=True):
        module = f"hiwm.nodes.{spec.executable}"
        if importlib.util.find_spec(module) is None:
            raise GraphError(
                f"node {spec.name!r}: executable {spec.executable!r} has no module {module}; "
                f"known executables: {', '.join(node_modules())}"
            )
        argv = [sys.executable, "-m", module, "--ros-args", "-r", f"__node:={spec.name}"]
        if ns:
            argv += ["-r", f"__ns:={ns}"]
        for rel in spec.param_files:
            path = share_path(*rel.split("/"))
            if not path.is_file():
                raise GraphError(f"node {spec.name!r}: parameter file {rel!r} not found ({path})")
            argv += ["--params-file", str(path)]
        for key, value in spec.parameters.items():
            if isinstance(value, ArgRef):
                typed = graph.arg(value.name).value_type is not None
                text = args[value.name] if typed else yaml_text(args[value.name])
            else:
                text = yaml_text(value)
            argv += ["-p", f"{key}:={text}"]
        for src, dst in spec.remappings.items():
            argv += ["-r", f"{src}:={dst}"]
        out.append(Launchable(fqn.lstrip("/") if names.count(spec.name) > 1 else spec.name, spec, argv))
    return out


# --- supervising ---------------------------------------------------------------------


def _parent_death_signal() -> Any:
    """A preexec function: the child gets SIGTERM if the launcher dies (Linux), so none is orphaned."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)  # loaded here: no dlopen between fork and exec
    parent = os.getpid()

    def setup() -> None:
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:
            os._exit(1)

    return setup


def describe_exit(code: int) -> str:
    """``exited cleanly``, ``died with exit code 2`` or ``stopped by signal SIGKILL``."""
    if code < 0:
        try:
            return f"stopped by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"stopped by signal {-code}"
    return "exited cleanly" if code == 0 else f"died with exit code {code}"


@dataclass
class Child:
    node: Launchable
    proc: subprocess.Popen | None = None
    pending: bytes = b""
    respawn_at: float | None = None
    starts: int = 0
    exits: list[int] = field(default_factory=list)


class Supervisor:
    """Runs launchables until they all exit, a required one exits, a signal, or ``duration``."""

    def __init__(
        self,
        nodes: list[Launchable],
        *,
        duration: float | None = None,
        sigint_grace: float = STOP_GRACE_S,
        sigterm_grace: float = 3.0,
        out: IO[bytes] | None = None,
        err: IO[str] | None = None,
    ) -> None:
        self.children = [Child(n) for n in nodes]
        self.duration = duration
        self.grace = (sigint_grace, sigterm_grace)
        self.out = out or sys.stdout.buffer
        self.err = err or sys.stderr
        self.failed = False
        self._stop_stage = 0  # 0 running, 1 SIGINT sent, 2 SIGTERM sent, 3 SIGKILL sent
        self._stage_at = 0.0
        self._signals: list[int] = []
        self._sel = selectors.DefaultSelector()
        self._preexec = _parent_death_signal()

    # messages ----------------------------------------------------------------
    def log(self, level: str, message: str) -> None:
        self.err.write(f"[{level}] [launch]: {message}\n")
        self.err.flush()

    def _emit(self, child: Child, data: bytes) -> None:
        prefix = f"[{child.node.label}] ".encode()
        self.out.write(b"".join(prefix + line + b"\n" for line in data.split(b"\n")))
        self.out.flush()

    # processes ---------------------------------------------------------------
    def _start(self, child: Child) -> None:
        child.respawn_at = None
        child.pending = b""
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        child.proc = subprocess.Popen(
            child.node.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # our own signals only: a terminal's Ctrl-C is forwarded, not doubled
            preexec_fn=self._preexec,
        )
        child.starts += 1
        os.set_blocking(child.proc.stdout.fileno(), False)
        self._sel.register(child.proc.stdout, selectors.EVENT_READ, child)
        self.log("INFO", f"process {child.node.label} started (pid {child.proc.pid})")

    def _read(self, child: Child) -> bool:
        """Forward complete lines; False at end of file."""
        assert child.proc is not None and child.proc.stdout is not None
        while True:
            try:
                data = os.read(child.proc.stdout.fileno(), 65536)
            except BlockingIOError:
                break
            if not data:
                if child.pending:
                    self._emit(child, child.pending)
                    child.pending = b""
                return False
            buf = child.pending + data
            head, sep, child.pending = buf.rpartition(b"\n")
            if sep:
                self._emit(child, head)
        return True

    def _close_pipe(self, child: Child) -> None:
        assert child.proc is not None and child.proc.stdout is not None
        self._read(child)
        if child.pending:
            self._emit(child, child.pending)
            child.pending = b""
        with contextlib.suppress(KeyError):  # already gone if EOF came first
            self._sel.unregister(child.proc.stdout)
        child.proc.stdout.close()

    def _signal(self, child: Child, sig: int) -> None:
        if child.proc is not None and child.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.proc.pid, sig)

    def _reap(self, now: float) -> None:
        for child in self.children:
            proc = child.proc
            if proc is None or proc.poll() is None:
                continue
            self._close_pipe(child)
            child.proc = None
            code = proc.returncode
            child.exits.append(code)
            spec = child.node.spec
            what = f"process {child.node.label} (pid {proc.pid})"
            if self._stop_stage:
                level = "INFO" if code in _STOPPED else "WARNING"
                self.log(level, f"{what} {describe_exit(code)}")
                continue
            if code != 0:
                self.failed = True
            self.log("INFO" if code == 0 else "ERROR", f"{what} {describe_exit(code)}")
            if spec.required:
                self.log("INFO", f"required node {child.node.label} exited: shutting the graph down")
                self.stop()
            elif spec.respawn:
                child.respawn_at = now + spec.respawn_delay
                self.log("INFO", f"respawning {child.node.label} in {spec.respawn_delay:g} s")

    # stopping ----------------------------------------------------------------
    def stop(self) -> None:
        """Begin (or escalate) the shutdown: SIGINT, then SIGTERM, then SIGKILL."""
        self._stop_stage = min(self._stop_stage + 1, 3)
        self._stage_at = time.monotonic()
        sig = (signal.SIGINT, signal.SIGTERM, signal.SIGKILL)[self._stop_stage - 1]
        for child in self.children:
            child.respawn_at = None
            if child.proc is not None and child.proc.poll() is None:
                if self._stop_stage > 1:
                    self.log("WARNING", f"sending {sig.name} to {child.node.label} (pid {child.proc.pid})")
                self._signal(child, sig)

    def _running(self) -> bool:
        return any(c.proc is not None or c.respawn_at is not None for c in self.children)

    # main loop ---------------------------------------------------------------
    def run(self) -> int:
        """Supervise until the graph stops; 0 on a clean stop, 1 if a node died with an error."""
        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        self._sel.register(wake_r, selectors.EVENT_READ, None)
        handled = (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD)
        previous = {s: signal.getsignal(s) for s in handled}
        old_fd = signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)
        for s in handled:
            signal.signal(s, self._on_signal)
        try:
            return self._loop(wake_r)
        finally:
            for child in self.children:  # only on an unexpected error: never leave children behind
                self._signal(child, signal.SIGKILL)
                if child.proc is not None:
                    child.proc.wait()
            signal.set_wakeup_fd(old_fd)
            for s, h in previous.items():
                signal.signal(s, h)
            self._sel.close()
            wake_r.close()
            wake_w.close()

    def _on_signal(self, signum: int, _frame: object) -> None:
        if signum != signal.SIGCHLD:
            self._signals.append(signum)

    def _loop(self, wake: socket.socket) -> int:
        start = time.monotonic()
        for child in self.children:
            self._start(child)
        while True:
            now = time.monotonic()
            while self._signals:
                sig = signal.Signals(self._signals.pop(0))
                self.log("INFO" if not self._stop_stage else "WARNING", f"got {sig.name}: stopping the graph")
                self.stop()
            if self.duration is not None and not self._stop_stage and now - start >= self.duration:
                self.log("INFO", f"duration of {self.duration:g} s reached: stopping the graph")
                self.stop()
            if self._stop_stage and self._stop_stage < 3 and now - self._stage_at >= self.grace[self._stop_stage - 1]:
                self.stop()
            self._reap(now)
            for child in self.children:
                if child.respawn_at is not None and now >= child.respawn_at and not self._stop_stage:
                    self._start(child)
            if not self._running():
                if not self._stop_stage:
                    self.log("INFO", "all processes have exited")
                break
            for key, _ in self._sel.select(self._timeout(start)):
                if key.data is None:
                    with contextlib.suppress(BlockingIOError):
                        while wake.recv(512):
                            pass
                elif not self._read(key.data):
                    self._sel.unregister(key.fileobj)  # EOF: the exit is picked up by _reap
        return EXIT_FAILED if self.failed else 0

    def _timeout(self, start: float) -> float:
        now = time.monotonic()
        deadlines = [now + 0.2]  # SIGCHLD wakes us; the poll is a backstop
        if self.duration is not None and not self._stop_stage:
            deadlines.append(start + self.duration)
        if 0 < self._stop_stage < 3:
            deadlines.append(self._stage_at + self.grace[self._stop_stage - 1])
        deadlines += [c.respawn_at for c in self.children if c.respawn_at is not None]
        return max(0.0, min(deadlines) - now)
