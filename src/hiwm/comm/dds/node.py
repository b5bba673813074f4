"""The DDS backend: ROS 2 nodes on Cyclone DDS without a ROS install.

Wire compatibility with rmw_cyclonedds: topics ``rt/<name>``, types
``pkg::msg::dds_::Name_``, XCDR1 payloads produced by rosbags, ROS default QoS
(automatic liveliness, no autodispose), services on ``rq/<name>Request`` and
``rr/<name>Reply`` with a 16-byte (client guid, sequence number) header.

Each process's participant also publishes what rmw_cyclonedds publishes for the ROS
graph: its nodes and their readers' and writers' gids on ``ros_discovery_info``, and the
RIHS01 type hash of every endpoint in its USER_DATA; every node serves the parameter
services. So ``ros2 node``, ``ros2 param`` and ``ros2 topic info -v`` see these nodes as
they see rclpy ones.

Payloads are written and taken as raw CDR through the binding's C layer
(``cyclonedds._clayer``; private, so the version is pinned in pyproject.toml):
that skips the binding's pure-Python serializer, which is far too slow for images.
"""

from __future__ import annotations

import atexit
import itertools
import os
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from cyclonedds._clayer import ddspy_take, ddspy_write
from cyclonedds.core import GuardCondition, InstanceState, ReadCondition, SampleState, ViewState, WaitSet
from cyclonedds.domain import DomainParticipant
from cyclonedds.pub import DataWriter
from cyclonedds.qos import Policy, Qos
from cyclonedds.sub import DataReader
from cyclonedds.topic import Topic
from cyclonedds.util import duration

from hiwm.comm import names
from hiwm.comm.dds.config import DdsSettings, dds_settings
from hiwm.comm.dds.idl import idl_class, service_idl_class
from hiwm.comm.dds.parameters import ParameterServices
from hiwm.comm.interfaces import (
    InterfaceError,
    deserialize,
    message_class,
    new_message,
    normalize_type_name,
    serialize,
    service_types,
)
from hiwm.comm.node import Node, RosArgs, ServiceCallError, Timer, error_response
from hiwm.comm.params import ParameterError
from hiwm.comm.qos import LATCHED, SERVICES, Durability, History, QoSProfile, Reliability, profile
from hiwm.comm.type_hash import user_data

ANY_STATE = SampleState.Any | ViewState.Any | InstanceState.Any
TAKE_BATCH = 64
_HEADER = struct.Struct("<Qq")  # rmw_cyclonedds request header: client guid, sequence number
_CDR_LE = b"\x00\x01\x00\x00"
# rmw_cyclonedds announces each participant's nodes and endpoints here (reliable,
# transient local, keep last 1); peers only list participants whose USER_DATA names an enclave.
GRAPH_TOPIC = "ros_discovery_info"
GRAPH_TYPE = "rmw_dds_common/msg/ParticipantEntitiesInfo"
_ENCLAVE = b"enclave=/;"


def dds_qos(qos: QoSProfile, userdata: bytes = b"") -> Qos:
    """A hiwm profile as Cyclone QoS, with the policies rmw_cyclonedds always sets."""
    blocking = duration(seconds=10) if qos.history is History.KEEP_ALL else duration(milliseconds=100)
    history = Policy.History.KeepAll if qos.history is History.KEEP_ALL else Policy.History.KeepLast(qos.depth)
    policies = [
        Policy.Reliability.Reliable(blocking)
        if qos.reliability is Reliability.RELIABLE
        else Policy.Reliability.BestEffort,
        Policy.Durability.TransientLocal
        if qos.durability is Durability.TRANSIENT_LOCAL
        else Policy.Durability.Volatile,
        history,
        Policy.Liveliness.Automatic(lease_duration=duration(infinite=True)),
        Policy.WriterDataLifecycle(autodispose=False),
        Policy.DataRepresentation(use_cdrv0_representation=True),
    ]
    if qos.durability is Durability.TRANSIENT_LOCAL:
        # Cyclone keeps for late joiners what the durability service history says, not the history.
        policies.append(Policy.DurabilityService(0, history, -1, -1, -1))
    if userdata:
        policies.append(Policy.Userdata(userdata))
    return Qos(*policies)


