"""ROS 2 parameters: ``<node>: ros__parameters: {...}`` YAML files and ``-p name:=value``.

Values are type-checked against the declared default when a node declares them,
and every error names the parameter (and the file it came from).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import os
import types
import typing
from pathlib import Path
from typing import Any

import yaml


class ParameterError(ValueError):
    """A parameter file or value that cannot be used; the message names the key."""


_ALLOWED_SCALARS = (bool, int, float, str)


@dataclasses.dataclass(frozen=True)
class ParameterValue:
    value: Any
    origin: str  # file path or "command line", for error messages


def _flatten(prefix: str, tree: dict, origin: str, out: dict[str, ParameterValue]) -> None:
    for key, value in tree.items():
        if not isinstance(key, str):
            raise ParameterError(
                f"{origin}: parameter key {key!r} under {prefix or 'ros__parameters'!r} is not a string"
            )
        name = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict):
            _flatten(name, value, origin, out)
        else:
            _check_value(name, value, origin)
            out[name] = ParameterValue(value, origin)


def _check_value(name: str, value: Any, origin: str) -> None:
    if isinstance(value, _ALLOWED_SCALARS):
        return
    if isinstance(value, list):
        kinds = {type(v) for v in value}
        if not kinds or (len(kinds) == 1 and kinds <= set(_ALLOWED_SCALARS)) or kinds == {int, float}:
            return
    raise ParameterError(
        f"{origin}: parameter {name!r} has unsupported value {value!r} "
        "(use bool, int, float, string or a list of one of them)"
    )


def _node_matches(pattern: str, node_fqn: str) -> bool:
    pattern = pattern if pattern.startswith("/") or pattern == "**" else "/**/" + pattern
    if pattern in ("/**", "**"):
        return True
    return fnmatch.fnmatchcase(node_fqn, pattern.replace("/**/", "/*")) or fnmatch.fnmatchcase(node_fqn, pattern)


def load_parameter_file(path: str | Path, node_fqn: str) -> dict[str, ParameterValue]:
    """Parameters for one node (fully qualified name) from a ROS 2 parameter YAML file."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ParameterError(f"cannot read parameter file {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ParameterError(f"{path}: not valid YAML: {exc}") from exc
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ParameterError(f"{path}: top level must map node names to 'ros__parameters'")
    out: dict[str, ParameterValue] = {}
    # Wildcards first so a node's own entry wins, as in rcl.
    for pattern in sorted(doc, key=lambda p: "*" not in str(p)):
        body = doc[pattern]
        if not _node_matches(str(pattern), node_fqn):
            continue
        if not isinstance(body, dict) or "ros__parameters" not in body:
            raise ParameterError(f"{path}: entry {pattern!r} must contain 'ros__parameters'")
        params = body["ros__parameters"] or {}
        if not isinstance(params, dict):
            raise ParameterError(f"{path}: {pattern}.ros__parameters must be a mapping")
        _flatten("", params, str(path), out)
    return out


def parse_override(text: str) -> tuple[str, ParameterValue]:
    """``name:=value`` (value parsed as YAML, as ``ros2 run ... -p`` does)."""
    if ":=" not in text:
        raise ParameterError(f"parameter override {text!r} must look like name:=value")
    name, raw = text.split(":=", 1)
    try:
        value = yaml.safe_load(raw) if raw else ""
    except yaml.YAMLError as exc:
        raise ParameterError(f"parameter {name!r}: cannot parse value {raw!r}: {exc}") from exc
    _check_value(name, value, "command line")
    return name, ParameterValue(value, "command line")


def coerce(name: str, value: ParameterValue, default: Any) -> Any:
    """Check a given value against a declared default's type; ints widen to floats."""
    want = type(default)
    got = value.value
    if default is None or (isinstance(got, want) and not (want is int and isinstance(got, bool))):
        return got
    if want is float and isinstance(got, int) and not isinstance(got, bool):
        return float(got)
    if want is list and isinstance(got, list):
        return got
    if isinstance(default, (list, tuple)) and isinstance(got, list):
        return type(default)(got)
    raise ParameterError(
        f"{value.origin}: parameter {name!r} must be {want.__name__}, got {type(got).__name__} {got!r}"
    )


def _default_of(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    raise ParameterError(f"config field {field.name!r} needs a default to be a parameter")


def dataclass_parameters(cls: type, prefix: str = "") -> dict[str, Any]:
    """Flatten a (nested) dataclass's defaults into ``{"a.b": default}``."""
    out: dict[str, Any] = {}
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        name = f"{prefix}{field.name}"
        hint = hints[field.name]
        if dataclasses.is_dataclass(hint):
            out.update(dataclass_parameters(hint, name + "."))
        else:
            default = _default_of(field)
            out[name] = list(default) if isinstance(default, tuple) else default
    return out


def build_dataclass(cls: type, values: dict[str, Any], prefix: str = "") -> Any:
    """Rebuild a (nested) dataclass from flat parameter values."""
    kwargs = {}
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        hint = hints[field.name]
        name = f"{prefix}{field.name}"
        if dataclasses.is_dataclass(hint):
            kwargs[field.name] = build_dataclass(hint, values, name + ".")
        else:
            value = values[name]
            origin = typing.get_origin(hint)
            if origin is tuple or (isinstance(hint, types.GenericAlias) and hint.__origin__ is tuple):
                value = tuple(value)
            kwargs[field.name] = value
    return cls(**kwargs)


def read_secret(path: str, env_var: str, environ: typing.Mapping[str, str] | None = None) -> str:
    """A secret (a token, say) from the file ``path`` names, else from the environment variable
    ``env_var``; "" when neither is set. Secrets never go into parameters: ROS parameters are
    readable by anyone on the graph (``ros2 param get``) and command lines by anyone on the machine.

    A file must be readable and non-empty (its trailing newline is dropped); ParameterError otherwise.
    """
    if path:
        try:
            secret = Path(path).read_text().strip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            why = getattr(exc, "strerror", None) or exc
            raise ParameterError(f"cannot read the secret file {path}: {why}") from exc
        if not secret:
            raise ParameterError(f"the secret file {path} is empty")
        return secret
    return (os.environ if environ is None else environ).get(env_var, "")


def secret_file_exposed(path: str) -> bool:
    """Whether users other than the owner may read the file (mode bits for group or others)."""
    try:
        return bool(Path(path).stat().st_mode & 0o044)
    except OSError:
        return False
