"""The training data of a policy run: every dataset opened with the policy's frame offsets, mixed.

`open_mixture` gives the mix (optionally decoded once into memory, the frame cache) with statistics
over the mix; `cycle_batches` loops a DataLoader forever and refuses one that yields nothing."""

from __future__ import annotations

from typing import Any

import numpy as np

from dreamgen.embodiments import Embodiment
from dreamgen.errors import DatasetError, DreamgenError
from dreamgen.policy.frame_cache import CachedDataset, should_cache
from dreamgen.policy.mixing import (
    BOOKKEEPING_KEYS,
    CachedMixedDataset,
    DatasetSpec,
    MixedDataset,
    MixtureMeta,
    mix_stats,
)
from dreamgen.policy.task_encoding import TASK_FEATURE_KEY, TaskEncoder


def cycle_batches(loader):
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:  # would spin forever
            raise DreamgenError("the training data loader yielded no batch in a whole pass (fewer samples than "
                                "one batch with drop_last); lower --batch-size or add data")


def open_mixture(specs: list[DatasetSpec], cams: list[str], use_state: bool, embodiment: Embodiment,
                 train_cfg: Any, task_encoder: TaskEncoder | None = None, frame_cache: str = "off",
                 frame_cache_gb: float = 4.0, progress: bool = False) -> MixedDataset:
    """Open every dataset with the policy's frame offsets; stats over the mix; features the policy uses.

    With an enabled `task_encoder` the policy also gets the instruction feature (a feature of the mix's
    metadata with identity statistics; computed from each sample's task text in the training loop).
    With the frame cache on (or auto and the decoded frames fit `frame_cache_gb`) every dataset is loaded
    into memory once and the result is a `CachedMixedDataset`."""
    from lerobot.datasets.dataset_metadata import LeRobotDatasetMetadata
    from lerobot.datasets.factory import resolve_delta_timestamps
    from lerobot.datasets.lerobot_dataset import LeRobotDataset
    from lerobot.utils.constants import IMAGENET_STATS

    keep = [*cams, embodiment.action_key] + ([embodiment.state_key] if use_state else [])
    metas = [LeRobotDatasetMetadata(f"local/{s.path.name}", root=s.path) for s in specs]
    real_meta = metas[0]
    features = {k: v for k, v in real_meta.features.items() if k in keep or k in BOOKKEEPING_KEYS}
    datasets = []
    for spec, meta in zip(specs, metas, strict=True):
        delta = resolve_delta_timestamps(train_cfg.policy, meta) or {}
        delta = {k: v for k, v in delta.items() if k in keep} or None
        try:
            datasets.append(LeRobotDataset(
                f"local/{spec.path.name}", root=spec.path, delta_timestamps=delta, return_uint8=True,
                video_backend=train_cfg.dataset.video_backend, tolerance_s=train_cfg.tolerance_s,
            ))
        except Exception as exc:  # a broken dataset must not look like a training bug
            raise DatasetError(f"{spec.path}: cannot open as a LeRobot v3 dataset ({exc})") from exc
    for spec, meta in zip(specs, metas, strict=True):
        missing = [k for k in keep if k not in (meta.stats or {})]
        if missing:
            raise DatasetError(f"{spec.path}: meta/stats.json lacks statistics for {missing}")
    w = np.asarray([s.weight for s in specs], dtype=np.float64)
    stats = mix_stats([m.stats for m in metas], w / w.sum(), keep)
    if train_cfg.dataset.use_imagenet_stats:
        for key in cams:
            for name, value in IMAGENET_STATS.items():
                stats[key][name] = np.asarray(value, dtype=np.float32)
    if task_encoder is not None and task_encoder.enabled:
        for spec, meta in zip(specs, metas, strict=True):
            if TASK_FEATURE_KEY in meta.features:
                raise DatasetError(f"{spec.path}: has its own {TASK_FEATURE_KEY!r} feature, which the instruction "
                                   "feature would replace; pass --task-conditioning none")
        features[TASK_FEATURE_KEY] = task_encoder.feature()
        stats[TASK_FEATURE_KEY] = task_encoder.stats()
    meta = MixtureMeta(real_meta, features, stats)
    if should_cache(frame_cache, metas, cams, frame_cache_gb):
        cached = [CachedDataset(ds, keep, progress=progress) for ds in datasets]
        return CachedMixedDataset(cached, specs, keep, meta)
    return MixedDataset(datasets, specs, keep, meta)

