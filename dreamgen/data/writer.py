"""Write LeRobot v3 datasets through `LeRobotDataset.create`, plus GR00T's `meta/modality.json`.

Everything goes to a temporary sibling folder that is renamed to the output at the end, so a crash
never leaves a folder that looks like a finished dataset.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from dreamgen.embodiments import Embodiment
from dreamgen.errors import DatasetError, OutputExistsError
from dreamgen.io import clean_stale_partials, partial_path, to_json

log = logging.getLogger(__name__)

PROVENANCE_FILE = "dreamgen_provenance.json"


def _dim_names(embodiment: Embodiment, part: str, width: int) -> list[str]:
    names = [f"{part}_{i}" for i in range(width)]
    for group, (lo, hi) in embodiment.groups(part).items():
        for j, i in enumerate(range(lo, min(hi, width))):
            names[i] = group if hi - lo == 1 else f"{group}_{j}"
    return names


def modality_for(embodiment: Embodiment, video_keys: list[str]) -> dict[str, Any]:
    """The embodiment's modality.json with its video section naming the keys actually written."""
    modality = json.loads(json.dumps(embodiment.modality))
    modality["video"] = {k.removeprefix("observation.images."): {"original_key": k} for k in video_keys}
    modality.setdefault("annotation", {"human.task_description": {"original_key": "task_index"}})
    return modality


@contextmanager
def _no_map_bars():
    """LeRobot saves each episode through HF `datasets`, which draws a "Map" bar inside our own progress bar."""
    import datasets

    was = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was:
            datasets.enable_progress_bars()


