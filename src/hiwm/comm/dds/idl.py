"""Cyclone DDS topic types built from ROS 2 definitions.

Data never goes through these classes: payloads are the rosbags CDR bytes, written and
taken raw. The classes exist so the Python binding can give Cyclone a sertype with the
ROS type name, a CDR layout to validate incoming data against, and XTypes type
information (which the 11.x binding requires to create a topic).
"""

from __future__ import annotations

import functools
from typing import Any

from cyclonedds.idl import IdlStruct, make_idl_struct
from cyclonedds.idl import types as t

from hiwm.comm.interfaces import normalize_type_name, typestore

_BASE = {
    "bool": bool,
    "byte": t.uint8,
    "char": t.uint8,
    "int8": t.int8,
    "uint8": t.uint8,
    "int16": t.int16,
    "uint16": t.uint16,
    "int32": t.int32,
    "uint32": t.uint32,
    "int64": t.int64,
    "uint64": t.uint64,
    "float32": t.float32,
    "float64": t.float64,
}

# rmw_cyclonedds puts this before every request and reply body (client guid, sequence number).
SERVICE_HEADER_FIELDS = {"client_guid": t.uint64, "sequence_number": t.int64}


def dds_type_name(ros_name: str) -> str:
    """``pkg/msg/Name`` -> ``pkg::msg::dds_::Name_`` (the rmw naming on the wire)."""
    pkg, kind, name = normalize_type_name(ros_name).split("/")
    return f"{pkg}::{kind}::dds_::{name}_"


def _field_type(field_def: tuple) -> Any:
    kind, detail = field_def
    kind = kind.name
    if kind == "BASE":
        base, bound = detail
        if base == "string":
            return t.bounded_str[bound] if bound else str
        return _BASE[base]
    if kind == "NAME":
        return idl_class(detail)
    inner, length = detail
    inner_type = _field_type(inner)
    if kind == "ARRAY":
        return t.array[inner_type, length]
    return t.sequence[inner_type, length] if length else t.sequence[inner_type]


def _class_name(dds_name: str) -> str:
    return dds_name.replace("::", "_")


@functools.cache
def idl_class(ros_name: str) -> type[IdlStruct]:
    """The IDL struct for a message type (nested types resolved recursively)."""
    ros_name = normalize_type_name(ros_name)
    _, field_defs = typestore().fielddefs[ros_name]
    fields = {name: _field_type(defn) for name, defn in field_defs}
    dds_name = dds_type_name(ros_name)
    return make_idl_struct(_class_name(dds_name), dds_name, fields)


@functools.cache
def service_idl_class(ros_name: str) -> type[IdlStruct]:
    """The IDL struct for a service request or response, with rmw_cyclonedds's header."""
    ros_name = normalize_type_name(ros_name)
    _, field_defs = typestore().fielddefs[ros_name]
    fields = dict(SERVICE_HEADER_FIELDS)
    fields.update({name: _field_type(defn) for name, defn in field_defs})
    dds_name = dds_type_name(ros_name)
    return make_idl_struct(_class_name(dds_name) + "_wire", dds_name, fields)
