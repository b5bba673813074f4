"""rosbag2 bags in MCAP storage: write raw CDR traffic, read it back as messages.

Writing goes through ``rosbags.rosbag2.Writer``; each topic's connection carries the
full ``ros2msg`` definition from hiwm's typestore (hiwm_msgs included), so ``ros2 bag``,
``mcap`` + ``mcap-ros2-support`` and Foxglove can decode the bag without hiwm.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys.store import Typestore

from hiwm.comm.interfaces import InterfaceError, deserialize, normalize_type_name, serialize, typestore

BAG_VERSION = 9


class BagError(RuntimeError):
    """A bag that cannot be written or read; the message names the path."""


class BagWriter:
    """Append messages (raw CDR or rosbags dataclasses) to a new MCAP bag directory."""

    def __init__(self, path: str | Path, store: Typestore | None = None) -> None:
        self.path = Path(path)
        if self.path.exists():
            raise BagError(f"{self.path}: already exists (rosbag2 bags are written once)")
        self.store = store or typestore()
        self._writer = Writer(self.path, version=BAG_VERSION, storage_plugin=StoragePlugin.MCAP)
        self._writer.open()
        self._connections: dict[str, Any] = {}
        self.counts: dict[str, int] = {}

    def add_topic(self, topic: str, msgtype: str) -> None:
        """Register a topic with its type (embeds the message definition); idempotent."""
        msgtype = normalize_type_name(msgtype)
        conn = self._connections.get(topic)
        if conn is not None:
            if conn.msgtype != msgtype:
                raise BagError(f"{self.path}: {topic} already recorded as {conn.msgtype}, not {msgtype}")
            return
        if msgtype not in self.store.types:
            raise BagError(f"{self.path}: unknown message type {msgtype!r} for {topic}")
        self._connections[topic] = self._writer.add_connection(topic, msgtype, typestore=self.store)
        self.counts[topic] = 0

    def write(self, topic: str, data: bytes | memoryview, timestamp_ns: int, msgtype: str | None = None) -> None:
        """Write one CDR payload (encapsulation header included) received at ``timestamp_ns``."""
        if topic not in self._connections:
            if msgtype is None:
                raise BagError(f"{self.path}: topic {topic} not added; pass msgtype")
            self.add_topic(topic, msgtype)
        self._writer.write(self._connections[topic], int(timestamp_ns), data)
        self.counts[topic] += 1

    def write_message(self, topic: str, msg: Any, timestamp_ns: int) -> None:
        self.write(topic, serialize(msg), timestamp_ns, msg.__msgtype__)

    def close(self) -> None:
        """Write the MCAP summary and metadata.yaml (a bag is only complete after this)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None  # type: ignore[assignment]

    def __enter__(self) -> BagWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class BagMessage:
    topic: str
    msgtype: str
    timestamp: int  # ns, when it was recorded
    data: bytes  # raw CDR

    def decode(self) -> Any:
        return deserialize(self.data, self.msgtype)


def read_bag(path: str | Path, topics: Iterable[str] | None = None) -> Iterator[BagMessage]:
    """Messages of a rosbag2 bag (MCAP or sqlite3) in recording-time order."""
    wanted = set(topics) if topics is not None else None
    try:
        with Reader(Path(path)) as reader:
            conns = [c for c in reader.connections if wanted is None or c.topic in wanted]
            for conn, timestamp, data in reader.messages(connections=conns):
                yield BagMessage(conn.topic, normalize_type_name(conn.msgtype), timestamp, bytes(data))
    except InterfaceError:
        raise
    except Exception as exc:
        raise BagError(f"{path}: cannot read bag ({type(exc).__name__}: {exc})") from exc


def bag_topics(path: str | Path) -> dict[str, dict]:
    """``{topic: {"type", "count"}}`` and the bag's duration, from its metadata."""
    try:
        with Reader(Path(path)) as reader:
            out = {c.topic: {"type": c.msgtype, "count": c.msgcount} for c in reader.connections}
            return {"topics": out, "duration_s": reader.duration / 1e9, "messages": reader.message_count}
    except Exception as exc:
        raise BagError(f"{path}: cannot read bag ({type(exc).__name__}: {exc})") from exc