class DatasetWriter:
    """Collect episodes into a new LeRobot v3 dataset.

    with DatasetWriter(out, embodiment) as w:
        w.add_episode(frames, action, task="pick the cube", state=state)
    """

    def __init__(self, out_dir: str | Path, embodiment: Embodiment, provenance: dict | None = None,
                 video_keys: list[str] | None = None, with_state: bool | None = None,
                 vcodec: str = "h264", crf: int = 15, pix_fmt: str = "yuv420p", gop: int = 2,
                 extra_features: dict[str, dict] | None = None, copy_videos: bool = False,
                 tasks: list[str] | None = None):
        """`extra_features`: more per-frame columns (LeRobot feature specs, e.g. next.reward), given per
        episode as `extras`. `copy_videos`: each episode brings its own mp4 files (`video_files`), copied
        into the dataset as they are (`dreamgen.data.videocopy`). `tasks`: register these task texts
        first, in this order, so that their indices are 0, 1, ... as in the source dataset."""
        self.out_dir = Path(out_dir)
        if self.out_dir.exists():
            raise OutputExistsError(f"{self.out_dir}: output already exists; choose a new path or remove it")
        self.embodiment = embodiment
        self.provenance = dict(provenance or {})
        self.video_keys = list(video_keys or [embodiment.video_key])
        self.with_state = with_state
        self.vcodec, self.crf, self.pix_fmt, self.gop = vcodec, crf, pix_fmt, gop
        self.extra_features = dict(extra_features or {})
        self.copy_videos = copy_videos
        self.tasks = list(tasks or [])
        clean_stale_partials(self.out_dir)  # hidden leftovers of an interrupted writer of this output
        self.tmp_dir = partial_path(self.out_dir)
        self._ds = None
        self.num_episodes = 0
        self.num_frames = 0

    # -- context manager -------------------------------------------------------------------
    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def abort(self) -> None:
        if self._ds is not None:
            try:
                self._ds.finalize()
            except Exception:  # already failing: cleaning up matters more than this error
                pass
        shutil.rmtree(self.tmp_dir, ignore_errors=True)

    # -- writing ---------------------------------------------------------------------------
    def _create(self, frames: dict[str, np.ndarray], state: np.ndarray | None) -> None:
        from lerobot.configs.video import RGBEncoderConfig
        from lerobot.datasets.lerobot_dataset import LeRobotDataset

        from dreamgen.data.video import quiet_libav

        quiet_libav()  # libx264 prints a banner and a statistics block per episode at INFO
        emb = self.embodiment
        if self.with_state is None:
            self.with_state = state is not None
        features: dict[str, dict] = {}
        for key in self.video_keys:
            h, w = frames[key].shape[1:3]
            features[key] = {"dtype": "video", "shape": (h, w, 3), "names": ["height", "width", "channels"]}
        if self.with_state:
            sdim = state.shape[1]
            features["observation.state"] = {"dtype": "float32", "shape": (sdim,),
                                             "names": _dim_names(emb, "state", sdim)}
        features["action"] = {"dtype": "float32", "shape": (emb.action_dim,),
                              "names": _dim_names(emb, "action", emb.action_dim)}
        features.update(self.extra_features)
        self.tmp_dir.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.tmp_dir, ignore_errors=True)
        fps = emb.fps
        if float(fps) != int(fps):
            raise DatasetError(f"embodiment {emb.name!r}: LeRobot needs an integer fps, got {fps}")
        dataset_class = LeRobotDataset
        if self.copy_videos:
            from dreamgen.data.videocopy import CopyingLeRobotDataset as dataset_class
        self._ds = dataset_class.create(
            repo_id=f"local/{self.out_dir.name}",
            fps=int(fps),
            features=features,
            root=self.tmp_dir,
            robot_type=emb.robot_type,
            use_videos=True,
            video_backend="pyav",
            rgb_encoder=RGBEncoderConfig(vcodec=self.vcodec, crf=self.crf, pix_fmt=self.pix_fmt, g=self.gop),
            streaming_encoding=self.copy_videos,
        )
        if self.tasks:
            self._ds.meta.save_episode_tasks(list(dict.fromkeys(self.tasks)))

    def add_episode(self, frames: np.ndarray | dict[str, np.ndarray], action: np.ndarray, task: str,
                    state: np.ndarray | None = None, extras: dict[str, np.ndarray] | None = None,
                    video_files: dict[str, Path] | None = None) -> None:
        if not isinstance(frames, dict):
            frames = {self.video_keys[0]: frames}
        missing = set(self.video_keys) - set(frames)
        if missing:
            raise DatasetError(f"{self.out_dir}: episode lacks frames for {sorted(missing)}")
        action = np.asarray(action, dtype=np.float32)
        n = len(action)
        where = f"{self.out_dir} episode {self.num_episodes}"
        if action.ndim != 2 or n == 0:
            raise DatasetError(f"{where}: action must be (T, A) with T > 0, got {action.shape}")
        self.embodiment.check_widths(None if state is None else np.asarray(state).shape[-1], action.shape[1], where)
        if not np.isfinite(action).all():
            raise DatasetError(f"{where}: action contains NaN/inf")
        for key in self.video_keys:
            f = frames[key]
            if f.dtype != np.uint8 or f.ndim != 4 or f.shape[-1] != 3 or len(f) != n:
                raise DatasetError(f"{where}: frames[{key!r}] must be uint8 (T={n}, H, W, 3), got "
                                   f"{f.dtype} {f.shape}")
        if state is not None:
            state = np.asarray(state, dtype=np.float32)
            if state.shape[0] != n:
                raise DatasetError(f"{where}: state has {state.shape[0]} rows, action {n}")
            if not np.isfinite(state).all():
                raise DatasetError(f"{where}: observation.state contains NaN/inf")
        if not task or not task.strip():
            raise DatasetError(f"{where}: empty task text")
        if self._ds is None:
            self._create(frames, state)
        if self.with_state and state is None:
            raise DatasetError(f"{where}: this dataset stores observation.state but the episode has none")
        extras = self._check_extras(extras or {}, n, where)
        if self.copy_videos:
            if set(video_files or {}) != set(self.video_keys):
                raise DatasetError(f"{where}: copying videos needs a file for each of {self.video_keys}")
            self._ds.writer._streaming_encoder.sources = {k: Path(p) for k, p in video_files.items()}
        for t in range(n):
            frame = {key: frames[key][t] for key in self.video_keys}
            if self.with_state:
                frame["observation.state"] = state[t]
            frame["action"] = action[t]
            frame.update({k: v[t] for k, v in extras.items()})
            frame["task"] = task.strip()
            self._ds.add_frame(frame)
        with _no_map_bars():
            self._ds.save_episode()
        self.num_episodes += 1
        self.num_frames += n

    def _check_extras(self, extras: dict[str, np.ndarray], n: int, where: str) -> dict[str, np.ndarray]:
        """Each extra column as (T, *shape) in its feature's dtype."""
        if set(extras) != set(self.extra_features):
            raise DatasetError(f"{where}: extra columns {sorted(extras)}, the dataset has {sorted(self.extra_features)}")
        out = {}
        for key, values in extras.items():
            spec = self.extra_features[key]
            values = np.asarray(values, dtype=spec["dtype"]).reshape(n, *spec["shape"])
            if values.dtype.kind == "f" and not np.isfinite(values).all():
                raise DatasetError(f"{where}: {key} contains NaN/inf")
            out[key] = values
        return out

    def _record_copied_video_info(self) -> None:
        """LeRobot records its encoder settings beside each video's probe; copied streams were not made by it."""
        from lerobot.datasets.video_utils import get_video_info

        info_path = self.tmp_dir / "meta" / "info.json"
        info = json.loads(info_path.read_text())
        for key in self.video_keys:
            first = self.tmp_dir / info["video_path"].format(video_key=key, chunk_index=0, file_index=0)
            info["features"][key]["info"] = get_video_info(first)
        info_path.write_text(json.dumps(info, indent=4))

    def close(self) -> Path:
        if self._ds is None:
            raise DatasetError(f"{self.out_dir}: no episodes were written")
        with _no_map_bars():
            self._ds.finalize()
        if self.copy_videos:
            self._record_copied_video_info()
        meta = self.tmp_dir / "meta"
        (meta / "modality.json").write_text(json.dumps(modality_for(self.embodiment, self.video_keys), indent=2))
        prov = {"embodiment": self.embodiment.name, "command": " ".join(sys.argv),
                "videos": "copied from the source" if self.copy_videos else f"encoded ({self.vcodec}, crf {self.crf})",
                **self.provenance}
        (meta / PROVENANCE_FILE).write_text(to_json(prov, meta / PROVENANCE_FILE, indent=2, default=str))
        shutil.rmtree(self.tmp_dir / "images", ignore_errors=True)  # LeRobot's PNG staging area
        if self.out_dir.exists():
            shutil.rmtree(self.tmp_dir, ignore_errors=True)
            raise OutputExistsError(f"{self.out_dir}: appeared while writing; not overwriting it")
        self.tmp_dir.rename(self.out_dir)
        log.info("wrote %d episodes (%d frames) to %s", self.num_episodes, self.num_frames, self.out_dir)
        return self.out_dir
