"""Bring dreamed videos to an embodiment's IDM input: crop/pad/resize, resample fps, split long videos.

Mirrors the reference's per-embodiment preprocessing (IDM_dump/preprocess_video.py):
  gr1        crop the GR1 ego view's fixed region, resize to 720x480, pad square, resize
  so100      restore the camera's aspect ratio (--original-size), letterbox to the IDM size
  franka,    the dream tiles views 2x2: take the top-left view (the primary camera), restore its
  robocasa   aspect ratio, letterbox
Other embodiments default to letterboxing. The folder layout (`<Instruction>/<k>.mp4`) is kept and
sidecar JSONs travel (updated with the new fps/size); a video split in parts becomes `<k>-<p>.mp4`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from dreamgen.errors import DreamgenError, OutputExistsError, VideoError
from dreamgen.io import clean_stale_partials

log = logging.getLogger(__name__)

CROP_MODES = ("pad", "crop", "stretch", "gr1", "quad-tl")
DEFAULT_CROP = {"gr1": "gr1", "so100": "pad", "franka": "quad-tl", "robocasa": "quad-tl"}
# The reference scripts' --original_width/--original_height (the real camera's frame size).
DEFAULT_ORIGINAL_SIZE = {"so100": (640, 480), "franka": (672, 376), "robocasa": (512, 512)}


@dataclass
class PreprocessConfig:
    src: str | Path
    dst: str | Path
    embodiment: str | Path | None = None  # required: no silent default robot
    crop: str | None = None  # default per embodiment (DEFAULT_CROP)
    size: tuple[int, int] | None = None  # (height, width); default: the embodiment's idm_image_size
    original_size: tuple[int, int] | None = None  # camera (width, height) whose aspect ratio to restore
    fps: float | None = None  # target fps; default the embodiment's; 0 keeps the source fps
    max_frames: int | None = None  # split longer videos into parts of at most this many frames
    min_frames: int = 2  # drop (report) parts shorter than this
    dry_run: bool = False
    failed: dict[str, str] = field(default_factory=dict)


def _resize(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    if x.shape[-2:] == (h, w):
        return x
    return F.interpolate(x, size=(h, w), mode="bilinear", antialias=True, align_corners=False)


def _letterbox(x: torch.Tensor, h: int, w: int, aspect: float | None = None) -> torch.Tensor:
    """Resize keeping `aspect` (w/h; default the frame's own) inside h x w, zero padding around."""
    aspect = aspect or x.shape[-1] / x.shape[-2]
    if aspect >= w / h:
        nw, nh = w, max(1, round(w / aspect))
    else:
        nw, nh = max(1, round(h * aspect)), h
    y = _resize(x, nh, nw)
    top, left = (h - nh) // 2, (w - nw) // 2
    return F.pad(y, (left, w - nw - left, top, h - nh - top))


def transform_frames(frames: np.ndarray, mode: str, size: tuple[int, int],
                     original_size: tuple[int, int] | None = None) -> np.ndarray:
    """uint8 (T, H, W, 3) -> uint8 (T, h, w, 3)."""
    if mode not in CROP_MODES:
        raise DreamgenError(f"unknown crop mode {mode!r}; choose one of {', '.join(CROP_MODES)}")
    h, w = size
    aspect = original_size[0] / original_size[1] if original_size else None
    out = []
    for i in range(0, len(frames), 64):
        x = torch.from_numpy(frames[i:i + 64]).permute(0, 3, 1, 2).float()
        H, W = x.shape[-2:]
        if mode == "stretch":
            y = _resize(x, h, w)
        elif mode == "pad":
            y = _letterbox(x, h, w, aspect)
        elif mode == "crop":
            a = w / h
            ch, cw = (H, round(H * a)) if W / H > a else (round(W / a), W)
            top, left = (H - ch) // 2, (W - cw) // 2
            y = _resize(x[..., top:top + ch, left:left + cw], h, w)
        elif mode == "quad-tl":
            y = _letterbox(x[..., : H // 2, : W // 2], h, w, aspect)
        else:  # gr1: the reference's crop box (given for 1280x800), scaled to this frame
            top, bottom = int(H * 310 / 800), int(H * 770 / 800)
            left, right = int(W * 110 / 1280), int(W * 1130 / 1280)
            y = _resize(x[..., top:bottom, left:right], 480, 720)
            y = F.pad(y, (0, 0, 120, 120))  # 720x720
            y = _resize(y, h, w)
        out.append(y.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy())
    return np.concatenate(out)


def resample_indices(n: int, src_fps: float, dst_fps: float) -> np.ndarray:
    """Frame indices of an n-frame video at src_fps re-timed to dst_fps (nearest frame)."""
    if not dst_fps or abs(src_fps - dst_fps) < 1e-3:
        return np.arange(n)
    m = int(np.floor((n - 1) * dst_fps / src_fps + 1e-9)) + 1
    return np.minimum(np.round(np.arange(m) * src_fps / dst_fps).astype(int), n - 1)


def preprocess_videos(cfg: PreprocessConfig) -> dict[str, list[str]]:
    """Returns {"written": [...], "failed": [...]} (relative paths). The output folder must not exist."""
    from tqdm import tqdm

    from dreamgen.data import read_video, video_info, write_video
    from dreamgen.embodiments import get_embodiment

    if not cfg.embodiment:
        from dreamgen.embodiments.registry import builtin_names

        raise DreamgenError("preprocess needs -e/--embodiment: the crop, IDM image size and fps come from the "
                            f"robot (built-ins: {', '.join(builtin_names())}; or an embodiment file/folder, "
                            "e.g. an IDM checkpoint's embodiment/)")
    src, dst = Path(cfg.src), Path(cfg.dst)
    if dst.exists():
        raise OutputExistsError(f"{dst}: output folder already exists; choose a new one")
    if not src.is_dir():
        raise DreamgenError(f"{src}: input folder not found")
    emb = get_embodiment(cfg.embodiment)
    mode = cfg.crop or DEFAULT_CROP.get(emb.name, "pad")
    size = tuple(cfg.size or emb.idm_image_size)
    original = cfg.original_size or DEFAULT_ORIGINAL_SIZE.get(emb.name)
    target_fps = emb.fps if cfg.fps is None else cfg.fps
    videos = sorted(p for p in src.rglob("*.mp4") if not any(s.startswith(".") for s in p.relative_to(src).parts))
    if not videos:
        raise DreamgenError(f"{src}: no .mp4 videos found")
    if cfg.dry_run:
        return {"written": [v.relative_to(src).as_posix() for v in videos], "failed": []}
    clean_stale_partials(dst)  # leftovers of an interrupted run
    tmp = dst.with_name(f".{dst.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    written, failed = [], {}
    try:
        for v in tqdm(videos, desc="preprocess", dynamic_ncols=True):
            rel = v.relative_to(src)
            try:
                info = video_info(v)
                frames = read_video(v)
            except VideoError as exc:
                failed[rel.as_posix()] = str(exc)
                log.warning("skipping %s", exc)
                continue
            idx = resample_indices(len(frames), info.fps, target_fps)
            frames = transform_frames(frames[idx], mode, size, original)
            fps = target_fps or info.fps
            step = cfg.max_frames or len(frames)
            parts = [frames[i:i + step] for i in range(0, len(frames), step)]
            sidecar = v.with_suffix(".json")
            meta = {}
            if sidecar.is_file():
                try:
                    meta = json.loads(sidecar.read_text())
                except json.JSONDecodeError:
                    log.warning("%s: invalid JSON sidecar, not carried over", sidecar)
            for p, part in enumerate(parts):
                if len(part) < cfg.min_frames:
                    failed[f"{rel.as_posix()}#part{p}"] = f"only {len(part)} frames after splitting; dropped"
                    continue
                name = rel.with_suffix(".mp4") if len(parts) == 1 else rel.with_name(f"{rel.stem}-{p}.mp4")
                write_video(tmp / name, part, fps)
                if meta or sidecar.is_file():
                    extra = {"fps": fps, "height": size[0], "width": size[1], "preprocess": mode,
                             "source_video": rel.as_posix()}
                    if len(parts) > 1:
                        extra["part"] = p
                    (tmp / name).with_suffix(".json").write_text(json.dumps({**meta, **extra}, indent=2))
                written.append(name.as_posix())
        if not written:
            raise DreamgenError(f"{src}: no video could be preprocessed ({len(failed)} failed)")
        tmp.rename(dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    cfg.failed.update(failed)
    return {"written": written, "failed": [f"{k}: {v}" for k, v in failed.items()]}
