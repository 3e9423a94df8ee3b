"""An in-memory copy of a LeRobot dataset: every video decoded once, every column as a tensor.

ToyWorld-sized datasets (64x64 video, 1k-10k frames) are a few hundred MB decoded, but LeRobot's
`__getitem__` seeks and decodes video for every sample, which makes training decode-bound (and
needs DataLoader worker processes to hide it). `CachedDataset` decodes each video file once at
start and keeps uint8 (N, C, H, W) tensors; items and whole batches are then tensor indexing.

Items are the same as `LeRobotDataset(..., delta_timestamps=..., return_uint8=True)[i]` gives:
the same keys, shapes and `<key>_is_pad` masks (indices clamped to the episode, as LeRobot does),
`task` as the instruction string. `get_batch(indices)` returns a whole collated batch at once.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dreamgen.errors import DatasetError

log = logging.getLogger(__name__)

CACHE_MODES = ("auto", "on", "off")
DEFAULT_BUDGET_GB = 4.0
_INDEX_COLUMNS = ("timestamp", "frame_index", "episode_index", "index", "task_index")


def decoded_bytes(meta: Any, keys: Sequence[str] | None = None) -> int:
    """Bytes the decoded uint8 frames of a dataset's cameras (all, or `keys`) take."""
    total = 0
    for key in meta.camera_keys:
        if keys is not None and key not in keys:
            continue
        shape = meta.features[key]["shape"]
        total += int(meta.total_frames) * int(np.prod(shape))
    return total


def should_cache(mode: str, metas: Sequence[Any], cams: Sequence[str], budget_gb: float) -> bool:
    """Whether to cache under `mode` (auto: when the decoded frames of every dataset fit the budget)."""
    if mode not in CACHE_MODES:
        raise DatasetError(f"frame cache mode must be one of {', '.join(CACHE_MODES)}, got {mode!r}")
    if mode == "off":
        return False
    need = sum(decoded_bytes(m, cams) for m in metas)
    fits = need <= budget_gb * 2**30
    if mode == "on":
        if not fits:
            log.warning("frame cache: %.2f GB of decoded frames exceeds the %.1f GB budget; caching anyway "
                        "(--frame-cache on)", need / 2**30, budget_gb)
        return True
    if not fits:
        log.info("frame cache off: %.2f GB of decoded frames > %.1f GB budget", need / 2**30, budget_gb)
    return fits


def _column(table: Any, name: str) -> np.ndarray:
    """An Arrow column as numpy: scalars (N,), fixed-size lists (N, D)."""
    import pyarrow as pa

    col = table.column(name).combine_chunks()
    if pa.types.is_fixed_size_list(col.type) or pa.types.is_list(col.type):
        n = len(col)
        flat = col.flatten().to_numpy(zero_copy_only=False)
        return flat.reshape(n, -1) if n else flat.reshape(0, 0)
    return col.to_numpy(zero_copy_only=False)


