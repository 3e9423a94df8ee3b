"""IDM training samples: (frames t+o for each observation offset, action chunk a[t..t+H-1]).

Every frame t of an episode starts a sample; indices past the end are clamped to the last frame
(GR00T's convention, and what extraction does at the end of a video), so training and labelling see
the same kind of windows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from dreamgen.errors import DatasetError

log = logging.getLogger(__name__)


@dataclass
class IDMEpisode:
    """One episode in the form the IDM trainer needs. `frames` is preloaded uint8 (T, H, W, 3), or
    None with `load(indices)` decoding frames on demand."""

    action: np.ndarray  # (T, A) raw (unnormalised)
    frames: np.ndarray | None = None
    load: Callable[[Sequence[int]], np.ndarray] | None = None
    task: str = ""
    index: int = 0
    state: np.ndarray | None = None  # (T, S) raw, when the dataset records it

    @property
    def length(self) -> int:
        return len(self.action)

    def get_frames(self, indices: Sequence[int]) -> np.ndarray:
        if self.frames is not None:
            return self.frames[np.asarray(indices)]
        assert self.load is not None
        return self.load(list(indices))


def window_indices(t: int, length: int, offsets: Sequence[int], horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """(frame indices, action indices) of the sample starting at frame t, clamped to the episode."""
    frames = np.minimum(t + np.asarray(offsets), length - 1)
    actions = np.minimum(t + np.arange(horizon), length - 1)
    return frames, actions


def resize_frames(frames: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """uint8 (T, H, W, 3) -> uint8 (T, h, w, 3), antialiased bilinear (done once when preloading)."""
    h, w = int(size[0]), int(size[1])
    if frames.shape[1:3] == (h, w):
        return frames
    out = []
    for i in range(0, len(frames), 256):
        x = torch.from_numpy(frames[i:i + 256]).permute(0, 3, 1, 2).float()
        x = F.interpolate(x, size=(h, w), mode="bilinear", antialias=True, align_corners=False)
        out.append(x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy())
    return np.concatenate(out)


class IDMWindows(torch.utils.data.Dataset):
    """All (episode, t) samples; returns uint8 frames (F, H, W, 3) and the normalised chunk (H, A)."""

    def __init__(self, episodes: Sequence[IDMEpisode], offsets: Sequence[int], horizon: int,
                 normalize: Callable[[np.ndarray], np.ndarray]) -> None:
        self.episodes, self.offsets, self.horizon = list(episodes), list(offsets), horizon
        self.normalize = normalize
        self.index = [(e, t) for e, ep in enumerate(self.episodes) for t in range(ep.length)]
        if not self.index:
            raise DatasetError("no training samples: every episode is empty")

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        e, t = self.index[i]
        ep = self.episodes[e]
        f_idx, a_idx = window_indices(t, ep.length, self.offsets, self.horizon)
        frames = torch.from_numpy(np.ascontiguousarray(ep.get_frames(f_idx)))
        actions = torch.from_numpy(self.normalize(ep.action[a_idx]))
        return frames, actions


class IDMClips(torch.utils.data.Dataset):
    """Clips of `length` consecutive frames for a state IDM: uint8 frames (L, H, W, 3), the normalised
    target (L, S + A) = [state | action] per frame, and a mask (L,) of real frames (a short episode is
    padded with its last frame). Clips start every `stride` frames."""

    def __init__(self, episodes: Sequence[IDMEpisode], length: int, normalize_state: Callable | None,
                 normalize_action: Callable, stride: int = 1) -> None:
        self.episodes, self.length = list(episodes), length
        self.normalize_state, self.normalize_action = normalize_state, normalize_action
        self.index = [(e, t) for e, ep in enumerate(self.episodes)
                      for t in range(0, max(1, ep.length - length + 1), stride)]
        if not self.index:
            raise DatasetError("no training clips: every episode is empty")
        if normalize_state is not None and any(ep.state is None for ep in self.episodes):
            raise DatasetError("a state IDM needs observation.state in every training episode")

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        e, t = self.index[i]
        ep = self.episodes[e]
        idx = np.minimum(np.arange(t, t + self.length), ep.length - 1)
        mask = torch.from_numpy(np.arange(t, t + self.length) < ep.length)
        parts = [self.normalize_state(ep.state[idx])] if self.normalize_state is not None else []
        target = np.concatenate(parts + [self.normalize_action(ep.action[idx])], axis=1)
        frames = torch.from_numpy(np.ascontiguousarray(ep.get_frames(idx)))
        return frames, torch.from_numpy(target.astype(np.float32)), mask


def load_dataset_episodes(path, video_key: str | None, image_size: Sequence[int],
                          episodes: Sequence[int] | None = None, preload: bool = True) -> list[IDMEpisode]:
    """Read a LeRobot dataset (any version `dreamgen.data.open_dataset` reads) into IDMEpisodes.

    With `preload`, frames are decoded once and resized to the IDM's image size (64x64 ToyWorld
    frames: ~12 KB each); otherwise each sample decodes its frames on demand.
    """
    from dreamgen.data import open_dataset

    ds = open_dataset(path)
    if ds.action_dim is None or not ds.action_dim:
        raise DatasetError(f"{path}: dataset has no action feature: an IDM needs ground-truth actions")
    key = video_key if video_key in (ds.video_keys or []) else None
    if video_key and key is None:
        log.warning("%s: video key %r not in dataset (%s); using %s", path, video_key, ds.video_keys,
                    ds.video_keys[0] if ds.video_keys else None)
    key = key or (ds.video_keys[0] if ds.video_keys else None)
    if key is None:
        raise DatasetError(f"{path}: dataset has no video feature: an IDM needs camera frames")
    out = []
    for i in (range(ds.num_episodes) if episodes is None else episodes):
        ep = ds.episode(i)
        if ep.action is None:
            raise DatasetError(f"{path}: episode {i} has no actions")
        action = np.asarray(ep.action, dtype=np.float32)
        if preload:
            frames = resize_frames(ep.frames(key=key), image_size)
            if len(frames) != len(action):
                n = min(len(frames), len(action))
                log.warning("%s: episode %d has %d frames but %d actions; using %d", path, i, len(frames),
                            len(action), n)
                frames, action = frames[:n], action[:n]
            state = None if ep.state is None else np.asarray(ep.state, dtype=np.float32)[: len(frames)]
            out.append(IDMEpisode(action=action, frames=frames, task=ep.task or "", index=i, state=state))
        else:
            state = None if ep.state is None else np.asarray(ep.state, dtype=np.float32)
            out.append(IDMEpisode(action=action, load=_lazy_loader(path, i, key), task=ep.task or "", index=i,
                                  state=state))
    return out


class _lazy_loader:
    """Picklable frame loader for DataLoader workers: reopens the dataset in each process."""

    _cache: dict = {}

    def __init__(self, path, episode: int, key: str) -> None:
        self.path, self.episode, self.key = str(path), episode, key

    def __call__(self, indices: Sequence[int]) -> np.ndarray:
        from dreamgen.data import open_dataset

        ds = self._cache.get(self.path)
        if ds is None:
            ds = self._cache[self.path] = open_dataset(self.path)
        return ds.episode(self.episode).frames(indices=list(indices), key=self.key)


def action_stats(episodes: Sequence[IDMEpisode], attr: str = "action") -> dict[str, list[float]]:
    """stats.json form for the action (or `attr="state"`) feature, from the training episodes."""
    a = np.concatenate([getattr(ep, attr) for ep in episodes]).astype(np.float64)
    return {
        "mean": a.mean(0).tolist(), "std": a.std(0).tolist(), "min": a.min(0).tolist(), "max": a.max(0).tolist(),
        "q01": np.quantile(a, 0.01, axis=0).tolist(), "q99": np.quantile(a, 0.99, axis=0).tolist(),
    }
