"""Test graph for the supervisor: a camera that respawns or is required (arg `mode`), and a bystander."""

from hiwm.launch import Arg, ArgRef, Graph, IfArg, NodeSpec, to_launch_description

GRAPH = Graph(
    name="supervised",
    description="respawn and required-node behaviour of hiwm launch",
    args=[
        Arg(
            "mode",
            "respawn",
            "respawn: the camera comes back; required: its exit ends the graph",
            ["respawn", "required"],
        ),
        Arg("rate_hz", 10.0, "camera rate (a bad value makes the camera exit with code 2)"),
    ],
    nodes=[
        NodeSpec("pattern_camera", "camera", respawn=True, respawn_delay=0.3, condition=IfArg("mode", "respawn")),
        NodeSpec(
            "pattern_camera",
            "camera",
            parameters={"rate_hz": ArgRef("rate_hz")},
            required=True,
            condition=IfArg("mode", "required"),
        ),
        NodeSpec("image_monitor", "monitor", remappings={"image": "/other_image"}),
    ],
)


def generate_launch_description():
    return to_launch_description(GRAPH)
