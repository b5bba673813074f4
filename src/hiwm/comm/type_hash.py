"""RIHS01 type hashes (REP 2011), computed as rosidl does, without ROS installed.

A type's hash is the SHA-256 of the JSON form of its type description: its own fields
and those of every type it references (sorted by name), with rosidl's field type ids
and without default values. Jazzy's rmw_cyclonedds reads it from each endpoint's
USER_DATA (``typehash=RIHS01_<hex>;``) and warns about endpoints that lack it.
Descriptions are built from the typestore's definitions (:mod:`hiwm.comm.interfaces`),
so hiwm_msgs hash the same as the rosidl-generated package built from ``msgs/``.
"""

from __future__ import annotations

import functools
import hashlib
import json
from typing import Any

from hiwm.comm.interfaces import InterfaceError, normalize_type_name, service_types, typestore

PREFIX = "RIHS01_"

# .msg base type -> rosidl's FieldType id (type_description_interfaces/msg/FieldType).
# A .msg `char` is uint8 in rosidl's IDL and `byte` is an octet.
_BASE_IDS = {
    "int8": 2,
    "uint8": 3,
    "char": 3,
    "int16": 4,
    "uint16": 5,
    "int32": 6,
    "uint32": 7,
    "int64": 8,
    "uint64": 9,
    "float32": 10,
    "float64": 11,
    "bool": 15,
    "byte": 16,
    "string": 17,
    "wstring": 18,
}
_NESTED = 1
_BOUNDED_STRING, _BOUNDED_WSTRING = 21, 22
# Added to the element's id for an array, a bounded and an unbounded sequence.
_ARRAY, _BOUNDED_SEQUENCE, _UNBOUNDED_SEQUENCE = 48, 96, 144


def _element(detail: Any) -> tuple[int, int, str]:
    """(type id, string capacity, nested type name) of a plain field or an element."""
    kind, inner = detail
    if kind.name == "NAME":
        return _NESTED, 0, normalize_type_name(inner)
    base, bound = inner
    if base not in _BASE_IDS:
        raise InterfaceError(f"no rosidl field type for {base!r}")
    if bound and base in ("string", "wstring"):
        return (_BOUNDED_STRING if base == "string" else _BOUNDED_WSTRING), bound, ""
    return _BASE_IDS[base], 0, ""


def _field_type(field_def: Any) -> dict:
    kind = field_def[0].name
    if kind in ("BASE", "NAME"):
        type_id, string_capacity, nested = _element(field_def)
        capacity = 0
    else:
        inner, length = field_def[1]
        type_id, string_capacity, nested = _element(inner)
        if kind == "ARRAY":
            type_id, capacity = type_id + _ARRAY, length
        elif length:
            type_id, capacity = type_id + _BOUNDED_SEQUENCE, length
        else:
            type_id, capacity = type_id + _UNBOUNDED_SEQUENCE, 0
    return {"type_id": type_id, "capacity": capacity, "string_capacity": string_capacity, "nested_type_name": nested}


def _individual(name: str) -> dict:
    try:
        _, field_defs = typestore().fielddefs[name]
    except KeyError:
        raise InterfaceError(f"unknown message type {name!r}") from None
    return {"type_name": name, "fields": [{"name": f, "type": _field_type(d)} for f, d in field_defs]}


def _service_event(service: str) -> dict:
    # rosidl gives every service an event message: its info and at most one request and response.
    req, res = service_types(service)
    seq = _NESTED + _BOUNDED_SEQUENCE
    return {
        "type_name": f"{service}_Event",
        "fields": [
            {"name": "info", "type": _nested_field("service_msgs/msg/ServiceEventInfo")},
            {"name": "request", "type": {**_nested_field(req), "type_id": seq, "capacity": 1}},
            {"name": "response", "type": {**_nested_field(res), "type_id": seq, "capacity": 1}},
        ],
    }


def _nested_field(name: str) -> dict:
    return {"type_id": _NESTED, "capacity": 0, "string_capacity": 0, "nested_type_name": name}


@functools.cache
def _lookup(name: str) -> dict:
    """The individual description of one type: a message, a service, or a service's event."""
    if name.endswith("_Event") and "/srv/" in name:
        return _service_event(name.removesuffix("_Event"))
    if "/srv/" in name and not name.endswith(("_Request", "_Response")):
        return {
            "type_name": name,
            "fields": [
                {"name": f"{part}_message", "type": _nested_field(f"{name}_{suffix}")}
                for part, suffix in (("request", "Request"), ("response", "Response"), ("event", "Event"))
            ],
        }
    return _individual(name)


def type_description(name: str) -> dict:
    """The full type description (``type_description`` and ``referenced_type_descriptions``)."""
    name = normalize_type_name(name)
    top = _lookup(name)
    seen: set[str] = set()
    pending = [f["type"]["nested_type_name"] for f in top["fields"]]
    while pending:
        ref = pending.pop()
        if ref and ref not in seen:
            seen.add(ref)
            pending.extend(f["type"]["nested_type_name"] for f in _lookup(ref)["fields"])
    return {"type_description": top, "referenced_type_descriptions": [_lookup(r) for r in sorted(seen)]}


@functools.cache
def type_hash(name: str) -> str:
    """``RIHS01_<64 hex>`` of a message, service request/response, or service type."""
    text = json.dumps(type_description(name), ensure_ascii=True, allow_nan=False, separators=(", ", ": "))
    return PREFIX + hashlib.sha256(text.encode()).hexdigest()


def user_data(name: str, extra: str = "") -> bytes:
    """The USER_DATA rmw_cyclonedds gives an endpoint of this type (``extra`` goes first)."""
    return f"{extra}typehash={type_hash(name)};".encode()
