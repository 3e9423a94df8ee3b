"""Normalisation statistics in the GR00T `stats.json` form, computed from a dataset."""

from __future__ import annotations

import numpy as np

from dreamgen.data.dataset import ACTION_KEY, STATE_KEY, RobotDataset
from dreamgen.errors import DatasetError


def array_stats(x: np.ndarray) -> dict[str, list[float]]:
    x = np.asarray(x, dtype=np.float64)
    return {
        "mean": x.mean(0).tolist(),
        "std": x.std(0).tolist(),
        "min": x.min(0).tolist(),
        "max": x.max(0).tolist(),
        "q01": np.quantile(x, 0.01, axis=0).tolist(),
        "q99": np.quantile(x, 0.99, axis=0).tolist(),
    }


def compute_stats(ds: RobotDataset) -> dict[str, dict[str, list[float]]]:
    """Per-dimension mean/std/min/max/q01/q99 of state and action over every frame."""
    cols: dict[str, list[np.ndarray]] = {STATE_KEY: [], ACTION_KEY: []}
    for ep in ds.episodes():
        if ep.state is not None:
            cols[STATE_KEY].append(ep.state)
        if ep.action is not None:
            cols[ACTION_KEY].append(ep.action)
    out = {k: array_stats(np.concatenate(v)) for k, v in cols.items() if v}
    if ACTION_KEY not in out:
        raise DatasetError(f"{ds.root}: no action column to compute statistics from")
    return out
