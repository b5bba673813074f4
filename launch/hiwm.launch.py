"""One policy, two worlds: the Hi-WM graph with the world model or the real robot behind the same topics.

ros2 launch hiwm hiwm.launch.py world:=model world_model:=runs/wm policy:=runs/act       # with ROS 2
hiwm launch hiwm world:=real robot:=pusht policy:=runs/act                             # without

The policy server, arbiter, teleop bridge, recorder and branch cache are the same nodes with the same
parameters in every world; only the observation and actuation side changes:

  world:=model                 world_model (generated frames, probe state, snapshot handles)
  world:=real robot:=pusht     pusht_robot (gym-pusht physics)
  world:=real robot:=so101     arm_robot (the SO-101 pick task on MuJoCo, a lab arm's topics: /joint_states,
                               the controllers' command topics, a RealSense-named camera remapped onto
                               camera/image) driven by ros2_control_bridge (config/ros2_control/bridge_so101.yaml)
  world:=real robot:=ros2_control
                               realsense_camera (color remapped onto camera/image; camera:=external
                               uses realsense-ros instead) and ros2_control_bridge (robot/command ->
                               joint_trajectory_controller, /joint_states -> robot/state)
"""

from hiwm.launch import AllOf, Arg, ArgRef, Graph, IfArg, NodeSpec, to_launch_description

NS = ArgRef("namespace")
REAL = IfArg("world", "real")
CAMERA_IMAGE = {"camera/camera/color/image_raw": "camera/image"}
SO101 = AllOf(REAL, IfArg("robot", "so101"))

GRAPH = Graph(
    name="hiwm",
    description="policy_server -> arbiter <- teleop_web; the world (model or real) on robot/command; "
    "recorder and branch_cache watching",
    args=[
        Arg("world", "model", "model: the learned world model; real: the robot", ("model", "real")),
        Arg(
            "robot",
            "pusht",
            "the real robot: Push-T physics, the SO-101 arm on MuJoCo, or an arm under ros2_control",
            ("pusht", "so101", "ros2_control"),
        ),
        Arg("policy", "", "policy checkpoint folder (or module:Class of an outside policy)"),
        Arg("world_model", "", "world-model checkpoint folder (world:=model)"),
        Arg(
            "clock",
            "realtime",
            "realtime: control ticks at 10 Hz; lockstep: one step per command",
            ("realtime", "lockstep"),
        ),
        Arg("seed", -1, "first episode's seed (< 0: random)"),
        Arg("namespace", "", "namespace of the whole graph (empty: the root)"),
        Arg("initial_phase", "autonomous", "arbiter phase at start", ("autonomous", "paused", "correcting")),
        Arg("teleop", True, "serve the browser playground"),
        Arg("port", 8765, "playground port"),
        Arg("host", "127.0.0.1", "playground address; beyond loopback it needs a token (token_file)"),
        Arg("token_file", "", "file holding the playground's token (else $HIWM_TELEOP_TOKEN); never the token itself"),
        Arg("record", True, "record episodes (LeRobot v3) and traffic (MCAP)"),
        Arg("dataset", "data/hiwm-episodes", "dataset the recorder creates or appends to"),
        Arg("bag", "bags/hiwm-{time}", "MCAP folder the recorder creates"),
        Arg("db", "branch_cache.db", "branch cache store (SQLite)"),
        Arg(
            "camera",
            "hiwm",
            "robot:=ros2_control: our RealSense node, or external (realsense-ros)",
            ("hiwm", "external"),
        ),
        Arg("use_status", True, "policy_server joins task/status (false for a real arm without a success detector)"),
    ],
    nodes=[
        # the world: exactly one of these runs
        NodeSpec(
            "world_model",
            name="world_model",
            namespace=NS,
            parameters={"checkpoint": ArgRef("world_model"), "clock": ArgRef("clock"), "seed": ArgRef("seed")},
            condition=IfArg("world", "model"),
            required=True,
        ),
        NodeSpec(
            "pusht_robot",
            name="pusht_robot",
            namespace=NS,
            parameters={"clock": ArgRef("clock"), "seed": ArgRef("seed")},
            condition=AllOf(REAL, IfArg("robot", "pusht")),
            required=True,
        ),
        NodeSpec(
            "realsense_camera",
            name="realsense_camera",
            namespace=NS,
            remappings=CAMERA_IMAGE,
            condition=AllOf(REAL, IfArg("robot", "ros2_control"), IfArg("camera", "hiwm")),
            required=True,
        ),
        NodeSpec(
            "ros2_control_bridge",
            name="ros2_control_bridge",
            namespace=NS,
            param_files=["config/ros2_control/bridge_arm3.yaml"],  # the arm: copy and edit for yours
            condition=AllOf(REAL, IfArg("robot", "ros2_control")),
            required=True,
        ),
        NodeSpec(
            "arm_robot",
            name="arm_robot",
            namespace=NS,
            parameters={"task": "so101_pick", "clock": ArgRef("clock"), "seed": ArgRef("seed")},
            remappings={"camera/front/color/image_raw": "camera/image"},
            condition=SO101,
            required=True,
        ),
        NodeSpec(
            "ros2_control_bridge",
            name="ros2_control_bridge",
            namespace=NS,
            param_files=["config/ros2_control/bridge_so101.yaml"],
            condition=SO101,
            required=True,
        ),
        # the same in every world
        NodeSpec(
            "policy_server",
            name="policy_server",
            namespace=NS,
            parameters={"policy": ArgRef("policy"), "use_status": ArgRef("use_status")},
            required=True,
        ),
        NodeSpec("arbiter", name="arbiter", namespace=NS, parameters={"initial_phase": ArgRef("initial_phase")}),
        NodeSpec(
            "teleop_web",
            name="teleop_web",
            namespace=NS,
            parameters={"port": ArgRef("port"), "host": ArgRef("host"), "token_file": ArgRef("token_file")},
            remappings=CAMERA_IMAGE,  # the task's camera, where the worlds of this graph publish it
            condition=IfArg("teleop", True),
        ),
        NodeSpec(
            "recorder",
            name="recorder",
            namespace=NS,
            parameters={"dataset": ArgRef("dataset"), "bag": ArgRef("bag")},
            condition=IfArg("record", True),
        ),
        NodeSpec("branch_cache", name="branch_cache", namespace=NS, parameters={"db": ArgRef("db")}),
    ],
)


def generate_launch_description():
    return to_launch_description(GRAPH)
