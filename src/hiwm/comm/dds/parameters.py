"""The parameter services every rclpy node serves, for DDS-backend nodes.

``~/list_parameters``, ``~/get_parameters``, ``~/set_parameters``,
``~/set_parameters_atomically``, ``~/describe_parameters`` and ``~/get_parameter_types``
answer as rclpy's do (so ``ros2 param list/get/set/describe`` work), over the node's
declared parameters; a successful set is announced on ``/parameter_events``.
A value keeps the type it was declared with: a wrong type is refused with a reason,
except that integers widen to doubles (as parameter files do).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from hiwm.comm.interfaces import new_message
from hiwm.comm.params import ParameterError
from hiwm.comm.qos import QoSProfile

if TYPE_CHECKING:
    from hiwm.comm.node import Node

# rcl_interfaces/msg/ParameterType
NOT_SET, BOOL, INTEGER, DOUBLE, STRING, BYTE_ARRAY, BOOL_ARRAY, INTEGER_ARRAY, DOUBLE_ARRAY, STRING_ARRAY = range(10)
_TYPE_NAMES = [
    "NOT_SET",
    "BOOL",
    "INTEGER",
    "DOUBLE",
    "STRING",
    "BYTE_ARRAY",
    "BOOL_ARRAY",
    "INTEGER_ARRAY",
    "DOUBLE_ARRAY",
    "STRING_ARRAY",
]
_ARRAYS = {BYTE_ARRAY, BOOL_ARRAY, INTEGER_ARRAY, DOUBLE_ARRAY, STRING_ARRAY}
_FIELDS = {
    BOOL: "bool_value",
    INTEGER: "integer_value",
    DOUBLE: "double_value",
    STRING: "string_value",
    BYTE_ARRAY: "byte_array_value",
    BOOL_ARRAY: "bool_array_value",
    INTEGER_ARRAY: "integer_array_value",
    DOUBLE_ARRAY: "double_array_value",
    STRING_ARRAY: "string_array_value",
}
_DTYPES = {BYTE_ARRAY: np.uint8, BOOL_ARRAY: np.bool_, INTEGER_ARRAY: np.int64, DOUBLE_ARRAY: np.float64}
#: rclpy's qos_profile_parameter_events: reliable, volatile, keep last 1000.
PARAMETER_EVENTS = QoSProfile(depth=1000)
_SERVICES = (
    "describe_parameters",
    "get_parameter_types",
    "get_parameters",
    "list_parameters",
    "set_parameters",
    "set_parameters_atomically",
)


def parameter_type(value: Any) -> int:
    """The ROS parameter type of a Python value; an empty list counts as a byte array, as in rclpy."""
    if value is None:
        return NOT_SET
    if isinstance(value, bool):
        return BOOL
    if isinstance(value, int):
        return INTEGER
    if isinstance(value, float):
        return DOUBLE
    if isinstance(value, str):
        return STRING
    if isinstance(value, (list, tuple)):
        if not value or all(isinstance(v, bytes) for v in value):
            return BYTE_ARRAY
        if all(isinstance(v, bool) for v in value):
            return BOOL_ARRAY
        if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return INTEGER_ARRAY
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            return DOUBLE_ARRAY
        if all(isinstance(v, str) for v in value):
            return STRING_ARRAY
    raise ParameterError(f"value {value!r} has no ROS parameter type")


def to_msg(value: Any) -> Any:
    """A Python value as ``rcl_interfaces/msg/ParameterValue``."""
    kind = parameter_type(value)
    fields: dict[str, Any] = {"type": kind}
    if kind in _DTYPES:
        fields[_FIELDS[kind]] = np.asarray([float(v) if kind == DOUBLE_ARRAY else v for v in value], _DTYPES[kind])
    elif kind == STRING_ARRAY:
        fields[_FIELDS[kind]] = list(value)
    elif kind != NOT_SET:
        fields[_FIELDS[kind]] = value
    return new_message("rcl_interfaces/msg/ParameterValue", **fields)


def from_msg(msg: Any) -> Any:
    """``rcl_interfaces/msg/ParameterValue`` as a Python value (arrays as lists)."""
    kind = int(msg.type)
    if kind not in _FIELDS:
        if kind == NOT_SET:
            return None
        raise ParameterError(f"unknown parameter type {kind}")
    value = getattr(msg, _FIELDS[kind])
    if kind in _ARRAYS:
        return [v.item() if hasattr(v, "item") else v for v in value]
    return value.item() if hasattr(value, "item") else value


def _checked(node: Node, name: str, msg: Any) -> Any:
    """The value to store for a set request, or ParameterError with rclpy's reason."""
    default = node.parameter_default(name)
    want, got = parameter_type(node.get_parameter(name) if default is None else default), int(msg.type)
    value = from_msg(msg)
    if default is None or got == want:
        return value
    if want == DOUBLE and got == INTEGER:
        return float(value)
    if want == DOUBLE_ARRAY and got == INTEGER_ARRAY:
        return [float(v) for v in value]
    if isinstance(default, list) and not default and got in _ARRAYS:
        return value  # declared empty: any array type is taken
    raise ParameterError(f"Wrong parameter type, expected 'Type.{_TYPE_NAMES[want]}' got 'Type.{_TYPE_NAMES[got]}'")


