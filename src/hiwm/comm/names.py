"""ROS 2 name resolution and the rmw_cyclonedds mapping of names onto DDS topics."""

from __future__ import annotations

import re

_TOKEN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class InvalidName(ValueError):
    """A node, namespace, topic or service name that ROS 2 would reject."""


def _check_tokens(name: str, what: str) -> None:
    for token in name.strip("/").split("/"):
        if token and not _TOKEN.match(token):
            raise InvalidName(f"invalid {what} {name!r}: token {token!r} must match [A-Za-z_][A-Za-z0-9_]*")
    if "//" in name:
        raise InvalidName(f"invalid {what} {name!r}: empty token")


def normalize_namespace(namespace: str) -> str:
    """``''``, ``'ns'`` or ``'/ns/'`` -> ``'/'`` or ``'/ns'``."""
    namespace = "/" + namespace.strip("/") if namespace.strip("/") else "/"
    _check_tokens(namespace, "namespace")
    return namespace


def node_fqn(name: str, namespace: str) -> str:
    if not _TOKEN.match(name):
        raise InvalidName(f"invalid node name {name!r}: must match [A-Za-z_][A-Za-z0-9_]*")
    namespace = normalize_namespace(namespace)
    return f"{namespace.rstrip('/')}/{name}"


def resolve(name: str, node_name: str, namespace: str) -> str:
    """Expand a topic or service name: absolute, ``~/private`` or relative to the namespace."""
    if not name:
        raise InvalidName("empty topic or service name")
    if name.startswith("~"):
        name = node_fqn(node_name, namespace) + name[1:]
    elif not name.startswith("/"):
        name = f"{normalize_namespace(namespace).rstrip('/')}/{name}"
    if name.endswith("/") and name != "/":
        raise InvalidName(f"invalid topic name {name!r}: trailing '/'")
    _check_tokens(name, "topic name")
    return name


def dds_topic(fqn: str) -> str:
    return "rt" + fqn


def dds_request_topic(fqn: str) -> str:
    return "rq" + fqn + "Request"


def dds_reply_topic(fqn: str) -> str:
    return "rr" + fqn + "Reply"


def ros_name_of_dds_topic(dds_name: str) -> tuple[str, str] | None:
    """``rt/x`` -> (``topic``, ``/x``); ``rq/xRequest`` -> (``service``, ``/x``); else None."""
    if dds_name.startswith("rt/"):
        return "topic", dds_name[2:]
    if dds_name.startswith("rq/") and dds_name.endswith("Request"):
        return "service", dds_name[2 : -len("Request")]
    if dds_name.startswith("rr/") and dds_name.endswith("Reply"):
        return "service", dds_name[2 : -len("Reply")]
    return None
