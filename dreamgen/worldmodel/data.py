"""Training clips for the world model: from any dataset `dreamgen.data.open_dataset` reads (the
embodiment picks the camera and prompt prefix) or from a folder of `<name>.mp4` + `<name>.txt` prompts.

Frames are centre-cropped to the model's aspect ratio and resized (antialiased) to its resolution.
Decoded, resized videos are kept in memory up to a budget, so small datasets (ToyWorld) decode once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from dreamgen.data.video import read_video, video_info
from dreamgen.errors import DatasetError

log = logging.getLogger(__name__)


def fit_frames(frames: np.ndarray, height: int, width: int) -> tuple[np.ndarray, bool]:
    """uint8 (T, H, W, 3) -> (T, height, width, 3): centre-crop to the aspect ratio, then resize.
    Returns the frames and whether anything changed."""
    t, h, w, _ = frames.shape
    if (h, w) == (height, width):
        return frames, False
    target = width / height
    if abs(w / h - target) > 1e-3:  # crop the long side
        if w / h > target:
            cw = int(round(h * target))
            x0 = (w - cw) // 2
            frames = frames[:, :, x0:x0 + cw]
        else:
            ch = int(round(w / target))
            y0 = (h - ch) // 2
            frames = frames[:, y0:y0 + ch]
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy(), True


@dataclass
class _Item:
    key: str
    length: int
    instruction: str
    path: Path | None = None  # folder source
    episode: int | None = None  # dataset source


class WorldModelClips:
    """Random fixed-length clips (uint8 (T, H, W, 3)) with their prompts."""

    def __init__(self, source: str | Path, num_frames: int, height: int, width: int, *,
                 video_key: str | None = None, prompt_prefix: str = "", frame_stride: int = 1,
                 max_items: int | None = None, cache_bytes: int = 2 << 30):
        self.source = Path(source)
        self.num_frames, self.height, self.width = num_frames, height, width
        self.prompt_prefix = prompt_prefix
        self.stride = max(1, int(frame_stride))
        self._cache: dict[str, np.ndarray] = {}
        self._cache_left = cache_bytes
        self._dataset = None
        if not self.source.exists():
            raise DatasetError(f"{self.source}: training data not found")
        if self.source.is_dir() and not (self.source / "meta").is_dir():
            self.items = self._scan_folder(self.source)
        else:
            from dreamgen.data import open_dataset

            self._dataset = open_dataset(self.source)
            keys = self._dataset.video_keys
            if video_key is not None and video_key not in keys:
                raise DatasetError(f"{self.source}: no video key {video_key!r} (has {keys})")
            if not keys:
                raise DatasetError(f"{self.source}: dataset has no videos")
            self.video_key = video_key or keys[0]
            self.items = []
            for i in range(self._dataset.num_episodes):
                ep = self._dataset.episode(i)
                self.items.append(_Item(f"ep{i}", ep.length, ep.task or "", episode=i))
        if max_items:
            self.items = self.items[:max_items]
        if not self.items:
            raise DatasetError(f"{self.source}: no training videos found")
        short = [it for it in self.items if it.length < self.span]
        if short:
            log.warning("%d of %d videos are shorter than a %d-frame clip; they are padded with their last "
                        "frame", len(short), len(self.items), self.span)

    @property
    def span(self) -> int:
        return (self.num_frames - 1) * self.stride + 1

    @staticmethod
    def _scan_folder(folder: Path) -> list[_Item]:
        items = []
        for mp4 in sorted(folder.glob("*.mp4")):
            txt = mp4.with_suffix(".txt")
            if not txt.is_file():
                raise DatasetError(f"{mp4}: no prompt file {txt.name} beside it")
            text = " ".join(txt.read_text().split())
            if not text:
                raise DatasetError(f"{txt}: empty prompt")
            items.append(_Item(mp4.stem, video_info(mp4).num_frames, text, path=mp4))
        return items

    def __len__(self) -> int:
        return len(self.items)

    def prompt(self, i: int) -> str:
        return self.prompt_prefix + self.items[i].instruction

    def video(self, i: int) -> np.ndarray:
        """All frames of item i, resized to the model resolution."""
        it = self.items[i]
        if it.key in self._cache:
            return self._cache[it.key]
        if it.path is not None:
            frames = read_video(it.path)
        else:
            frames = self._dataset.episode(it.episode).frames(key=self.video_key)
        frames, _ = fit_frames(frames, self.height, self.width)
        if frames.nbytes <= self._cache_left:
            self._cache[it.key] = frames
            self._cache_left -= frames.nbytes
        return frames

    def clip(self, i: int, start: int = 0) -> np.ndarray:
        frames = self.video(i)
        idx = np.minimum(start + np.arange(self.num_frames) * self.stride, len(frames) - 1)
        return frames[idx]

    def sample(self, rng: np.random.Generator, batch_size: int) -> tuple[torch.Tensor, list[str]]:
        clips, prompts = [], []
        for _ in range(batch_size):
            i = int(rng.integers(len(self.items)))
            n = len(self.video(i))
            start = int(rng.integers(max(1, n - self.span + 1)))
            clips.append(self.clip(i, start))
            prompts.append(self.prompt(i))
        return torch.from_numpy(np.stack(clips)), prompts


class ConcatClips:
    """Several `WorldModelClips` sources as one (same interface): e.g. a prior of other arms plus the
    target robot's own videos. Items are numbered source by source; `sample` is uniform over all items."""

    def __init__(self, parts: list[WorldModelClips]):
        if not parts:
            raise DatasetError("no training data sources")
        self.parts = parts
        self.num_frames, self.height, self.width = parts[0].num_frames, parts[0].height, parts[0].width
        self.items = [it for p in parts for it in p.items]
        self._where = [(p, i) for p in parts for i in range(len(p))]

    def __len__(self) -> int:
        return len(self._where)

    def prompt(self, i: int) -> str:
        part, j = self._where[i]
        return part.prompt(j)

    def video(self, i: int) -> np.ndarray:
        part, j = self._where[i]
        return part.video(j)

    def clip(self, i: int, start: int = 0) -> np.ndarray:
        part, j = self._where[i]
        return part.clip(j, start)

    def sample(self, rng: np.random.Generator, batch_size: int) -> tuple[torch.Tensor, list[str]]:
        clips, prompts = [], []
        for _ in range(batch_size):
            part, j = self._where[int(rng.integers(len(self._where)))]
            n = len(part.video(j))
            clips.append(part.clip(j, int(rng.integers(max(1, n - part.span + 1)))))
            prompts.append(part.prompt(j))
        return torch.from_numpy(np.stack(clips)), prompts
