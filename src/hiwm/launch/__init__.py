"""Launch graphs: one description per graph for ``ros2 launch hiwm ...`` and ``hiwm launch ...``."""

from hiwm.launch.graph import AllOf, Arg, ArgRef, Graph, GraphError, IfArg, NodeSpec, Requires
from hiwm.launch.ros import to_launch_description

__all__ = ["AllOf", "Arg", "ArgRef", "Graph", "GraphError", "IfArg", "NodeSpec", "Requires", "to_launch_description"]