def _gid(guid: bytes) -> Any:
    """A DDS GUID as ``rmw_dds_common/msg/Gid`` (16 bytes, as rmw_cyclonedds copies it)."""
    return message_class("rmw_dds_common/msg/Gid")(data=np.frombuffer(guid, np.uint8).copy())


def _pad4(data: bytes) -> bytes:
    # DDS payloads are a multiple of 4 bytes; the encapsulation options' low bits count the padding.
    pad = -len(data) % 4
    if not pad:
        return data
    return data[:3] + bytes([(data[3] & ~3) | pad]) + data[4:] + b"\0" * pad


def _unpad(data: bytes) -> bytes:
    pad = data[3] & 3 if len(data) >= 4 else 0
    return data[: len(data) - pad] if pad else data


class _Process:
    """One participant per process (as rmw_cyclonedds does), shared by its nodes."""

    _lock = threading.Lock()
    _instance: _Process | None = None

    def __init__(self, settings: DdsSettings) -> None:
        self.settings = settings
        # Cyclone reads CYCLONEDDS_URI when the domain starts. Passing the same XML through
        # dds_create_domain measured 60x slower for fragmented samples (>64 kB), so the
        # shipped file goes through the variable, set only for this call.
        saved = os.environ.get("CYCLONEDDS_URI")
        if settings.config_uri:
            os.environ["CYCLONEDDS_URI"] = settings.config_uri
        try:
            self.participant = DomainParticipant(settings.domain_id, qos=Qos(Policy.Userdata(_ENCLAVE)))
        finally:
            if settings.config_uri:
                if saved is None:
                    os.environ.pop("CYCLONEDDS_URI", None)
                else:
                    os.environ["CYCLONEDDS_URI"] = saved
        self.topics: dict[tuple[str, str], Topic] = {}
        self.guid = self.participant.guid.bytes
        self._graph_lock = threading.Lock()
        self._nodes: dict[int, DdsNode] = {}  # in creation order, as rmw lists them
        self._csids = itertools.count(1)
        graph_topic = self.topic(GRAPH_TOPIC, idl_class(GRAPH_TYPE))
        self._graph_writer = DataWriter(self.participant, graph_topic, qos=dds_qos(LATCHED, user_data(GRAPH_TYPE)))
        # Deleting the participant tells peers we are gone. Without it, a reliable writer
        # elsewhere keeps waiting on our dead readers' acks until the lease runs out (10 s).
        atexit.register(self.close)

    def close(self) -> None:
        if self.participant is not None:
            self.topics.clear()
            self.participant.__del__()
            self.participant = None

    @classmethod
    def get(cls) -> _Process:
        with cls._lock:
            if cls._instance is None:
                cls._instance = _Process(dds_settings())
            return cls._instance

    def topic(self, dds_name: str, idl: type) -> Topic:
        key = (dds_name, idl.__idl_typename__)
        if key not in self.topics:
            self.topics[key] = Topic(self.participant, dds_name, idl)
        return self.topics[key]

    def client_service_id(self) -> str:
        """A process-unique id pairing a client's or service's reader and writer, as rmw_cyclonedds forms it."""
        data = self.guid[:12] + struct.pack(">I", next(self._csids))
        return f"{data[0]:02x}" + "".join(f".{b:x}" for b in data[1:])

    def add_node(self, node: DdsNode) -> None:
        with self._graph_lock:
            self._nodes[id(node)] = node

    def remove_node(self, node: DdsNode) -> None:
        with self._graph_lock:
            self._nodes.pop(id(node), None)
        self.announce()

    def announce(self) -> None:
        """Publish this participant's nodes and their endpoints (the whole list, as rmw does)."""
        with self._graph_lock:
            if self.participant is None:
                return
            nodes = [
                new_message(
                    "rmw_dds_common/msg/NodeEntitiesInfo",
                    node_namespace=node.namespace,
                    node_name=node.name,
                    reader_gid_seq=list(node.reader_gids),
                    writer_gid_seq=list(node.writer_gids),
                )
                for node in self._nodes.values()
            ]
            msg = new_message(GRAPH_TYPE, gid=_gid(self.guid), node_entities_info_seq=nodes)
            ddspy_write(self._graph_writer._ref, _pad4(serialize(msg, GRAPH_TYPE)))


