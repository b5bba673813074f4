"""The rclpy backend, used on ROS 2 machines. Deliberately thin.

Node code hands over rosbags messages; they cross into rclpy as serialized CDR
(``publish`` of bytes, ``raw=True`` subscriptions, and serialize/deserialize for
services), so both backends share one message representation and one set of checks.
It cannot run on machines without ROS 2; the contract tests run it where rclpy exists.
"""

from __future__ import annotations

import array
import threading
from collections.abc import Callable
from typing import Any

import rclpy
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node as RosNode
from rclpy.qos import DurabilityPolicy, HistoryPolicy, ReliabilityPolicy
from rclpy.qos import QoSProfile as RosQoS
from rclpy.serialization import deserialize_message, serialize_message
from rosidl_runtime_py.utilities import get_message, get_service

from hiwm.comm.interfaces import InterfaceError, deserialize, normalize_type_name, serialize, service_types
from hiwm.comm.node import Node, RosArgs, ServiceCallError, error_response
from hiwm.comm.params import ParameterError
from hiwm.comm.qos import Durability, History, QoSProfile, Reliability, profile

_in_callback = threading.local()


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


def _marked(callback: Callable[..., Any]) -> Callable[..., Any]:
    def run(*args: Any) -> Any:
        _in_callback.active = True
        try:
            return callback(*args)
        finally:
            _in_callback.active = False

    return run


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
        self._node = node
        self._client = node.ros.create_client(self._srv_cls, name, callback_group=node.group)

    def wait_for_service(self, timeout: float) -> bool:
        return self._client.wait_for_service(timeout_sec=timeout)

    def call(self, request: Any, timeout: float = 5.0) -> Any:
        if getattr(request, "__msgtype__", None) != self.request_type:
            raise TypeError(f"{self.service} takes {self.request_type}, got {type(request).__name__}")
        if not self.wait_for_service(timeout):
            raise ServiceCallError(f"service {self.service} not available after {timeout:.1f} s")
        ros_request = deserialize_message(serialize(request), self._srv_cls.Request)
        future = self._client.call_async(ros_request)
        if getattr(_in_callback, "active", False):
            done = threading.Event()
            future.add_done_callback(lambda _f: done.set())
            done.wait(timeout)  # the multi-threaded executor answers on another thread
        else:
            self._node.executor.spin_until_future_complete(future, timeout_sec=timeout)
        if not future.done() or future.result() is None:
            raise ServiceCallError(f"service {self.service} did not answer within {timeout:.1f} s")
        return deserialize(serialize_message(future.result()), self.response_type)


class _Sub:
    def __init__(self, topic: str, handle: Any) -> None:
        self.topic, self.handle = topic, handle


class RclpyNode(Node):
    """A hiwm node on rclpy; parameters and names are resolved by the shared base."""

    backend = "rclpy"

    def __init__(self, name: str, namespace: str = "/", ros_args: RosArgs | None = None) -> None:
        super().__init__(name, namespace, ros_args)
        if not rclpy.ok():
            rclpy.init()
        # Our base already applied --ros-args; rclpy must not apply them a second time.
        self.ros = RosNode(self.name, namespace=self.namespace, use_global_arguments=False, cli_args=None)
        self.group = ReentrantCallbackGroup()
        self.executor = MultiThreadedExecutor()
        self.executor.add_node(self.ros)
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

        handle = self.ros.create_subscription(
            get_message(msg_type), topic, _marked(on_raw), ros_qos(profile(qos)), raw=True
        )
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

        return self.ros.create_service(srv_cls, self.resolve(name), _marked(on_request))

    def create_client(self, srv_type: str, name: str) -> RclpyClient:
        return RclpyClient(self, srv_type, self.resolve(name))

    def create_timer(self, period: float, callback: Callable[[], None]) -> Any:
        if not period > 0:
            raise ValueError(f"timer period must be > 0 s, got {period}")
        return self.ros.create_timer(period, _marked(callback))

    def spin_once(self, timeout: float = 0.1) -> None:
        self.executor.spin_once(timeout_sec=timeout)

    def shutdown(self) -> None:
        if rclpy.ok():
            rclpy.shutdown()

    def destroy(self) -> None:
        self.executor.remove_node(self.ros)
        self.ros.destroy_node()
