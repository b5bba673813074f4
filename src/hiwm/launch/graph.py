"""One description of a node graph, read by ``ros2 launch`` and ``hiwm launch`` alike.

Plain dataclasses, importable without ROS. A launch file ``launch/<name>.launch.py``
defines ``GRAPH = Graph(...)``; :mod:`hiwm.launch.ros` turns it into a ROS 2
``LaunchDescription`` and :mod:`hiwm.launch.supervisor` runs it as plain processes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

Scalar = str | int | float | bool

#: Seconds a node gets after SIGINT to finish (close its dataset, bag or store) before SIGTERM, under
#: ``hiwm launch`` and ``ros2 launch`` alike; a torch node on a busy 2-core machine needs more than 5.
STOP_GRACE_S = 15.0

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NAMESPACE = re.compile(r"^/?([A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*)?/?$")


class GraphError(ValueError):
    """A graph description or its launch arguments are wrong."""


def arg_text(value: Scalar) -> str:
    """A launch-argument value as text, the form ROS launch configurations hold."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass(frozen=True)
class Arg:
    """A launch argument (``name:=value`` on the command line)."""

    name: str
    default: Scalar
    description: str = ""
    choices: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise GraphError(f"launch argument name {self.name!r} is not a valid identifier")
        if self.choices is not None:
            object.__setattr__(self, "choices", tuple(arg_text(c) for c in self.choices))
            if self.default_text not in self.choices:
                raise GraphError(
                    f"launch argument {self.name!r}: default {self.default_text!r} is not one of {list(self.choices)}"
                )

    @property
    def default_text(self) -> str:
        return arg_text(self.default)

    @property
    def value_type(self) -> type | None:
        """The parameter type a value of this argument has (the default's), or None for text."""
        return None if isinstance(self.default, str) else type(self.default)

    def check(self, value: str) -> str:
        """``value`` if it is acceptable for this argument; GraphError otherwise."""
        if self.choices is not None and value not in self.choices:
            raise GraphError(f"launch argument {self.name!r}: {value!r} is not one of {list(self.choices)}")
        return value


@dataclass(frozen=True)
class ArgRef:
    """A value taken from a launch argument (a ``LaunchConfiguration`` under ROS)."""

    name: str


@dataclass(frozen=True)
class IfArg:
    """Run a node only when launch argument ``arg`` equals ``value`` (as text)."""

    arg: str
    value: Scalar

    @property
    def value_text(self) -> str:
        return arg_text(self.value)

    def holds(self, args: dict[str, str]) -> bool:
        return args[self.arg] == self.value_text

    @property
    def terms(self) -> tuple[IfArg, ...]:
        return (self,)


@dataclass(frozen=True)
class AllOf:
    """Run a node only when every one of these argument conditions holds."""

    terms: tuple[IfArg, ...]

    def __init__(self, *terms: IfArg) -> None:
        if not terms:
            raise GraphError("AllOf needs at least one condition")
        object.__setattr__(self, "terms", tuple(terms))

    def holds(self, args: dict[str, str]) -> bool:
        return all(t.holds(args) for t in self.terms)


@dataclass(frozen=True)
class Requires:
    """Launch arguments that go together: whenever ``when`` holds, ``then`` must hold too.

    Checked before any node starts (``hiwm launch`` and ``ros2 launch`` alike); otherwise the
    launch fails with ``message``, which should say what to add."""

    when: IfArg | AllOf
    then: IfArg
    message: str

    def check(self, args: dict[str, str]) -> None:
        if self.when.holds(args) and not self.then.holds(args):
            given = ", ".join(f"{t.arg}:={args[t.arg]}" for t in self.when.terms)
            raise GraphError(f"{given} needs {self.then.arg}:={self.then.value_text}, got {args[self.then.arg]!r}: "
                             f"{self.message}")  # fmt: skip


@dataclass(frozen=True)
class NodeSpec:
    """One node process: ``hiwm.nodes.<executable>`` (console script ``<executable>``)."""

    executable: str
    name: str
    namespace: str | ArgRef = ""
    parameters: dict[str, Scalar | list | ArgRef] = field(default_factory=dict)
    param_files: list[str] = field(default_factory=list)  # relative to the hiwm share folder
    remappings: dict[str, str] = field(default_factory=dict)
    condition: IfArg | AllOf | None = None
    respawn: bool = False
    respawn_delay: float = 1.0
    required: bool = False  # its exit shuts the whole graph down

    def arg_refs(self) -> list[str]:
        """Names of the launch arguments this node reads."""
        refs = [v.name for v in self.parameters.values() if isinstance(v, ArgRef)]
        if isinstance(self.namespace, ArgRef):
            refs.append(self.namespace.name)
        if self.condition is not None:
            refs += [t.arg for t in self.condition.terms]
        return refs


