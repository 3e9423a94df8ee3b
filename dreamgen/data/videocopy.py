"""Copy episode videos into a LeRobot v3 dataset as they are (no re-encoding).

LeRobot's writer already joins per-episode mp4s into its shared v3 files by stream copy
(`concatenate_video_files`); what it cannot do is take an mp4 the caller already has. Its streaming
encoder is the one seam where a finished per-episode file enters `save_episode`, so `StreamCopyEncoder`
stands in for it: frames fed to it only update the image statistics (as LeRobot's encoder thread does),
and at the end of the episode it hands over a copy of the source file. `CopyingLeRobotDataset` is
`LeRobotDataset` building that encoder instead of its own.

`copyable_videos` decides, before anything is written, whether the source streams can be copied:
one codec LeRobot decodes, one size, pixel format and frame rate across episodes, the dataset's fps,
and exactly one video frame per data row.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

import av
import numpy as np
from lerobot.datasets.compute_stats import RunningQuantileStats, auto_downsample_height_width
from lerobot.datasets.lerobot_dataset import LeRobotDataset
from lerobot.datasets.video_utils import StreamingVideoEncoder, get_video_info

log = logging.getLogger(__name__)

COPYABLE_CODECS = ("h264", "hevc", "av1")
PROBED = ("video.codec", "video.height", "video.width", "video.pix_fmt", "video.fps")


class StreamCopyEncoder(StreamingVideoEncoder):
    """LeRobot's streaming-encoder interface, answered with copies of existing per-episode files."""

    def __init__(self, fps: int, **kwargs):
        super().__init__(fps, **kwargs)
        self.sources: dict[str, Path] = {}  # set by the writer before each episode's first frame
        self._stats: dict[str, RunningQuantileStats] = {}
        self._counts: dict[str, int] = {}
        self._temp_dir: Path | None = None

    def start_episode(self, video_keys: list[str], temp_dir: Path, depth_video_keys: list[str] | None = None):
        missing = set(video_keys) - set(self.sources)
        if missing:
            raise RuntimeError(f"no source video given for {sorted(missing)}")
        self._temp_dir = Path(temp_dir)
        self._stats = {k: RunningQuantileStats() for k in video_keys}
        self._counts = dict.fromkeys(video_keys, 0)
        self._episode_active = True

    def feed_frame(self, video_key: str, image: np.ndarray) -> None:
        img = auto_downsample_height_width(np.asarray(image).transpose(2, 0, 1))  # the stats LeRobot's thread keeps
        self._stats[video_key].update(img.transpose(1, 2, 0).reshape(-1, img.shape[0]))
        self._counts[video_key] += 1

    def finish_episode(self) -> dict[str, tuple[Path, dict | None]]:
        results = {}
        for key, stats in self._stats.items():
            folder = Path(tempfile.mkdtemp(dir=self._temp_dir))  # LeRobot removes this folder after the move
            copy = folder / f"{key.replace('/', '_')}_copy.mp4"
            shutil.copyfile(self.sources[key], copy)
            results[key] = (copy, stats.get_statistics() if self._counts[key] >= 2 else None)
        self.cancel_episode()
        return results

    def cancel_episode(self) -> None:
        self._stats, self._counts, self.sources = {}, {}, {}
        self._episode_active = False


class CopyingLeRobotDataset(LeRobotDataset):
    """`LeRobotDataset.create(..., streaming_encoding=True)` that copies the given files instead of encoding."""

    @staticmethod
    def _build_streaming_encoder(fps, rgb_encoder, depth_encoder, encoder_queue_maxsize, encoder_threads):
        return StreamCopyEncoder(fps, rgb_encoder=rgb_encoder, depth_encoder=depth_encoder)


def _frame_count(path: Path) -> int:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return stream.frames or sum(1 for _ in container.demux(stream) if _.size)


def copyable_videos(files: list[dict[str, Path]], lengths: list[int], fps: float) -> str | None:
    """None when every episode's videos can be copied as they are, else the first reason why not."""
    reference: dict[str, dict] = {}
    for ep, (videos, n) in enumerate(zip(files, lengths, strict=True)):
        for key, path in videos.items():
            try:
                info = {k: get_video_info(path).get(k) for k in PROBED}
                count = _frame_count(path)
            except (av.FFmpegError, IndexError, OSError) as exc:
                return f"{path}: unreadable ({exc})"
            if path.suffix != ".mp4" or info["video.codec"] not in COPYABLE_CODECS:
                return f"{path}: {info['video.codec']} in {path.suffix} (copyable: {', '.join(COPYABLE_CODECS)} mp4)"
            if info["video.fps"] != int(round(fps)) or float(fps) != int(fps):
                return f"{path}: {info['video.fps']} fps, the dataset says {fps}"
            if count != n:
                return f"{path}: {count} frames for episode {ep}'s {n} rows"
            ref = reference.setdefault(key, info)
            odd = [k for k in PROBED if info[k] != ref[k]]
            if odd:
                return f"{path}: {odd[0]} {info[odd[0]]} differs from episode 0's {ref[odd[0]]}"
    return None
