"""Demo graph: a test-pattern camera and a monitor that reports what it receives.

ros2 launch hiwm demo.launch.py rate_hz:=20.0     # with ROS 2
hiwm launch demo rate_hz:=20.0                    # without
"""

from hiwm.launch import Arg, ArgRef, Graph, NodeSpec, to_launch_description

SIZE = {"width": ArgRef("width"), "height": ArgRef("height")}

GRAPH = Graph(
    name="demo",
    description="pattern_camera publishes `image`; image_monitor reports its rate and latency",
    args=[
        Arg("width", 96, "image width in pixels"),
        Arg("height", 96, "image height in pixels"),
        Arg("rate_hz", 10.0, "camera frame rate"),
        Arg("namespace", "", "namespace of both nodes (empty: the root)"),
    ],
    nodes=[
        NodeSpec(
            "pattern_camera",
            name="pattern_camera",
            namespace=ArgRef("namespace"),
            parameters={**SIZE, "rate_hz": ArgRef("rate_hz")},
        ),
        NodeSpec(
            "image_monitor",
            name="image_monitor",
            namespace=ArgRef("namespace"),
            parameters=SIZE,
            param_files=["config/demo.yaml"],
        ),
    ],
)


def generate_launch_description():
    return to_launch_description(GRAPH)