class DdsPublisher:
    def __init__(self, node: DdsNode, msg_type: str, topic: str, qos: QoSProfile) -> None:
        self.msg_type = normalize_type_name(msg_type)
        self.topic = topic
        proc = node.process
        dds_topic = proc.topic(names.dds_topic(topic), idl_class(self.msg_type))
        self._writer = DataWriter(proc.participant, dds_topic, qos=dds_qos(qos, user_data(self.msg_type)))
        node.track(writer=self._writer)

    def publish(self, msg: Any) -> None:
        """Publish a message of this publisher's type."""
        if getattr(msg, "__msgtype__", None) != self.msg_type:
            raise TypeError(f"{self.topic} publishes {self.msg_type}, got {type(msg).__name__}")
        self.publish_raw(serialize(msg, self.msg_type))

    def publish_raw(self, cdr: bytes) -> None:
        """Publish an already serialized XCDR1 payload (encapsulation header included)."""
        ret = ddspy_write(self._writer._ref, _pad4(cdr))
        if ret < 0:
            raise RuntimeError(f"DDS write on {self.topic} failed with code {ret} (payload rejected or timed out)")

    def matched_count(self) -> int:
        return len(self._writer.get_matched_subscriptions())


def _take_raw(reader: DataReader) -> list[bytes]:
    out = []
    while True:
        batch = ddspy_take(reader._ref, ANY_STATE, TAKE_BATCH)
        if isinstance(batch, int):
            raise RuntimeError(f"DDS take failed with code {batch}")
        out.extend(_unpad(data) for data, info in batch if info.valid_data)
        if len(batch) < TAKE_BATCH:
            return out


class DdsSubscription:
    def __init__(
        self, node: DdsNode, msg_type: str, topic: str, callback: Callable[[Any], None], qos: QoSProfile, raw: bool
    ) -> None:
        self.msg_type = normalize_type_name(msg_type)
        self.topic = topic
        self.callback = callback
        self.raw = raw
        self._node = node
        proc = node.process
        dds_topic = proc.topic(names.dds_topic(topic), idl_class(self.msg_type))
        self._reader = DataReader(proc.participant, dds_topic, qos=dds_qos(qos, user_data(self.msg_type)))
        node.track(reader=self._reader)
        self.condition = ReadCondition(self._reader, ANY_STATE)

    def dispatch(self) -> int:
        samples = _take_raw(self._reader)
        for data in samples:
            if self.raw:
                self.callback(data)
                continue
            try:
                msg = deserialize(data, self.msg_type)
            except InterfaceError as exc:
                self._node.bad_input.warning(self.topic, f"dropped message on {self.topic}: {exc}")
                continue
            self.callback(msg)
        return len(samples)

    def publisher_count(self) -> int:
        return len(self._reader.get_matched_publications())


class DdsService:
    def __init__(self, node: DdsNode, srv_type: str, name: str, handler: Callable[[Any], Any]) -> None:
        self.service = name
        self.request_type, self.response_type = service_types(srv_type)
        self.handler = handler
        self._node = node
        proc = node.process
        pair = f"serviceid={proc.client_service_id()};"
        req_topic = proc.topic(names.dds_request_topic(name), service_idl_class(self.request_type))
        rep_topic = proc.topic(names.dds_reply_topic(name), service_idl_class(self.response_type))
        self._reader = DataReader(
            proc.participant, req_topic, qos=dds_qos(SERVICES, user_data(self.request_type, pair))
        )
        self._writer = DataWriter(
            proc.participant, rep_topic, qos=dds_qos(SERVICES, user_data(self.response_type, pair))
        )
        node.track(reader=self._reader, writer=self._writer)
        self.condition = ReadCondition(self._reader, ANY_STATE)

    def dispatch(self) -> int:
        samples = _take_raw(self._reader)
        for data in samples:
            if len(data) < 4 + _HEADER.size:
                self._node.bad_input.warning(self.service, f"dropped short request on {self.service}")
                continue
            header, body = data[4 : 4 + _HEADER.size], data[:4] + data[4 + _HEADER.size :]
            try:
                request = deserialize(body, self.request_type)
            except InterfaceError as exc:
                self._node.bad_input.warning(self.service, f"dropped request on {self.service}: {exc}")
                continue
            try:
                response = self.handler(request)
            except Exception as exc:  # a handler bug must not take the node down
                self._node.logger.exception(f"service {self.service} failed")
                response = error_response(self.response_type, exc)
                if response is None:
                    continue
            try:
                cdr = serialize(response, self.response_type)
            except Exception as exc:
                self._node.logger.error(f"service {self.service} returned an invalid response: {exc}")
                continue
            ddspy_write(self._writer._ref, _pad4(cdr[:4] + header + cdr[4:]))
        return len(samples)


