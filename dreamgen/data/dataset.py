"""Read robot datasets: LeRobot v3 (through lerobot) and GR00T-flavoured LeRobot v2.0/v2.1.

Both give the same view: episodes with frames (decoded on demand), state, action and task text,
and IDM windows (frames at t + offsets, the action chunk starting at t). LeRobot cannot read v2.0
(it lacks per-episode stats) and GR00T's datasets are v2.x, so that reader is written here by hand
against the documented on-disk layout: meta/info.json, meta/episodes.jsonl, meta/tasks.jsonl,
meta/modality.json, data/chunk-*/episode_*.parquet, videos/chunk-*/<video key>/episode_*.mp4.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dreamgen.data.video import read_video, video_info
from dreamgen.errors import DatasetError

log = logging.getLogger(__name__)

STATE_KEY = "observation.state"
ACTION_KEY = "action"


@dataclass
class Episode:
    index: int
    length: int
    task: str
    state: np.ndarray | None  # (T, S) float32
    action: np.ndarray | None  # (T, A) float32
    video_paths: dict[str, Path] = field(default_factory=dict)  # video key -> file
    video_offsets: dict[str, int] = field(default_factory=dict)  # first frame of this episode in the file
    default_key: str | None = None
    extras: dict[str, np.ndarray] = field(default_factory=dict)  # other per-frame columns (rewards, annotations)

    def frames(self, indices: Sequence[int] | None = None, key: str | None = None) -> np.ndarray:
        """uint8 (T, H, W, 3) frames of this episode (all, or the given episode-relative indices)."""
        key = key or self.default_key
        if key not in self.video_paths:
            raise DatasetError(f"episode {self.index} has no video for key {key!r} "
                               f"(available: {sorted(self.video_paths) or 'none'})")
        idx = list(range(self.length)) if indices is None else [int(i) for i in indices]
        bad = [i for i in idx if not 0 <= i < self.length]
        if bad:
            raise DatasetError(f"episode {self.index}: frame {bad[0]} outside 0..{self.length - 1}")
        off = self.video_offsets.get(key, 0)
        return read_video(self.video_paths[key], [off + i for i in idx])


class RobotDataset:
    """Common interface of both readers."""

    root: Path
    version: str
    fps: float
    robot_type: str | None
    video_keys: list[str]
    modality: dict[str, Any] | None
    num_episodes: int

    def episode(self, i: int) -> Episode:
        raise NotImplementedError

    def check_finite(self) -> None:
        """Raise naming file, episode and column if any state/action value is NaN/inf."""
        for i in range(self.num_episodes):
            self.episode(i)  # each reader validates the numbers it reads

    def episodes(self) -> Iterator[Episode]:
        for i in range(self.num_episodes):
            yield self.episode(i)

    @property
    def state_dim(self) -> int | None:
        return _width(self.features.get(STATE_KEY))

    @property
    def action_dim(self) -> int | None:
        return _width(self.features.get(ACTION_KEY))

    features: dict[str, Any]

    @property
    def num_frames(self) -> int:
        return sum(self.episode_lengths)

    episode_lengths: list[int]

    def windows(self, offsets: Sequence[int], horizon: int) -> list[tuple[int, int]]:
        """(episode, t) pairs where frames t+offsets and actions t..t+horizon-1 all exist."""
        span = max(max(offsets), horizon - 1)
        return [(e, t) for e, n in enumerate(self.episode_lengths) for t in range(n - span)]

    def window(self, episode: Episode, t: int, offsets: Sequence[int], horizon: int,
               key: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Frames at t+offsets (len(offsets), H, W, 3) and the action chunk a[t:t+horizon]."""
        if episode.action is None:
            raise DatasetError(f"{self.root}: dataset has no {ACTION_KEY!r} column")
        frames = episode.frames([t + o for o in offsets], key=key)
        return frames, episode.action[t : t + horizon]

    def describe(self) -> dict[str, Any]:
        return {
            "root": str(self.root),
            "version": self.version,
            "fps": self.fps,
            "robot_type": self.robot_type,
            "episodes": self.num_episodes,
            "frames": self.num_frames,
            "video_keys": self.video_keys,
            "state_dim": self.state_dim,
            "action_dim": self.action_dim,
            "tasks": sorted(set(self.tasks)),
            "has_modality_json": self.modality is not None,
        }

    tasks: list[str]


def _width(feature: dict | None) -> int | None:
    if not feature:
        return None
    shape = feature.get("shape") or [1]
    return int(np.prod(shape))


def _read_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise DatasetError(f"{path}: missing ({what})")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: invalid JSON ({exc.msg} at line {exc.lineno})") from None


