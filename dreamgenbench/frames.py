"""How a judge sees a video: evenly sampled, rescaled frames (IF), or a 2 fps clip (PA, video input).

Decoding goes through `dreamgen.data.video` (PyAV); the reference used decord + OpenCV, whose
bilinear resize PIL's matches closely enough for a 0/1 judge.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from dreamgen.data.video import read_video, video_info
from dreamgen.errors import VideoError


def even_indices(frame_count: int, num_frames: int) -> list[int]:
    """The reference's choice: all frames when the clip is short (padded later with the last one),
    else `num_frames` indices spread evenly from the first to the last frame."""
    if frame_count <= 0:
        return []
    if frame_count < num_frames:
        return list(range(frame_count))
    return np.linspace(0, frame_count - 1, num_frames).astype(int).tolist()


def _resize(frame: np.ndarray, scale: float) -> np.ndarray:
    if scale == 1.0:
        return frame
    h, w = frame.shape[:2]
    size = (max(1, int(w * scale)), max(1, int(h * scale)))
    return np.asarray(Image.fromarray(frame).resize(size, Image.Resampling.BILINEAR))


def sample_frames(path: str | Path, num_frames: int, scale: float = 1.0) -> list[np.ndarray]:
    """`num_frames` uint8 RGB frames spread evenly over the clip, each resized by `scale`.
    A clip shorter than `num_frames` is padded by repeating its last frame (as the reference does)."""
    if num_frames < 1:
        raise ValueError("num_frames must be >= 1")
    n = video_info(path).num_frames
    indices = even_indices(n, num_frames)
    if not indices:
        raise VideoError(f"{path}: video has no frames")
    frames = [_resize(f, scale) for f in read_video(path, indices)]
    frames.extend(frames[-1].copy() for _ in range(num_frames - len(frames)))
    return frames


# Qwen-VL's own video reader (qwen_vl_utils, used by the reference's PA script) samples 2 frames per
# second, at least 4, an even count, never more than the clip has.
VIDEO_FPS = 2.0
VIDEO_MIN_FRAMES = 4
VIDEO_FRAME_FACTOR = 2


@dataclass
class Clip:
    frames: np.ndarray  # (T, H, W, 3) uint8
    indices: list[int]  # which frames of the source they are
    fps: float  # the source's frame rate
    total_frames: int  # the source's frame count

    @property
    def sampled_fps(self) -> float:
        return len(self.indices) / self.total_frames * self.fps


def sample_clip(path: str | Path, fps: float = VIDEO_FPS) -> Clip:
    """The clip resampled to about `fps` frames per second (an even count, at least 4)."""
    info = video_info(path)
    total = info.num_frames
    if total <= 0:
        raise VideoError(f"{path}: video has no frames")
    wanted = total / info.fps * fps
    n = min(max(wanted, VIDEO_MIN_FRAMES), total)
    n = max(VIDEO_FRAME_FACTOR, int(n // VIDEO_FRAME_FACTOR) * VIDEO_FRAME_FACTOR)
    if n > total:  # a 1-frame clip: repeat it so the temporal patch (2 frames) is filled
        indices = [0] * n
    else:
        indices = np.linspace(0, total - 1, n).round().astype(int).tolist()
    return Clip(read_video(path, indices), indices, info.fps, total)


def png_data_uri(frame: np.ndarray) -> str:
    """A frame as `data:image/png;base64,...`, the form chat-completions servers accept for images."""
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