class DdsClient:
    def __init__(self, node: DdsNode, srv_type: str, name: str) -> None:
        self.service = name
        self.request_type, self.response_type = service_types(srv_type)
        proc = node.process
        pair = f"clientid={proc.client_service_id()};"
        req_topic = proc.topic(names.dds_request_topic(name), service_idl_class(self.request_type))
        rep_topic = proc.topic(names.dds_reply_topic(name), service_idl_class(self.response_type))
        self._writer = DataWriter(
            proc.participant, req_topic, qos=dds_qos(SERVICES, user_data(self.request_type, pair))
        )
        self._reader = DataReader(
            proc.participant, rep_topic, qos=dds_qos(SERVICES, user_data(self.response_type, pair))
        )
        node.track(reader=self._reader, writer=self._writer)
        self._guid = self._writer.instance_handle & 0xFFFF_FFFF_FFFF_FFFF
        self._seq = itertools.count(1)
        self._waitset = WaitSet(proc.participant)
        self._waitset.attach(ReadCondition(self._reader, ANY_STATE))
        self._lock = threading.Lock()

    def service_is_ready(self) -> bool:
        return bool(self._writer.get_matched_subscriptions()) and bool(self._reader.get_matched_publications())

    def wait_for_service(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self.service_is_ready():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def call(self, request: Any, timeout: float = 5.0) -> Any:
        """Send a request and wait for its response; raises :class:`ServiceCallError` on timeout."""
        if getattr(request, "__msgtype__", None) != self.request_type:
            raise TypeError(f"{self.service} takes {self.request_type}, got {type(request).__name__}")
        deadline = time.monotonic() + timeout
        if not self.wait_for_service(timeout):
            raise ServiceCallError(f"service {self.service} not available after {timeout:.1f} s")
        with self._lock:
            seq = next(self._seq)
            cdr = serialize(request, self.request_type)
            ddspy_write(self._writer._ref, _pad4(cdr[:4] + _HEADER.pack(self._guid, seq) + cdr[4:]))
            while (left := deadline - time.monotonic()) > 0:
                self._waitset.wait(int(left * 1e9))
                for data in _take_raw(self._reader):
                    if len(data) < 4 + _HEADER.size:
                        continue
                    guid, got_seq = _HEADER.unpack_from(data, 4)
                    if guid == self._guid and got_seq == seq:
                        return deserialize(data[:4] + data[4 + _HEADER.size :], self.response_type)
        raise ServiceCallError(f"service {self.service} did not answer within {timeout:.1f} s")


class DdsNode(Node):
    """A ROS 2 node on Cyclone DDS, wire-compatible with rmw_cyclonedds."""

    backend = "dds"

    def __init__(self, name: str, namespace: str = "/", ros_args: RosArgs | None = None) -> None:
        super().__init__(name, namespace, ros_args)
        self.process = _Process.get()
        self._waitset = WaitSet(self.process.participant)
        self._wake = GuardCondition(self.process.participant)
        self._waitset.attach(self._wake)
        self._dispatchers: list[DdsSubscription | DdsService] = []
        self._endpoints: list[Any] = []  # everything with DDS readers/writers, deleted on destroy
        self._timers: list[Timer] = []
        self._ok = True
        self.reader_gids: list[Any] = []  # rmw_dds_common/msg/Gid, made once per endpoint
        self.writer_gids: list[Any] = []
        self._announced = False  # graph updates wait until the node's own endpoints exist
        self.process.add_node(self)
        self._declare_use_sim_time()
        self.parameter_services = ParameterServices(self)
        self._announced = True
        self.process.announce()
        self.logger.debug(f"DDS backend, domain {self.process.settings.domain_id}, {self.process.settings.scope}")

    def _declare_use_sim_time(self) -> None:
        # Declared as on every rclpy node (launch files set it); this backend has no /clock.
        if self.declare_parameter("use_sim_time", False):
            self.logger.warning("use_sim_time is not supported on the DDS backend: using wall-clock time")
            self._params["use_sim_time"] = False

        def wall_clock_only(changes: dict[str, Any]) -> None:
            if changes.get("use_sim_time"):
                raise ParameterError("use_sim_time is not supported on the DDS backend (no /clock)")

        self.add_on_set_parameters_callback(wall_clock_only)

    def track(self, reader: DataReader | None = None, writer: DataWriter | None = None) -> None:
        """Count an endpoint's reader and writer as this node's in the ROS graph."""
        with self.process._graph_lock:
            if reader is not None:
                self.reader_gids.append(_gid(reader.guid.bytes))
            if writer is not None:
                self.writer_gids.append(_gid(writer.guid.bytes))

    def _graph_changed(self) -> None:
        if self._announced:
            self.process.announce()

    @property
    def ok(self) -> bool:
        return self._ok

    def create_publisher(self, msg_type: str, topic: str, qos: QoSProfile | str | int | None = None) -> DdsPublisher:
        message_class(msg_type)
        pub = DdsPublisher(self, msg_type, self.resolve(topic), profile(qos))
        self._endpoints.append(pub)
        self._graph_changed()
        return pub

    def create_subscription(
        self,
        msg_type: str,
        topic: str,
        callback: Callable[[Any], None],
        qos: QoSProfile | str | int | None = None,
        raw: bool = False,
    ) -> DdsSubscription:
        """Subscribe; with ``raw=True`` the callback gets the CDR bytes undecoded."""
        message_class(msg_type)
        sub = DdsSubscription(self, msg_type, self.resolve(topic), callback, profile(qos), raw)
        self._attach(sub)
        self._graph_changed()
        return sub

    def create_service(self, srv_type: str, name: str, handler: Callable[[Any], Any]) -> DdsService:
        srv = DdsService(self, srv_type, self.resolve(name), handler)
        self._attach(srv)
        self._graph_changed()
        return srv

    def create_client(self, srv_type: str, name: str) -> DdsClient:
        client = DdsClient(self, srv_type, self.resolve(name))
        self._endpoints.append(client)
        self._graph_changed()
        return client

    def create_timer(self, period: float, callback: Callable[[], None]) -> Timer:
        timer = Timer(period, callback)
        self._timers.append(timer)
        self._wake.set(True)
        return timer

    def _attach(self, dispatcher: DdsSubscription | DdsService) -> None:
        self._waitset.attach(dispatcher.condition)
        self._dispatchers.append(dispatcher)
        self._endpoints.append(dispatcher)

    def wake(self) -> None:
        """Make a blocked :meth:`spin_once` return (thread-safe)."""
        self._wake.set(True)

    def shutdown(self) -> None:
        self._ok = False
        self._wake.set(True)

    def spin_once(self, timeout: float = 0.1) -> None:
        now = time.monotonic()
        due = [t.next_due for t in self._timers if not t.cancelled]
        wait = max(0.0, min([timeout, *(d - now for d in due)]))
        self._waitset.wait(int(wait * 1e9))
        self._wake.set(False)
        for dispatcher in self._dispatchers:
            dispatcher.dispatch()
        now = time.monotonic()
        for timer in self._timers:
            if not timer.cancelled and now >= timer.next_due:
                # Skip missed periods rather than firing a burst after a stall.
                timer.next_due += max(1, int((now - timer.next_due) / timer.period) + 1) * timer.period
                timer.callback()

    def destroy(self) -> None:
        """Delete this node's readers and writers so peers see them go at once."""
        self._ok = False
        self.process.remove_node(self)
        if self.process.participant is not None:
            for endpoint in self._endpoints:
                for entity in (getattr(endpoint, "_reader", None), getattr(endpoint, "_writer", None)):
                    if entity is not None:
                        entity.__del__()
        self._endpoints.clear()
        self._dispatchers.clear()
        self._timers.clear()