def _read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        raise DatasetError(f"{path}: missing")
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{path}:{n}: invalid JSON line ({exc.msg})") from None
    return rows


def read_info(root: str | Path) -> dict:
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder not found")
    info = _read_json(root / "meta" / "info.json", "every LeRobot dataset has meta/info.json")
    for key in ("codebase_version", "fps", "features"):
        if key not in info:
            raise DatasetError(f"{root / 'meta' / 'info.json'}: invalid info.json, no {key!r} field")
    return info


def read_modality(root: str | Path, required: bool = False) -> dict | None:
    path = Path(root) / "meta" / "modality.json"
    if not path.is_file():
        if required:
            raise DatasetError(f"{path}: missing (GR00T datasets need meta/modality.json)")
        return None
    modality = _read_json(path, "modality")
    if not isinstance(modality, dict) or not any(k in modality for k in ("state", "action", "video")):
        raise DatasetError(f"{path}: invalid modality.json, expected 'state'/'action'/'video' sections")
    from dreamgen.embodiments.embodiment import check_groups
    from dreamgen.errors import EmbodimentError

    for part in ("state", "action"):
        if part in modality:
            try:
                check_groups(modality[part], f"{path}: {part}")
            except EmbodimentError as exc:
                raise DatasetError(str(exc)) from None
    return modality


def check_modality_widths(root: Path, modality: dict | None, features: dict) -> None:
    """Refuse modality.json groups that index past the width of the column they describe."""
    for part, key in (("state", STATE_KEY), ("action", ACTION_KEY)):
        width = _width(features.get(key))
        groups = (modality or {}).get(part) or {}
        for name, g in groups.items():
            if width is not None and g["end"] > width:
                raise DatasetError(f"{root / 'meta' / 'modality.json'}: {part}.{name} indexes {g['start']}..{g['end']} "
                                   f"but {key} has width {width}")


def require_episodes(ds: RobotDataset, flag: str = "dataset") -> RobotDataset:
    """Refuse a dataset with no episodes, and one whose numbers are not all finite, before training."""
    if ds.num_episodes == 0 or ds.num_frames == 0:
        raise DatasetError(f"{flag} {ds.root}: dataset has no episodes (nothing to train on)")
    ds.check_finite()
    return ds


def check_finite_column(values: np.ndarray, where: str, key: str, episodes: np.ndarray | None = None) -> None:
    """Raise naming the file, episode and column of the first NaN/inf value."""
    bad = ~np.isfinite(values)
    if not bad.any():
        return
    row = int(np.argwhere(bad)[0][0])
    ep = f" episode {int(episodes[row])}," if episodes is not None else ""
    raise DatasetError(f"{where}:{ep} column {key!r} has NaN/inf (row {row}; {int(bad.any(axis=-1).sum())} "
                       "row(s) in all); fix or drop them before using this dataset")


def open_dataset(root: str | Path) -> RobotDataset:
    """Open a LeRobot v3 or GR00T-flavoured v2.x dataset folder."""
    info = read_info(root)
    version = str(info["codebase_version"])
    if version.startswith("v3"):
        return LeRobotV3Dataset(Path(root), info)
    if version.startswith("v2"):
        return GrootV2Dataset(Path(root), info)
    raise DatasetError(f"{Path(root) / 'meta' / 'info.json'}: unsupported codebase_version {version!r} "
                       "(supported: v2.0, v2.1, v3.x)")


