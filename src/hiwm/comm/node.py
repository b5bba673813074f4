"""The node API every hiwm node is written against, and what both backends share.

Messages are rosbags dataclasses (see :mod:`hiwm.comm.interfaces`); a backend maps
publishers, subscriptions, services and timers onto its middleware. Node code never
imports a backend.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from hiwm.comm import names
from hiwm.comm.interfaces import new_message, stamp_from_ns
from hiwm.comm.params import (
    ParameterError,
    ParameterValue,
    build_dataclass,
    coerce,
    dataclass_parameters,
    load_parameter_file,
    parse_override,
)
from hiwm.comm.qos import QoSProfile

T = TypeVar("T")


@dataclass
class RosArgs:
    """The part of ``--ros-args`` that hiwm nodes honour in both backends."""

    node_name: str | None = None
    namespace: str | None = None
    remaps: dict[str, str] = field(default_factory=dict)
    param_files: list[str] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)
    log_level: str | None = None
    raw: list[str] = field(default_factory=list)


def parse_ros_args(argv: list[str]) -> tuple[RosArgs, list[str]]:
    """Split ``argv`` into ROS arguments (after ``--ros-args``, until ``--``) and the rest."""
    ros, rest = RosArgs(), []
    i, inside = 0, False
    while i < len(argv):
        arg = argv[i]
        if arg == "--ros-args":
            inside = True
            ros.raw.append(arg)
        elif inside and arg == "--":
            inside = False
        elif inside:
            if arg in ("-r", "--remap", "-p", "--param", "--params-file", "--log-level"):
                if i + 1 >= len(argv):
                    raise ParameterError(f"{arg} needs a value")
                value = argv[i + 1]
                ros.raw += [arg, value]
                i += 1
                if arg in ("-r", "--remap"):
                    if ":=" not in value:
                        raise ParameterError(f"remap {value!r} must look like from:=to")
                    src, dst = value.split(":=", 1)
                    if src == "__node":
                        ros.node_name = dst
                    elif src == "__ns":
                        ros.namespace = dst
                    else:
                        ros.remaps[src] = dst
                elif arg in ("-p", "--param"):
                    ros.overrides.append(value)
                elif arg == "--params-file":
                    ros.param_files.append(value)
                else:
                    ros.log_level = value
            else:
                ros.raw.append(arg)
        else:
            rest.append(arg)
        i += 1
    return ros, rest


class Publisher(Protocol):
    topic: str

    def publish(self, msg: Any) -> None: ...

    def publish_raw(self, cdr: bytes) -> None:
        """Publish an already serialized XCDR1 payload (encapsulation header included), unchecked."""

    def matched_count(self) -> int: ...


class Subscription(Protocol):
    topic: str


class Client(Protocol):
    service: str

    def wait_for_service(self, timeout: float) -> bool: ...

    def call(self, request: Any, timeout: float = 5.0) -> Any: ...


class Timer:
    """A periodic callback driven by the node's spin loop (monotonic clock)."""

    def __init__(self, period: float, callback: Callable[[], None]) -> None:
        if not period > 0:
            raise ValueError(f"timer period must be > 0 s, got {period}")
        self.period = period
        self.callback = callback
        self.next_due = time.monotonic() + period
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True

    def reset(self) -> None:
        self.cancelled = False
        self.next_due = time.monotonic() + self.period


class ServiceCallError(RuntimeError):
    """A service call that timed out or found no server."""


LOG_FORMAT = "[%(levelname)s] [%(created).3f] [%(name)s]: %(message)s"


class ThrottledLog:
    """Log repeated problems (malformed input, say) at most once per period, with a count."""

    def __init__(self, logger: Any, period: float = 1.0) -> None:
        self.logger, self.period = logger, period
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, key: str, message: str) -> None:
        now = time.monotonic()
        if now - self._last.get(key, -1e9) >= self.period:
            extra = self._suppressed.pop(key, 0)
            self.logger.warning(message + (f" (+{extra} similar suppressed)" if extra else ""))
            self._last[key] = now
        else:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1


