"""The rclpy backend, used on ROS 2 machines. Deliberately thin.

Node code hands over rosbags messages; they cross into rclpy as serialized CDR
(``publish`` of bytes, ``raw=True`` subscriptions, and serialize/deserialize for
services), so both backends share one message representation and one set of checks.
It cannot run on machines without ROS 2; the contract tests run it where rclpy exists.

Callbacks run one at a time on the thread that spins, as on the DDS backend, so node code written
for one backend is safe on the other (a SQLite store, a recorder's files). Service clients live on a
hidden helper node spun by a thread of its own, so a call may block inside a callback, or on any
thread, without stalling the node's executor.
"""

from __future__ import annotations

import array
import atexit
import contextlib
import threading
from collections.abc import Callable
from typing import Any

import rclpy
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node as RosNode
from rclpy.qos import DurabilityPolicy, HistoryPolicy, ReliabilityPolicy
from rclpy.qos import QoSProfile as RosQoS
from rclpy.serialization import deserialize_message, serialize_message
from rosidl_runtime_py.utilities import get_message, get_service

from hiwm.comm.interfaces import InterfaceError, deserialize, normalize_type_name, serialize, service_types
from hiwm.comm.node import Node, RosArgs, ServiceCallError, error_response
from hiwm.comm.params import ParameterError
from hiwm.comm.qos import Durability, History, QoSProfile, Reliability, profile


def ros_qos(qos: QoSProfile) -> RosQoS:
    return RosQoS(
        reliability=ReliabilityPolicy.RELIABLE
        if qos.reliability is Reliability.RELIABLE
        else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.TRANSIENT_LOCAL
        if qos.durability is Durability.TRANSIENT_LOCAL
        else DurabilityPolicy.VOLATILE,
        history=HistoryPolicy.KEEP_ALL if qos.history is History.KEEP_ALL else HistoryPolicy.KEEP_LAST,
        depth=max(qos.depth, 1),
    )


class RclpyPublisher:
    def __init__(self, node: RclpyNode, msg_type: str, topic: str, qos: QoSProfile) -> None:
        self.msg_type, self.topic = normalize_type_name(msg_type), topic
        self._pub = node.ros.create_publisher(get_message(self.msg_type), topic, ros_qos(qos))

    def publish(self, msg: Any) -> None:
        if getattr(msg, "__msgtype__", None) != self.msg_type:
            raise TypeError(f"{self.topic} publishes {self.msg_type}, got {type(msg).__name__}")
        self._pub.publish(serialize(msg, self.msg_type))

    def publish_raw(self, cdr: bytes) -> None:
        self._pub.publish(cdr)

    def matched_count(self) -> int:
        return self._pub.get_subscription_count()


class RclpyClient:
    def __init__(self, node: RclpyNode, srv_type: str, name: str) -> None:
        self.service = name
        self.request_type, self.response_type = service_types(srv_type)
        self._srv_cls = get_service(normalize_type_name(srv_type))
        self._client = node.clients.ros.create_client(self._srv_cls, name)

    def wait_for_service(self, timeout: float) -> bool:
        return self._client.wait_for_service(timeout_sec=timeout)

    def call(self, request: Any, timeout: float = 5.0) -> Any:
        if getattr(request, "__msgtype__", None) != self.request_type:
            raise TypeError(f"{self.service} takes {self.request_type}, got {type(request).__name__}")
        if not self.wait_for_service(timeout):
            raise ServiceCallError(f"service {self.service} not available after {timeout:.1f} s")
        ros_request = deserialize_message(serialize(request), self._srv_cls.Request)
        done = threading.Event()
        future = self._client.call_async(ros_request)
        future.add_done_callback(lambda _f: done.set())
        done.wait(timeout)  # the helper node's thread takes the response
        if not future.done() or future.result() is None:
            future.cancel()
            raise ServiceCallError(f"service {self.service} did not answer within {timeout:.1f} s")
        return deserialize(serialize_message(future.result()), self.response_type)


class _Sub:
    def __init__(self, topic: str, handle: Any) -> None:
        self.topic, self.handle = topic, handle

    def publisher_count(self) -> int:
        """Publishers matched with this subscription (QoS-compatible ones only)."""
        return self.handle.get_publisher_count()


class _ClientNode:
    """A hidden node (leading underscore) holding a node's service clients, spun by its own thread."""

    def __init__(self, name: str, namespace: str) -> None:
        self.ros = RosNode(f"_{name}_clients", namespace=namespace, use_global_arguments=False, cli_args=None)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.ros)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, name=f"{name}-clients", daemon=True)
        self._thread.start()
        # A node never destroyed must not leave the thread inside rclpy at exit (std::terminate: SIGABRT).
        atexit.register(self._halt)

    def _spin(self) -> None:
        try:
            while not self._stop.is_set() and rclpy.ok():
                self.executor.spin_once(timeout_sec=0.1)
        except ExternalShutdownException:  # rclpy shut down (Ctrl-C): the node goes too
            pass
        except Exception:
            # a shutdown between rclpy.ok() and the wait set (SIGINT under launch) fails the wait with an
            # invalid context: the same end; anything else while rclpy runs is a real error
            if rclpy.ok():
                raise

    def _halt(self) -> bool:
        """Stop the thread; whether it left (it may be stuck in a callback)."""
        self._stop.set()
        self._thread.join(10.0)
        return not self._thread.is_alive()

    def destroy(self) -> None:
        # The thread leaves its wait before anything it waits on is destroyed (else: a segfault at exit).
        atexit.unregister(self._halt)
        if self._halt():
            self.executor.shutdown()
            self.ros.destroy_node()


