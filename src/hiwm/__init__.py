"""hiwm: human-in-the-world-model robot post-training on ROS 2."""

__version__ = "0.1.0"