class Node(ABC):
    """Name, namespace, parameters, logging and name resolution; I/O is the backend's."""

    backend: str = "abstract"

    def __init__(self, name: str, namespace: str = "/", ros_args: RosArgs | None = None) -> None:
        ros_args = ros_args or RosArgs()
        self.name = ros_args.node_name or name
        self.namespace = names.normalize_namespace(ros_args.namespace or namespace)
        self.fqn = names.node_fqn(self.name, self.namespace)
        self.remaps = {self._resolve_raw(k): self._resolve_raw(v) for k, v in ros_args.remaps.items()}
        self._given: dict[str, ParameterValue] = {}
        for path in ros_args.param_files:
            self._given.update(load_parameter_file(path, self.fqn))
        for text in ros_args.overrides:
            key, value = parse_override(text)
            self._given[key] = value
        self._params: dict[str, Any] = {}
        self._defaults: dict[str, Any] = {}  # what each parameter was declared with: its type
        self._read_only: set[str] = set()
        self._on_set: list[Callable[[dict[str, Any]], None]] = []
        self.logger = self._make_logger(ros_args.log_level)
        self.bad_input = ThrottledLog(self.logger)

    # names -----------------------------------------------------------------
    def _resolve_raw(self, name: str) -> str:
        return names.resolve(name, self.name, self.namespace)

    def resolve(self, name: str) -> str:
        """Fully qualified topic or service name, after remapping."""
        full = self._resolve_raw(name)
        return self.remaps.get(full, full)

    # logging ---------------------------------------------------------------
    def _make_logger(self, level: str | None) -> Any:
        logger = logging.getLogger(self.fqn.lstrip("/").replace("/", ".") or self.name)
        if not logging.getLogger().handlers:
            logging.basicConfig(format=LOG_FORMAT, level=logging.INFO)
        if level:
            logger.setLevel(level.upper())
        return logger

    # parameters ------------------------------------------------------------
    def declare_parameter(self, name: str, default: Any, read_only: bool = False) -> Any:
        """Declare a parameter; its type is the default's. Returns the effective value."""
        if name in self._params:
            raise ParameterError(f"parameter {name!r} declared twice on {self.fqn}")
        value = coerce(name, self._given[name], default) if name in self._given else default
        self._params[name] = value
        self._defaults[name] = default
        if read_only:
            self._read_only.add(name)
        return value

    def parameter_given(self, name: str) -> bool:
        """Whether a parameter file or ``-p`` sets ``name``, declared or not (to refuse retired ones)."""
        return name in self._given

    def get_parameter(self, name: str) -> Any:
        try:
            return self._params[name]
        except KeyError:
            raise ParameterError(f"parameter {name!r} is not declared on {self.fqn}") from None

    def parameters(self) -> dict[str, Any]:
        """Every declared parameter and its current value, in declaration order."""
        return dict(self._params)

    def parameter_default(self, name: str) -> Any:
        """The value a parameter was declared with (it fixes the parameter's type)."""
        self.get_parameter(name)
        return self._defaults[name]

    def is_read_only(self, name: str) -> bool:
        return name in self._read_only

    def add_on_set_parameters_callback(self, callback: Callable[[dict[str, Any]], None]) -> None:
        """Call ``callback(changes)`` before parameters change; it raises ParameterError to refuse."""
        self._on_set.append(callback)

    def set_parameters(self, values: dict[str, Any], origin: str = "set_parameters") -> None:
        """Change declared parameters at run time, all or none, type-checked as at declaration."""
        checked = {}
        for name, value in values.items():
            default = self.parameter_default(name)
            if name in self._read_only:
                raise ParameterError(f"parameter {name!r} is read-only")
            checked[name] = coerce(name, ParameterValue(value, origin), default)
        for callback in self._on_set:
            callback(dict(checked))
        self._params.update(checked)

    def load_config(self, cls: type[T]) -> T:
        """Declare every field of a (nested) config dataclass as a parameter and build it."""
        values = {key: self.declare_parameter(key, default) for key, default in dataclass_parameters(cls).items()}
        undeclared = sorted(k for k in self._given if k not in self._params)
        if undeclared:
            self.logger.warning(f"ignoring unknown parameter(s) {undeclared}")
        try:
            return build_dataclass(cls, values)
        except (TypeError, ValueError) as exc:
            raise ParameterError(f"{self.fqn}: invalid configuration: {exc}") from exc

    # time ------------------------------------------------------------------
    def now_ns(self) -> int:
        """Wall-clock time in nanoseconds (ROS system time)."""
        return time.time_ns()

    def stamp(self) -> Any:
        """The current time as ``builtin_interfaces/msg/Time``."""
        return stamp_from_ns(self.now_ns())

    def header(self, frame_id: str = "") -> Any:
        return new_message("std_msgs/msg/Header", stamp=self.stamp(), frame_id=frame_id)

    # backend ---------------------------------------------------------------
    @abstractmethod
    def create_publisher(self, msg_type: str, topic: str, qos: QoSProfile | str | int | None = None) -> Publisher: ...

    @abstractmethod
    def create_subscription(
        self,
        msg_type: str,
        topic: str,
        callback: Callable[[Any], None],
        qos: QoSProfile | str | int | None = None,
        raw: bool = False,
    ) -> Subscription:
        """Subscribe; with ``raw=True`` the callback gets the CDR bytes undecoded (recorders)."""

    @abstractmethod
    def create_service(self, srv_type: str, name: str, handler: Callable[[Any], Any]) -> Any: ...

    @abstractmethod
    def create_client(self, srv_type: str, name: str) -> Client: ...

    @abstractmethod
    def create_timer(self, period: float, callback: Callable[[], None]) -> Timer: ...

    @abstractmethod
    def spin_once(self, timeout: float = 0.1) -> None: ...

    @abstractmethod
    def shutdown(self) -> None:
        """Make :meth:`spin` return (safe from signal handlers and other threads)."""

    @abstractmethod
    def destroy(self) -> None: ...

    @property
    @abstractmethod
    def ok(self) -> bool: ...

    def spin(self) -> None:
        """Process callbacks until :meth:`shutdown` or Ctrl-C."""
        try:
            while self.ok:
                self.spin_once(0.1)
        except KeyboardInterrupt:
            pass

    def spin_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Spin until ``predicate()`` holds or ``timeout`` seconds pass; returns the predicate."""
        deadline = time.monotonic() + timeout
        while not predicate():
            left = deadline - time.monotonic()
            if left <= 0 or not self.ok:
                return predicate()
            self.spin_once(min(left, 0.05))
        return True

    def __enter__(self) -> Node:
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()


def error_response(response_type: str, exc: BaseException) -> Any | None:
    """A ``success=False`` response carrying the error, if the service type has those fields."""
    from hiwm.comm.interfaces import typestore

    _, fields = typestore().fielddefs[response_type]
    field_names = {f for f, _ in fields}
    if {"success", "message"} <= field_names:
        return new_message(response_type, success=False, message=f"{type(exc).__name__}: {exc}")
    return None