class GrootV2Dataset(RobotDataset):
    """GR00T-flavoured LeRobot v2.0/v2.1: one parquet and one mp4 per episode."""

    def __init__(self, root: Path, info: dict):
        self.root, self.info = root, info
        self.version = str(info["codebase_version"])
        self.fps = float(info["fps"])
        self.robot_type = info.get("robot_type")
        self.features = info["features"]
        self.modality = read_modality(root)
        check_modality_widths(root, self.modality, self.features)
        self.chunks_size = int(info.get("chunks_size", 1000))
        self.data_path = info.get("data_path", "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet")
        self.video_path = info.get(
            "video_path", "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4")
        self._episodes = _read_jsonl(root / "meta" / "episodes.jsonl")
        tasks_path = root / "meta" / "tasks.jsonl"
        self._task_text = {int(t["task_index"]): t["task"] for t in _read_jsonl(tasks_path)} if tasks_path.is_file() else {}
        self.num_episodes = len(self._episodes)
        self.episode_lengths = [int(e["length"]) for e in self._episodes]
        self.tasks = [_first_task(e) for e in self._episodes]
        # the task table in index order when its indices are 0..n-1 (annotation columns point into it)
        self.task_table = ([self._task_text[i] for i in range(len(self._task_text))]
                           if sorted(self._task_text) == list(range(len(self._task_text))) else [])
        declared = [k for k, f in self.features.items() if f.get("dtype") == "video"]
        # v2.0 GR00T datasets may list a camera in info.json that was never exported: keep only keys
        # with files, and say which were dropped.
        self.video_keys = [k for k in declared if self._video_file(0, k).is_file()] if self._episodes else declared
        missing = sorted(set(declared) - set(self.video_keys))
        if missing:
            log.warning("%s: info.json lists video key(s) %s with no files; ignoring them", root, missing)
        self.extra_columns = extra_columns(self.features, self.modality)

    def _chunk(self, ep: int) -> int:
        return ep // self.chunks_size

    def video_files(self, i: int) -> dict[str, Path]:
        """Episode i's mp4 per video key, without reading its data."""
        ep_index = int(self._episodes[i]["episode_index"])
        return {k: self._video_file(ep_index, k) for k in self.video_keys}

    def _video_file(self, ep_index: int, key: str) -> Path:
        return self.root / self.video_path.format(episode_chunk=self._chunk(ep_index), video_key=key,
                                                  episode_index=ep_index)

    def episode(self, i: int) -> Episode:
        if not 0 <= i < self.num_episodes:
            raise DatasetError(f"{self.root}: episode {i} outside 0..{self.num_episodes - 1}")
        meta = self._episodes[i]
        ep_index = int(meta["episode_index"])
        path = self.root / self.data_path.format(episode_chunk=self._chunk(ep_index), episode_index=ep_index)
        if not path.is_file():
            raise DatasetError(f"{path}: missing data file for episode {ep_index}")
        try:
            df = pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises several types for corrupt files
            raise DatasetError(f"{path}: unreadable parquet ({exc})") from None
        task = _first_task(meta)
        if "task_index" in df and len(df) and int(df["task_index"].iloc[0]) in self._task_text:
            task = self._task_text[int(df["task_index"].iloc[0])]
        where = f"{path}: episode {ep_index}"
        return Episode(
            index=ep_index,
            length=len(df),
            task=task,
            state=_stack(df, STATE_KEY, where),
            action=_stack(df, ACTION_KEY, where),
            video_paths={k: self._video_file(ep_index, k) for k in self.video_keys},
            default_key=self.video_keys[0] if self.video_keys else None,
            extras={k: np.stack([np.asarray(v).reshape(-1) for v in df[k].to_numpy()]) if len(df) else
                    np.zeros((0, 1)) for k in self.extra_columns if k in df},
        )


EXTRA_COLUMNS = ("next.reward", "next.done")


def extra_columns(features: dict, modality: dict | None) -> list[str]:
    """The columns beyond state/action/video a conversion keeps: next.reward, next.done, and the
    annotation columns modality.json names (`annotation.<name>` unless it gives another original_key)."""
    names = list(EXTRA_COLUMNS)
    for name, spec in ((modality or {}).get("annotation") or {}).items():
        names.append((spec or {}).get("original_key") or f"annotation.{name}")
    lerobot_own = {"task_index", "index", "episode_index", "frame_index", "timestamp"}
    return [n for n in dict.fromkeys(names) if n in features and n not in lerobot_own]


def _first_task(meta: dict) -> str:
    tasks = meta.get("tasks") or [""]
    return tasks[0] if isinstance(tasks, list) else str(tasks)


def _stack(df: pd.DataFrame, key: str, where: str = "dataset") -> np.ndarray | None:
    if key not in df:
        return None
    try:
        values = np.stack([np.asarray(v, dtype=np.float32).reshape(-1) for v in df[key].to_numpy()])
    except (ValueError, TypeError) as exc:
        raise DatasetError(f"{where}: column {key!r} is not a numeric vector per row ({exc})") from None
    check_finite_column(values, where, key)
    return values


