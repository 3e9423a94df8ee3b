"""Data layer: LeRobot v3 / GR00T v2.x reading, LeRobot v3 writing, statistics, video I/O."""

from dreamgen.data.convert import convert_v2_to_v3
from dreamgen.data.dataset import (
    Episode,
    RobotDataset,
    open_dataset,
    read_info,
    read_modality,
    require_episodes,
)
from dreamgen.data.stats import array_stats, compute_stats
from dreamgen.data.video import VideoInfo, read_video, video_info, write_video
from dreamgen.data.writer import DatasetWriter, modality_for

__all__ = [
    "DatasetWriter",
    "Episode",
    "RobotDataset",
    "VideoInfo",
    "array_stats",
    "compute_stats",
    "convert_v2_to_v3",
    "modality_for",
    "open_dataset",
    "read_info",
    "read_modality",
    "read_video",
    "require_episodes",
    "video_info",
    "write_video",
]
