"""Recording: LeRobot v3.0 datasets (parquet + mp4) and rosbag2 MCAP bags."""

from hiwm.data.lerobot import (
    SOURCE_HUMAN,
    SOURCE_POLICY,
    SOURCE_SCRIPTED,
    DatasetError,
    LeRobotDataset,
    LeRobotDatasetWriter,
)
from hiwm.data.verify import VerifyReport, verify

__all__ = [
    "SOURCE_HUMAN",
    "SOURCE_POLICY",
    "SOURCE_SCRIPTED",
    "DatasetError",
    "LeRobotDataset",
    "LeRobotDatasetWriter",
    "VerifyReport",
    "verify",
]