class RclpyNode(Node):
    """A hiwm node on rclpy; parameters and names are resolved by the shared base."""

    backend = "rclpy"

    def __init__(self, name: str, namespace: str = "/", ros_args: RosArgs | None = None) -> None:
        super().__init__(name, namespace, ros_args)
        if not rclpy.ok():
            rclpy.init()
        # Our base already applied --ros-args; rclpy must not apply them a second time.
        self.ros = RosNode(self.name, namespace=self.namespace, use_global_arguments=False, cli_args=None)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.ros)
        self._clients: _ClientNode | None = None
        self._declaring: str | None = None
        self.ros.add_on_set_parameters_callback(self._on_ros_set)

    def _on_ros_set(self, params: list) -> SetParametersResult:
        # Keep get_parameter in step with `ros2 param set`; our type checks and hooks apply.
        changes = {
            p.name: list(p.value) if isinstance(p.value, (array.array, tuple)) else p.value
            for p in params
            if p.name in self._params and p.name != self._declaring
        }
        try:
            self.set_parameters(changes, origin="rclpy")
        except ParameterError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        return SetParametersResult(successful=True)

    @property
    def ok(self) -> bool:
        return rclpy.ok()

    @property
    def clients(self) -> _ClientNode:
        """The helper node for service clients, started with the first client."""
        if self._clients is None:
            self._clients = _ClientNode(self.name, self.namespace)
        return self._clients

    def declare_parameter(self, name: str, default: Any, read_only: bool = False) -> Any:
        value = super().declare_parameter(name, default, read_only)
        descriptor = ParameterDescriptor(read_only=read_only)
        self._declaring = name  # rclpy runs the set callbacks for a declaration too
        try:
            self.ros.declare_parameter(name, value, descriptor)  # visible to `ros2 param`
        finally:
            self._declaring = None
        return value

    def create_publisher(self, msg_type: str, topic: str, qos: QoSProfile | str | int | None = None) -> RclpyPublisher:
        return RclpyPublisher(self, msg_type, self.resolve(topic), profile(qos))

    def create_subscription(
        self,
        msg_type: str,
        topic: str,
        callback: Callable[[Any], None],
        qos: QoSProfile | str | int | None = None,
        raw: bool = False,
    ) -> _Sub:
        msg_type = normalize_type_name(msg_type)
        topic = self.resolve(topic)

        def on_raw(data: bytes) -> None:
            if raw:
                callback(data)
                return
            try:
                msg = deserialize(data, msg_type)
            except InterfaceError as exc:
                self.bad_input.warning(topic, f"dropped message on {topic}: {exc}")
                return
            callback(msg)

        handle = self.ros.create_subscription(get_message(msg_type), topic, on_raw, ros_qos(profile(qos)), raw=True)
        return _Sub(topic, handle)

    def create_service(self, srv_type: str, name: str, handler: Callable[[Any], Any]) -> Any:
        request_type, response_type = service_types(srv_type)
        srv_cls = get_service(normalize_type_name(srv_type))

        def on_request(ros_request: Any, ros_response: Any) -> Any:
            try:
                response = handler(deserialize(serialize_message(ros_request), request_type))
            except Exception as exc:  # a handler bug must not take the node down
                self.logger.error(f"service {name} failed: {exc!r}")
                response = error_response(response_type, exc)
                if response is None:
                    return ros_response
            return deserialize_message(serialize(response, response_type), srv_cls.Response)

        return self.ros.create_service(srv_cls, self.resolve(name), on_request)

    def create_client(self, srv_type: str, name: str) -> RclpyClient:
        return RclpyClient(self, srv_type, self.resolve(name))

    def create_timer(self, period: float, callback: Callable[[], None]) -> Any:
        if not period > 0:
            raise ValueError(f"timer period must be > 0 s, got {period}")
        return self.ros.create_timer(period, callback)

    def spin_once(self, timeout: float = 0.1) -> None:
        with contextlib.suppress(ExternalShutdownException):  # rclpy's own SIGINT/SIGTERM handler: ok turns False
            self.executor.spin_once(timeout_sec=timeout)

    def shutdown(self) -> None:
        if rclpy.ok():
            rclpy.shutdown()

    def destroy(self) -> None:
        if self._clients is not None:
            self._clients.destroy()
        self.executor.remove_node(self.ros)
        self.ros.destroy_node()
