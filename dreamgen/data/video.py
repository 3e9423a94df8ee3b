"""Video I/O through PyAV: probe, decode chosen frames, encode mp4 atomically."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from dreamgen.errors import VideoError


@dataclass(frozen=True)
class VideoInfo:
    num_frames: int
    fps: float
    height: int
    width: int


def video_info(path: str | Path) -> VideoInfo:
    path = Path(path)
    if not path.is_file():
        raise VideoError(f"{path}: video file not found")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoError(f"{path}: no video stream")
            stream = container.streams.video[0]
            fps = float(stream.average_rate or stream.guessed_rate or 0) or 30.0
            n = stream.frames
            if not n:  # some muxers leave the count empty: count packets instead
                n = sum(1 for p in container.demux(stream) if p.size)
            return VideoInfo(int(n), fps, stream.codec_context.height, stream.codec_context.width)
    except VideoError:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise VideoError(f"{path}: unreadable video ({exc})") from None


def quiet_libav() -> None:
    """FFmpeg's own log level to warnings, process-wide. LeRobot hands libav's logging back to FFmpeg's
    default callback (stderr, INFO by default) after each episode it encodes, so without this libx264's
    banner and per-file statistics reach the terminal for every video written. (x264 has no option that
    silences them all: the "264 - core ..." banner is printed by libavcodec itself, at INFO.)"""
    av.logging.set_libav_level(av.logging.WARNING)


class _OneLineTorchcodecNote(logging.Filter):
    """Turns LeRobot's torchcodec-cannot-load warning (torchcodec's whole loading traceback) into one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if "libtorchcodec" in str(record.msg):
            record.msg, record.args = ("torchcodec is installed but cannot load (it needs FFmpeg's shared libraries, "
                                       "versions 4-8, which PyAV's wheels do not provide): decoding with PyAV"), ()
        return True


def quiet_torchcodec_fallback() -> None:
    """LeRobot picks its default decoder (whenever a training config is made) by importing torchcodec and,
    when that fails (torchcodec installed without FFmpeg's shared libraries), logs torchcodec's whole
    loading traceback, once per try. Keep the note, drop the traceback: a filter on LeRobot's logger."""
    logger = logging.getLogger("lerobot.utils.import_utils")
    if not any(isinstance(f, _OneLineTorchcodecNote) for f in logger.filters):
        logger.addFilter(_OneLineTorchcodecNote())


def read_video(path: str | Path, indices: Sequence[int] | None = None) -> np.ndarray:
    """Decode frames as uint8 RGB (T, H, W, 3). `indices` picks frames (any order, repeats allowed).

    Decoding seeks to the keyframe before the first wanted frame and stops after the last one.
    """
    path = Path(path)
    if not path.is_file():
        raise VideoError(f"{path}: video file not found")
    wanted = None if indices is None else sorted(set(int(i) for i in indices))
    if wanted is not None and wanted and wanted[0] < 0:
        raise VideoError(f"{path}: negative frame index {wanted[0]}")
    frames: dict[int, np.ndarray] = {}
    ordered: list[np.ndarray] = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoError(f"{path}: no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            fps = float(stream.average_rate or stream.guessed_rate or 0)
            last = wanted[-1] if wanted else -1
            want_set = set(wanted) if wanted is not None else None
            # Frame numbers come from timestamps (constant frame rate), so decoding may start at the
            # keyframe before the first wanted frame instead of at frame 0: LeRobot v3 packs many
            # episodes into one file and an episode late in it would otherwise cost a full decode.
            seek = bool(wanted) and wanted[0] > 0 and fps > 0 and stream.time_base is not None
            if seek:
                container.seek(int((wanted[0] / fps) / stream.time_base), stream=stream, backward=True)
            for i, frame in enumerate(container.decode(stream)):
                if seek and frame.pts is not None:
                    i = int(round(float(frame.pts * stream.time_base - (stream.start_time or 0) * stream.time_base) * fps))
                if want_set is None:
                    ordered.append(frame.to_ndarray(format="rgb24"))
                elif i in want_set:
                    frames[i] = frame.to_ndarray(format="rgb24")
                if want_set is not None and i >= last:
                    break
    except VideoError:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise VideoError(f"{path}: unreadable or truncated video ({exc})") from None
    if indices is None:
        if not ordered:
            raise VideoError(f"{path}: video has no decodable frames")
        return np.stack(ordered)
    missing = [i for i in wanted if i not in frames]
    if missing:
        raise VideoError(f"{path}: video has {len(frames) and max(frames) + 1 or 0}+ frames; "
                         f"frame {missing[0]} is past the end (truncated?)")
    if not wanted:
        return np.zeros((0, 0, 0, 3), np.uint8)
    return np.stack([frames[int(i)] for i in indices])


def write_video(path: str | Path, frames: np.ndarray | Sequence[np.ndarray], fps: float,
                crf: int = 18, codec: str = "libx264") -> Path:
    """Encode uint8 RGB frames to mp4 (yuv420p, so any player opens it). Written to a temporary name
    and renamed at the end: a crash never leaves a file that looks finished."""
    path = Path(path)
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise VideoError(f"{path}: expected frames of shape (T, H, W, 3), got {frames.shape}")
    if frames.dtype != np.uint8:
        raise VideoError(f"{path}: expected uint8 frames, got {frames.dtype}")
    h, w = frames.shape[1:3]
    # yuv420p needs even sizes; pad by edge replication rather than silently cropping content
    if h % 2 or w % 2:
        frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        h, w = frames.shape[1:3]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.partial{path.suffix}")
    try:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            from fractions import Fraction

            stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1000))
            stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
            stream.options = {"crf": str(crf)} if codec == "libx264" else {}
            quiet_libav()  # x264's statistics block per file is at INFO
            for f in frames:
                for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
