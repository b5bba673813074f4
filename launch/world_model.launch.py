"""World-model graph: the learned Push-T behind the robot's topics, and a monitor of its camera.

ros2 launch hiwm world_model.launch.py checkpoint:=/path/to/ckpt        # with ROS 2
hiwm launch world_model checkpoint:=/path/to/ckpt clock:=realtime       # without
"""

from hiwm.launch import Arg, ArgRef, Graph, NodeSpec, to_launch_description

GRAPH = Graph(
    name="world_model",
    description="world_model answers robot/command with generated camera/image, task state and snapshot handles",
    args=[
        Arg("checkpoint", "", "checkpoint directory from `hiwm train world-model`"),
        Arg(
            "clock",
            "realtime",
            "realtime (rate_hz ticks) or lockstep (one step per command row)",
            choices=("realtime", "lockstep"),
        ),
        Arg("rate_hz", 10.0, "control rate in real time"),
        Arg("namespace", "", "namespace of the graph (empty: the root)"),
    ],
    nodes=[
        NodeSpec(
            "world_model",
            name="world_model",
            namespace=ArgRef("namespace"),
            parameters={"checkpoint": ArgRef("checkpoint"), "clock": ArgRef("clock"), "rate_hz": ArgRef("rate_hz")},
            required=True,
        ),
        NodeSpec(
            "image_monitor",
            name="camera_monitor",
            namespace=ArgRef("namespace"),
            parameters={"qos": "default", "report_period_s": 5.0},
            remappings={"image": "camera/image"},
        ),
    ],
)


def generate_launch_description():
    return to_launch_description(GRAPH)
