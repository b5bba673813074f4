"""ROS 2 interface types shared by both backends.

Standard types come from the rosbags typestore; ours are parsed at run time from
``msgs/**/*.msg|srv`` so the ``.msg`` files stay the single source of truth.
Messages are rosbags dataclasses everywhere: node code never sees backend types.
"""

from __future__ import annotations

import functools
from dataclasses import fields as dc_fields
from pathlib import Path
from typing import Any

import numpy as np
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from hiwm.paths import share_path

INTERFACE_PACKAGE = "hiwm_msgs"

# Service definitions rosbags' store lacks (std_srvs, rcl_interfaces' parameter services).
_DEFINITIONS = Path(__file__).with_name("definitions")

_NUMPY_DTYPES = {
    "bool": np.bool_,
    "byte": np.uint8,
    "char": np.uint8,
    "uint8": np.uint8,
    "int8": np.int8,
    "uint16": np.uint16,
    "int16": np.int16,
    "uint32": np.uint32,
    "int32": np.int32,
    "uint64": np.uint64,
    "int64": np.int64,
    "float32": np.float32,
    "float64": np.float64,
}


class InterfaceError(ValueError):
    """An interface name, definition or payload that cannot be used."""


def split_srv(text: str) -> tuple[str, str]:
    """Split ``.srv`` text into its request and response parts."""
    lines = text.splitlines()
    seps = [i for i, line in enumerate(lines) if line.strip() == "---"]
    if len(seps) != 1:
        raise InterfaceError("a .srv definition needs exactly one '---' line")
    return "\n".join(lines[: seps[0]]) + "\n", "\n".join(lines[seps[0] + 1 :]) + "\n"


def _srv_types(name: str, text: str) -> dict:
    # rosbags files every parsed definition under "msg"; services keep their "srv" name on the wire.
    pkg, _, base = name.split("/")
    types = {}
    for part, suffix in zip(split_srv(text), ("_Request", "_Response"), strict=True):
        (defn,) = get_types_from_msg(part, f"{pkg}/msg/{base}{suffix}").values()
        types[f"{name}{suffix}"] = defn
    return types


@functools.cache
def typestore() -> Typestore:
    """The process-wide typestore: ROS 2 Jazzy standard types, the services above, and hiwm_msgs."""
    store = get_typestore(Stores.ROS2_JAZZY)
    types: dict = {}
    for path in sorted(_DEFINITIONS.glob("*/srv/*.srv")):
        types.update(_srv_types(f"{path.parts[-3]}/srv/{path.stem}", path.read_text()))
    root = share_path("msgs")
    for path in sorted((root / "msg").glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"{INTERFACE_PACKAGE}/msg/{path.stem}"))
    for path in sorted((root / "srv").glob("*.srv")):
        types.update(_srv_types(f"{INTERFACE_PACKAGE}/srv/{path.stem}", path.read_text()))
    store.register(types)
    return store


def normalize_type_name(name: str) -> str:
    """Accept ``pkg/msg/Name``, ``pkg/Name`` and ``pkg::msg::dds_::Name_`` forms."""
    if "::" in name:
        parts = [p for p in name.split("::") if p and p != "dds_"]
        if len(parts) != 3:
            raise InterfaceError(f"unrecognised DDS type name {name!r}")
        return f"{parts[0]}/{parts[1]}/{parts[2].removesuffix('_')}"
    parts = name.split("/")
    if len(parts) == 2:
        return f"{parts[0]}/msg/{parts[1]}"
    if len(parts) == 3:
        return name
    raise InterfaceError(f"unrecognised interface name {name!r}")


def message_class(name: str) -> type:
    """The rosbags dataclass for a message type name."""
    name = normalize_type_name(name)
    try:
        return typestore().types[name]
    except KeyError:
        raise InterfaceError(f"unknown message type {name!r}") from None


def service_types(name: str) -> tuple[str, str]:
    """Request and response type names of a service type, checked to exist."""
    name = normalize_type_name(name)
    if "/srv/" not in name:
        raise InterfaceError(f"{name!r} is not a service type")
    req, res = f"{name}_Request", f"{name}_Response"
    message_class(req)
    message_class(res)
    return req, res


def _default(field_def: tuple) -> Any:
    kind, detail = field_def
    kind = kind.name
    if kind == "BASE":
        base = detail[0]
        return "" if base == "string" else (False if base == "bool" else (0.0 if base.startswith("float") else 0))
    if kind == "NAME":
        return new_message(detail)
    inner, length = detail
    if inner[0].name == "BASE" and inner[1][0] in _NUMPY_DTYPES:
        return np.zeros(length if kind == "ARRAY" else 0, dtype=_NUMPY_DTYPES[inner[1][0]])
    return [_default(inner) for _ in range(length)] if kind == "ARRAY" else []


def new_message(name: str, /, **values: Any) -> Any:
    """Build a message, filling fields not given with ROS defaults (zeros, empty)."""
    cls = message_class(name)
    _, field_defs = typestore().fielddefs[cls.__msgtype__]
    known = {f for f, _ in field_defs}
    if unknown := set(values) - known:
        raise InterfaceError(f"{cls.__msgtype__} has no field(s) {sorted(unknown)}")
    kwargs = {f: values[f] if f in values else _default(d) for f, d in field_defs}
    return cls(**kwargs)


def serialize(msg: Any, name: str | None = None) -> bytes:
    """ROS 2 CDR (XCDR1, little endian) bytes with the 4-byte encapsulation header."""
    name = normalize_type_name(name) if name else msg.__msgtype__
    return bytes(typestore().serialize_cdr(msg, name))


def deserialize(data: bytes | memoryview, name: str) -> Any:
    """Parse ROS 2 CDR bytes; any malformed payload raises :class:`InterfaceError`."""
    name = normalize_type_name(name)
    if len(data) < 4 or bytes(data[:2]) not in (b"\x00\x01", b"\x00\x00"):
        raise InterfaceError(f"{name}: payload is not XCDR1 (header {bytes(data[:4]).hex() or 'missing'})")
    try:
        return typestore().deserialize_cdr(data, name)
    except Exception as exc:  # rosbags raises several types on truncated or corrupt data
        raise InterfaceError(f"{name}: malformed payload of {len(data)} bytes ({exc})") from exc


def to_dict(msg: Any) -> Any:
    """A plain-Python view of a message (for echo, logs and JSON)."""
    if hasattr(msg, "__dataclass_fields__"):
        return {f.name: to_dict(getattr(msg, f.name)) for f in dc_fields(msg) if f.name != "__msgtype__"}
    if isinstance(msg, np.ndarray):
        return msg.tolist()
    if isinstance(msg, list):
        return [to_dict(m) for m in msg]
    return msg


def stamp_from_ns(ns: int) -> Any:
    """``builtin_interfaces/msg/Time`` for a time in nanoseconds."""
    return new_message("builtin_interfaces/msg/Time", sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def header(stamp_ns: int, frame_id: str) -> Any:
    """``std_msgs/msg/Header`` stamped ``stamp_ns`` (nanoseconds)."""
    return new_message("std_msgs/msg/Header", stamp=stamp_from_ns(stamp_ns), frame_id=frame_id)
