"""The Push-T robot (real gym-pusht physics behind a robot's topics), optionally with the recorder.

ros2 launch hiwm pusht.launch.py clock:=lockstep record:=true dataset:=data/session
hiwm launch pusht clock:=lockstep record:=true dataset:=data/session
"""

from hiwm.launch import Arg, ArgRef, Graph, IfArg, NodeSpec, to_launch_description

NS = ArgRef("namespace")

GRAPH = Graph(
    name="pusht",
    description="pusht_robot serves camera/image, robot/state, task/state, task/status, robot/command, robot/reset; "
    "recorder (record:=true) writes a LeRobot v3 dataset and an MCAP bag",
    args=[
        Arg("namespace", "", "namespace of the robot and recorder (empty: the root)"),
        Arg(
            "clock",
            "realtime",
            "realtime: control ticks at rate_hz; lockstep: one step per command",
            ["realtime", "lockstep"],
        ),
        Arg("rate_hz", 10.0, "control rate in real time"),
        Arg("image_size", 96, "camera image size in pixels (square)"),
        Arg("seed", -1, "first episode's seed (< 0: random)"),
        Arg("record", False, "also run the recorder"),
        Arg("dataset", "data/recorded", "LeRobot v3 dataset the recorder creates or appends to"),
        Arg("bag", "bags/pusht-{time}", "rosbag2 MCAP folder the recorder creates ({time}: a timestamp)"),
    ],
    nodes=[
        NodeSpec(
            "pusht_robot",
            name="pusht_robot",
            namespace=NS,
            parameters={
                "clock": ArgRef("clock"),
                "rate_hz": ArgRef("rate_hz"),
                "image_size": ArgRef("image_size"),
                "seed": ArgRef("seed"),
            },
            required=True,
        ),
        NodeSpec(
            "recorder",
            name="recorder",
            namespace=NS,
            parameters={"dataset": ArgRef("dataset"), "bag": ArgRef("bag"), "image_size": ArgRef("image_size")},
            condition=IfArg("record", "true"),
        ),
    ],
)


def generate_launch_description():
    return to_launch_description(GRAPH)