def _result(reason: str | None) -> Any:
    return new_message("rcl_interfaces/msg/SetParametersResult", successful=reason is None, reason=reason or "")


def _undeclared(node: Node, names: Any) -> bool:
    declared = node.parameters()
    return any(name not in declared for name in names)


class ParameterServices:
    """Serves a node's parameters on its ``~/...`` parameter services."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.events = node.create_publisher("rcl_interfaces/msg/ParameterEvent", "/parameter_events", PARAMETER_EVENTS)
        handlers = {
            "describe_parameters": self._describe,
            "get_parameter_types": self._types,
            "get_parameters": self._get,
            "list_parameters": self._list,
            "set_parameters": self._set,
            "set_parameters_atomically": self._set_atomically,
        }
        for name in _SERVICES:
            srv_type = "rcl_interfaces/srv/" + "".join(p.capitalize() for p in name.split("_"))
            node.create_service(srv_type, f"~/{name}", handlers[name])

    def _get(self, request: Any) -> Any:
        # rclpy answers an empty list as soon as one name is not declared.
        values = (
            [] if _undeclared(self.node, request.names) else [to_msg(self.node.get_parameter(n)) for n in request.names]
        )
        return new_message("rcl_interfaces/srv/GetParameters_Response", values=values)

    def _types(self, request: Any) -> Any:
        names = [] if _undeclared(self.node, request.names) else request.names
        types = np.asarray([parameter_type(self.node.get_parameter(n)) for n in names], np.uint8)
        return new_message("rcl_interfaces/srv/GetParameterTypes_Response", types=types)

    def _describe(self, request: Any) -> Any:
        names = [] if _undeclared(self.node, request.names) else request.names
        descriptors = [
            new_message(
                "rcl_interfaces/msg/ParameterDescriptor",
                name=n,
                type=parameter_type(self.node.get_parameter(n)),
                read_only=self.node.is_read_only(n),
            )
            for n in names
        ]
        return new_message("rcl_interfaces/srv/DescribeParameters_Response", descriptors=descriptors)

    def _list(self, request: Any) -> Any:
        prefixes, depth = list(request.prefixes), int(request.depth)
        recursive = not prefixes and depth == 0

        def shallow(name: str) -> bool:
            return name.count(".") < depth

        names: list[str] = []
        found_prefixes: list[str] = []
        for name in self.node.parameters():
            if not recursive and not (not prefixes and shallow(name)):
                under = any(
                    name == p or (name.startswith(p + ".") and (depth == 0 or shallow(name[len(p) + 1 :])))
                    for p in prefixes
                )
                if not under:
                    continue
            names.append(name)
            if "." in name and (prefix := name.rsplit(".", 1)[0]) not in found_prefixes:
                found_prefixes.append(prefix)
        result = new_message("rcl_interfaces/msg/ListParametersResult", names=names, prefixes=found_prefixes)
        return new_message("rcl_interfaces/srv/ListParameters_Response", result=result)

    def _apply(self, parameters: list) -> str | None:
        """Set all or none; None on success, else the reason."""
        try:
            changes = {}
            for p in parameters:
                if p.name not in self.node.parameters():
                    raise ParameterError(f"Invalid access to undeclared parameter(s): [{p.name!r}]")
                changes[p.name] = _checked(self.node, p.name, p.value)
            self.node.set_parameters(changes, origin="set_parameters service")
        except ParameterError as exc:
            return str(exc)
        self._announce(changes)
        return None

    def _announce(self, changes: dict[str, Any]) -> None:
        changed = [new_message("rcl_interfaces/msg/Parameter", name=k, value=to_msg(v)) for k, v in changes.items()]
        event = new_message(
            "rcl_interfaces/msg/ParameterEvent", stamp=self.node.stamp(), node=self.node.fqn, changed_parameters=changed
        )
        self.events.publish(event)
        self.node.logger.info(f"parameters set: {changes}")

    def _set(self, request: Any) -> Any:
        results = [_result(self._apply([p])) for p in request.parameters]
        return new_message("rcl_interfaces/srv/SetParameters_Response", results=results)

    def _set_atomically(self, request: Any) -> Any:
        return new_message(
            "rcl_interfaces/srv/SetParametersAtomically_Response", result=_result(self._apply(list(request.parameters)))
        )