class LeRobotV3Dataset(RobotDataset):
    """LeRobot v3 via lerobot's own metadata and parquet loading; frames decoded with PyAV."""

    def __init__(self, root: Path, info: dict):
        self.root, self.info = root, info
        self.version = str(info["codebase_version"])
        self.fps = float(info["fps"])
        self.robot_type = info.get("robot_type")
        self.features = info["features"]
        self.modality = read_modality(root)
        check_modality_widths(root, self.modality, self.features)
        self.video_keys = [k for k, f in self.features.items() if f.get("dtype") == "video"]
        self.num_episodes = int(info.get("total_episodes", 0))
        check_v3_files(root, info, self.video_keys)
        eps = self._lerobot.meta.episodes
        self.episode_lengths = [int(n) for n in eps["length"]]
        self.tasks = [t[0] if len(t) else "" for t in eps["tasks"]]
        self.num_episodes = len(self.episode_lengths)

    @cached_property
    def _lerobot(self):
        import os

        from lerobot.datasets.lerobot_dataset import LeRobotDataset

        os.environ["HF_HUB_OFFLINE"] = "1"  # a local dataset never reaches for the Hub, whatever is missing
        try:
            return LeRobotDataset(repo_id=f"local/{self.root.name}", root=self.root, video_backend="pyav")
        except Exception as exc:  # lerobot raises many kinds for broken folders; name the folder
            raise DatasetError(f"{self.root}: lerobot cannot open this v3 dataset ({type(exc).__name__}: {exc})") from None

    @cached_property
    def _columns(self) -> dict[str, np.ndarray]:
        hf = self._lerobot.hf_dataset
        cols = {"episode_index": np.asarray(hf["episode_index"])}
        for key in (STATE_KEY, ACTION_KEY):
            if key in hf.column_names:
                cols[key] = np.asarray(hf.with_format("numpy")[key], dtype=np.float32).reshape(len(hf), -1)
                check_finite_column(cols[key], str(self.root / "data"), key, cols["episode_index"])
        return cols

    def check_finite(self) -> None:
        self._columns  # noqa: B018  (validated on load)

    def episode(self, i: int) -> Episode:
        if not 0 <= i < self.num_episodes:
            raise DatasetError(f"{self.root}: episode {i} outside 0..{self.num_episodes - 1}")
        meta = self._lerobot.meta
        row = meta.episodes[i]
        lo, hi = int(row["dataset_from_index"]), int(row["dataset_to_index"])
        paths, offsets = {}, {}
        for key in self.video_keys:
            paths[key] = self.root / meta.get_video_file_path(i, key)
            offsets[key] = int(round(float(row[f"videos/{key}/from_timestamp"]) * self.fps))
        cols = self._columns
        return Episode(
            index=int(row["episode_index"]),
            length=hi - lo,
            task=row["tasks"][0] if row["tasks"] else "",
            state=cols[STATE_KEY][lo:hi] if STATE_KEY in cols else None,
            action=cols[ACTION_KEY][lo:hi] if ACTION_KEY in cols else None,
            video_paths=paths,
            video_offsets=offsets,
            default_key=self.video_keys[0] if self.video_keys else None,
        )


def check_video_files(ds: RobotDataset, max_episodes: int | None = None) -> list[str]:
    """Problems found by probing each episode's video files (missing, unreadable, too short)."""
    problems = []
    for i in range(ds.num_episodes if max_episodes is None else min(max_episodes, ds.num_episodes)):
        ep = ds.episode(i)
        for key, path in ep.video_paths.items():
            try:
                n = video_info(path).num_frames
            except Exception as exc:
                problems.append(str(exc))
                continue
            if n < ep.video_offsets.get(key, 0) + ep.length and ds.version.startswith("v2"):
                problems.append(f"{path}: {n} frames but episode {ep.index} has {ep.length} rows (truncated?)")
    return problems


def check_v3_files(root: Path, info: dict, video_keys: list[str]) -> None:
    """Every metadata, data and video file a LeRobot v3 dataset lists must be here: LeRobot would
    otherwise try to download the missing ones from the Hub."""
    meta = root / "meta"
    for name in ("tasks.parquet",):
        if not (meta / name).is_file():
            raise DatasetError(f"{meta / name}: missing (every LeRobot v3 dataset has it)")
    ep_files = sorted((meta / "episodes").glob("chunk-*/file-*.parquet"))
    if not ep_files:
        raise DatasetError(f"{meta / 'episodes'}: missing episode metadata (meta/episodes/chunk-*/file-*.parquet)")
    try:
        eps = pd.concat([pd.read_parquet(f) for f in ep_files])
    except Exception as exc:  # pyarrow raises several types for corrupt files
        raise DatasetError(f"{meta / 'episodes'}: unreadable episode metadata ({exc})") from None
    data_path = info.get("data_path", "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet")
    video_path = info.get("video_path", "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4")
    wanted = set()
    for prefix, template, key in [("data", data_path, None)] + [(f"videos/{k}", video_path, k) for k in video_keys]:
        cols = [f"{prefix}/chunk_index", f"{prefix}/file_index"]
        if template and all(c in eps.columns for c in cols):
            for chunk, file in eps[cols].drop_duplicates().itertuples(index=False):
                wanted.add(template.format(video_key=key, chunk_index=int(chunk), file_index=int(file)))
    for rel in sorted(wanted):
        if not (root / rel).is_file():
            raise DatasetError(f"{root / rel}: missing (listed by {meta / 'episodes'}); a local dataset is never "
                               "completed from the Hub")
