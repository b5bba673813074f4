"""A :class:`~hiwm.launch.graph.Graph` as a ROS 2 ``LaunchDescription`` (Humble and later).

``launch`` and ``launch_ros`` are imported inside :func:`to_launch_description` only, so
launch files (and ``hiwm launch``) load where ROS 2 is not installed.
"""

from __future__ import annotations

from typing import Any

from hiwm.launch.graph import STOP_GRACE_S, AllOf, ArgRef, Graph, IfArg, NodeSpec

PACKAGE = "hiwm"


def to_launch_description(graph: Graph) -> Any:
    """Arg -> DeclareLaunchArgument, NodeSpec -> launch_ros Node, required -> on_exit Shutdown; the graph's
    requirements are checked (an OpaqueFunction) before any node starts."""
    from launch.actions import DeclareLaunchArgument, OpaqueFunction

    from launch import LaunchDescription

    graph.validate()
    entities: list[Any] = []
    for arg in graph.args:
        extra = {"choices": list(arg.choices)} if arg.choices is not None else {}
        entities.append(
            DeclareLaunchArgument(arg.name, default_value=arg.default_text, description=arg.description, **extra)
        )
    if graph.requires:

        def check(context: Any) -> list:
            args = {a.name: context.launch_configurations.get(a.name, a.default_text) for a in graph.args}
            graph.check_requirements(args)  # a GraphError ends `ros2 launch` with its message
            return []

        entities.append(OpaqueFunction(function=check))
    entities += [_node(graph, spec) for spec in graph.nodes]
    return LaunchDescription(entities)


def _node(graph: Graph, spec: NodeSpec) -> Any:
    from launch.actions import Shutdown
    from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
    from launch_ros.actions import Node
    from launch_ros.substitutions import FindPackageShare

    # Files first, then values: later entries win, as in `hiwm launch` (-p after --params-file).
    parameters: list[Any] = [
        PathJoinSubstitution([FindPackageShare(PACKAGE), *path.split("/")]) for path in spec.param_files
    ]
    if spec.parameters:
        parameters.append({key: _value(graph, value) for key, value in spec.parameters.items()})
    namespace = LaunchConfiguration(spec.namespace.name) if isinstance(spec.namespace, ArgRef) else spec.namespace
    kwargs: dict[str, Any] = {
        "package": PACKAGE,
        "executable": spec.executable,
        "name": spec.name,
        "namespace": namespace,
        "parameters": parameters,
        "remappings": list(spec.remappings.items()),
        "output": "screen",
        "respawn": spec.respawn,
        "respawn_delay": spec.respawn_delay,
        "sigterm_timeout": str(STOP_GRACE_S),  # launch's default (5 s) cuts a slow clean stop short
    }
    if spec.condition is not None:
        kwargs["condition"] = _condition(spec.condition)
    if spec.required:
        kwargs["on_exit"] = Shutdown(reason=f"required node {spec.name} exited")
    return Node(**kwargs)


def _value(graph: Graph, value: Any) -> Any:
    """Literals pass through; an ArgRef becomes a LaunchConfiguration typed like its argument's default."""
    if not isinstance(value, ArgRef):
        return value
    from launch.substitutions import LaunchConfiguration
    from launch_ros.parameter_descriptions import ParameterValue

    return ParameterValue(LaunchConfiguration(value.name), value_type=graph.arg(value.name).value_type or str)


def _condition(cond: IfArg | AllOf) -> Any:
    from launch.conditions import IfCondition
    from launch.substitutions import LaunchConfiguration, PythonExpression

    # PythonExpression rather than LaunchConfigurationEquals, which Jazzy deprecates.
    parts: list[Any] = []
    for i, term in enumerate(cond.terms):
        parts += [" and " if i else "", "'", LaunchConfiguration(term.arg), "' == ", repr(term.value_text)]
    return IfCondition(PythonExpression(parts))