@dataclass(frozen=True)
class Graph:
    """A named set of launch arguments and nodes."""

    name: str
    description: str
    args: list[Arg] = field(default_factory=list)
    nodes: list[NodeSpec] = field(default_factory=list)
    requires: list[Requires] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.validate()

    def arg(self, name: str) -> Arg:
        for a in self.args:
            if a.name == name:
                return a
        raise GraphError(f"graph {self.name!r} has no launch argument {name!r}; it has {[a.name for a in self.args]}")

    def validate(self) -> None:
        """Raise GraphError on unknown argument references, duplicate nodes, bad values."""
        where = f"graph {self.name!r}"
        seen_args = set()
        for a in self.args:
            if a.name in seen_args:
                raise GraphError(f"{where}: launch argument {a.name!r} declared twice")
            seen_args.add(a.name)
        if not self.nodes:
            raise GraphError(f"{where}: no nodes")
        for node in self.nodes:
            label = f"{where}, node {node.name!r}"
            if not _NAME.match(node.executable):
                raise GraphError(f"{label}: executable {node.executable!r} is not a valid module name")
            if not _NAME.match(node.name):
                raise GraphError(f"{label}: node name is not a valid ROS name")
            if isinstance(node.namespace, str) and not _NAMESPACE.match(node.namespace):
                raise GraphError(f"{label}: namespace {node.namespace!r} is not a valid ROS namespace")
            for ref in node.arg_refs():
                if ref not in seen_args:
                    raise GraphError(f"{label}: uses launch argument {ref!r}, which is not declared")
            for term in node.condition.terms if node.condition is not None else ():
                choices = self.arg(term.arg).choices
                if choices is not None and term.value_text not in choices:
                    raise GraphError(
                        f"{label}: condition {term.arg}=={term.value_text!r} can never hold; "
                        f"choices are {list(choices)}"
                    )
            if node.respawn and node.required:
                raise GraphError(f"{label}: a node cannot be both required and respawned")
            if node.respawn_delay < 0:
                raise GraphError(f"{label}: respawn_delay must be >= 0, got {node.respawn_delay}")
            for path in node.param_files:
                if path.startswith("/") or ".." in path.split("/"):
                    raise GraphError(f"{label}: param file {path!r} must be relative to the hiwm share folder")
        for req in self.requires:
            for term in (*req.when.terms, req.then):
                if term.arg not in seen_args:
                    raise GraphError(f"{where}: a requirement uses launch argument {term.arg!r}, which is not declared")
                choices = self.arg(term.arg).choices
                if choices is not None and term.value_text not in choices:
                    raise GraphError(f"{where}: requirement {term.arg}=={term.value_text!r} can never hold; "
                                     f"choices are {list(choices)}")  # fmt: skip
        # Node names must be unique per namespace; a namespace from an argument is checked once resolved.
        keys = [(n.namespace if isinstance(n.namespace, str) else f"${n.namespace.name}", n.name) for n in self.nodes]
        for key in set(keys):
            twins = [n for n, k in zip(self.nodes, keys, strict=True) if k == key]
            if len(twins) > 1 and not _exclusive([t.condition for t in twins]):
                raise GraphError(f"{where}: node name {key[1]!r} is used twice in namespace {key[0] or '/'!r}")

    def resolve_args(self, overrides: dict[str, str]) -> dict[str, str]:
        """Every argument's value: defaults, then ``overrides`` (unknown names, bad choices or an unmet
        requirement raise)."""
        unknown = sorted(set(overrides) - {a.name for a in self.args})
        if unknown:
            listing = ", ".join(a.name for a in self.args) or "none"
            raise GraphError(f"graph {self.name!r} has no launch argument(s) {unknown}; its arguments: {listing}")
        args = {a.name: a.check(overrides[a.name]) if a.name in overrides else a.default_text for a in self.args}
        self.check_requirements(args)
        return args

    def check_requirements(self, args: dict[str, str]) -> None:
        """GraphError naming the first unmet :class:`Requires` for resolved ``args``."""
        for req in self.requires:
            try:
                req.check(args)
            except GraphError as exc:
                raise GraphError(f"graph {self.name!r}: {exc}") from None

    def active_nodes(self, args: dict[str, str]) -> list[NodeSpec]:
        """The nodes whose condition holds for resolved ``args``."""
        return [n for n in self.nodes if n.condition is None or n.condition.holds(args)]


def _exclusive(conditions: list[IfArg | AllOf | None]) -> bool:
    """True when at most one of these conditions can hold at a time: every two of them require
    different values of some argument (``robot:=a`` and ``world:=real, robot:=b``, say)."""
    if any(c is None for c in conditions):
        return False
    terms = [{t.arg: t.value_text for t in c.terms} for c in conditions]
    return all(any(a[k] != b[k] for k in a.keys() & b.keys()) for i, a in enumerate(terms) for b in terms[i + 1 :])


def parse_overrides(items: list[str]) -> dict[str, str]:
    """``["a:=1", "b:=x"]`` -> ``{"a": "1", "b": "x"}``; GraphError on anything else."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition(":=")
        if not sep or not name:
            raise GraphError(f"launch argument {item!r} must look like name:=value")
        out[name] = value
    return out