class CachedDataset(torch.utils.data.Dataset):
    """A fully loaded LeRobot v3 dataset (see the module doc). Built from an opened `LeRobotDataset`."""

    def __init__(self, dataset: Any, keys: Sequence[str], progress: bool = True):
        from lerobot.datasets.feature_utils import get_delta_indices

        self.meta = dataset.meta
        self.root = Path(dataset.root)
        self.num_episodes = int(dataset.num_episodes)
        meta = dataset.meta
        table = dataset.hf_dataset.data  # Arrow table, no per-row python conversion
        n = table.num_rows
        self.columns: dict[str, torch.Tensor] = {}
        for name in _INDEX_COLUMNS:
            self.columns[name] = torch.from_numpy(np.array(_column(table, name)))
        index = self.columns["index"].numpy()
        if not np.array_equal(index, np.arange(n)):
            raise DatasetError(f"{self.root}: frame index column is not 0..N-1 (an episode subset?); "
                               "cannot cache this dataset")
        for key in keys:
            if key in meta.camera_keys or key in self.columns:
                continue
            if key not in table.column_names:
                raise DatasetError(f"{self.root}: no column {key!r}")
            arr = _column(table, key)
            self.columns[key] = torch.from_numpy(np.array(arr, dtype=np.float32))
        self.columns["timestamp"] = self.columns["timestamp"].float()

        eps = meta.episodes
        starts = np.asarray(eps["dataset_from_index"], dtype=np.int64)
        ends = np.asarray(eps["dataset_to_index"], dtype=np.int64)
        ep_of_frame = self.columns["episode_index"].numpy().astype(np.int64)
        ep_pos = {int(e): i for i, e in enumerate(eps["episode_index"])}
        rows = np.asarray([ep_pos[int(e)] for e in ep_of_frame], dtype=np.int64)
        self.ep_start = torch.from_numpy(starts[rows])
        self.ep_end = torch.from_numpy(ends[rows])
        self.tasks = {int(i): str(t) for t, i in zip(meta.tasks.index, meta.tasks["task_index"], strict=True)}

        delta_ts = getattr(dataset, "delta_timestamps", None)
        self.delta_indices = ({k: torch.as_tensor(v, dtype=torch.int64) for k, v in
                               get_delta_indices(delta_ts, meta.fps).items()} if delta_ts else {})
        self.frames: dict[str, torch.Tensor] = {}
        cams = [k for k in keys if k in meta.camera_keys]
        for key in cams:
            self.frames[key] = self._decode_camera(key, progress)
        self.keys = [k for k in keys if k not in _INDEX_COLUMNS]
        self.n = n

    def _decode_camera(self, key: str, progress: bool) -> torch.Tensor:
        from tqdm import tqdm

        from dreamgen.data.video import read_video

        meta = self.meta
        if key not in meta.video_keys:
            raise DatasetError(f"{self.root}: camera {key!r} is stored as images; the frame cache reads videos")
        eps = meta.episodes
        h, w, c = (int(x) for x in meta.features[key]["shape"])
        n = len(self.columns["index"])
        out = torch.empty((n, c, h, w), dtype=torch.uint8)
        vfps = float((meta.features[key].get("info") or {}).get("video.fps") or meta.fps)
        ts = self.columns["timestamp"].numpy().astype(np.float64)
        files: dict[str, list[int]] = {}
        for row in range(len(eps)):
            files.setdefault(str(meta.get_video_file_path(int(eps[row]["episode_index"]), key)), []).append(row)
        for rel, rows in tqdm(files.items(), desc=f"decode {key}", disable=not progress, leave=False):
            video = read_video(self.root / rel)  # (T, H, W, 3), the whole file once
            if video.shape[1:3] != (h, w):
                raise DatasetError(f"{self.root / rel}: frames are {video.shape[1:3]}, info.json says {(h, w)}")
            for row in rows:
                ep = eps[row]
                a, b = int(ep["dataset_from_index"]), int(ep["dataset_to_index"])
                t0 = float(ep[f"videos/{key}/from_timestamp"])
                idx = np.rint((t0 + ts[a:b]) * vfps).astype(np.int64)
                if len(idx) and (idx.min() < 0 or idx.max() >= len(video)):
                    raise DatasetError(f"{self.root / rel}: episode {ep['episode_index']} needs frame "
                                       f"{int(idx.max())} but the file has {len(video)}")
                out[a:b] = torch.from_numpy(video[idx]).permute(0, 3, 1, 2)
        return out

    # ---- access -------------------------------------------------------------------------------

    def __len__(self) -> int:
        return self.n

    @property
    def num_frames(self) -> int:
        return self.n

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self.frames.values(), *self.columns.values()))

    def get_batch(self, indices: Sequence[int] | torch.Tensor) -> dict[str, Any]:
        """The collated batch of `indices` (what default_collate of the items would give)."""
        idx = torch.as_tensor(indices, dtype=torch.int64).reshape(-1)
        start, end = self.ep_start[idx], self.ep_end[idx]
        out: dict[str, Any] = {}
        for key in self.keys:
            src = self.frames.get(key)
            if src is None:
                src = self.columns[key]
            delta = self.delta_indices.get(key)
            if delta is None:
                out[key] = src[idx]
                continue
            q = idx[:, None] + delta[None, :]
            out[f"{key}_is_pad"] = (q < start[:, None]) | (q >= end[:, None])
            q = torch.minimum(torch.maximum(q, start[:, None]), end[:, None] - 1)
            out[key] = src[q]
        for name in _INDEX_COLUMNS:
            out[name] = self.columns[name][idx]
        out["task"] = [self.tasks[int(t)] for t in out["task_index"]]
        return out

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {k: v[0] for k, v in self.get_batch([int(i)]).items()}
