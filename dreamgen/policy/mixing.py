"""Several LeRobot v3 datasets (real + neural trajectories) mixed with sampling weights.

DreamGen trains a policy on real demonstrations plus "neural trajectories" (dreamed videos labelled by
the IDM). Each dataset gets a weight; a frame is drawn from dataset d with probability
w_d / sum(w), uniformly among that dataset's usable frames. So `--dataset real --dataset neural:0.5`
draws one neural frame for every two real ones, whatever the datasets' sizes.

Everything is checked before training starts: every dataset must exist, share the embodiment's
action/state widths, fps, robot type and the cameras the policy looks through. Normalisation
statistics are computed over the mix as it is sampled (pooled with the sampling probabilities).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dreamgen.embodiments import Embodiment
from dreamgen.errors import DatasetError, EmbodimentError
from dreamgen.io import read_json

log = logging.getLogger(__name__)

# Keys every LeRobot item carries besides features; kept when present.
BOOKKEEPING_KEYS = ("timestamp", "frame_index", "episode_index", "index", "task_index", "task")


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset of the mix: a local LeRobot v3 folder and its sampling weight."""

    path: Path
    weight: float = 1.0

    def __post_init__(self) -> None:
        w = self.weight
        if not isinstance(w, int | float) or isinstance(w, bool) or not math.isfinite(w) or w <= 0:
            raise DatasetError(f"{self.path}: sampling weight must be a positive number, got {w!r}")


def parse_dataset_spec(text: str) -> DatasetSpec:
    """`PATH` or `PATH:WEIGHT` (the weight is whatever follows the last colon, if it parses)."""
    path, weight = text, 1.0
    if ":" in text:
        head, tail = text.rsplit(":", 1)
        try:
            weight = float(tail)
        except ValueError:
            if not Path(text).exists():  # a colon that is not a weight separator and no such path
                raise DatasetError(
                    f"{text!r}: expected PATH or PATH:WEIGHT with a positive number as WEIGHT, got {tail!r}"
                ) from None
        else:
            path = head
    return DatasetSpec(Path(path).expanduser(), weight)


# ----------------------------------------------------------------------------------------------
# validation


def read_info(path: Path) -> dict[str, Any]:
    info_path = path / "meta" / "info.json"
    if not path.is_dir():
        raise DatasetError(f"{path}: dataset folder does not exist")
    if not info_path.is_file():
        raise DatasetError(f"{path}: not a LeRobot dataset (no meta/info.json)")
    info = read_json(info_path, DatasetError)
    version = str(info.get("codebase_version", ""))
    if not version.startswith("v3"):
        raise DatasetError(
            f"{path}: LeRobot dataset version {version or '?'}; training reads v3 datasets "
            "(convert a v2.1 dataset with `python -m lerobot.scripts.convert_dataset_v21_to_v30`)"
        )
    return info


def _width(info: dict, key: str) -> int | None:
    feat = info.get("features", {}).get(key)
    if feat is None:
        return None
    shape = feat.get("shape") or [0]
    return int(shape[0])


def check_mixture(
    specs: Sequence[DatasetSpec], embodiment: Embodiment, video_keys: Sequence[str] | None = None,
    use_state: bool = True,
) -> tuple[list[dict], list[str], bool]:
    """Check every dataset against the embodiment and the first (real) dataset.

    Datasets match by layout (widths, modality groups, fps), not by the names of the embodiments they
    were made with. With `use_state=False` (`--no-state`) a dataset without `observation.state` is fine.
    Returns (infos, camera keys the policy will use, whether observation.state is used).
    Raises DatasetError/EmbodimentError naming the dataset and the problem.
    """
    if not specs:
        raise DatasetError("no dataset given: pass at least one --dataset PATH")
    infos = [read_info(s.path) for s in specs]
    real, real_info = specs[0], infos[0]
    act_key, state_key = embodiment.action_key, embodiment.state_key
    for spec, info in zip(specs, infos, strict=True):
        where = str(spec.path)
        if act_key not in info.get("features", {}):
            raise DatasetError(f"{where}: no {act_key!r} feature: a policy needs action labels")
        a = _width(info, act_key)
        s = _width(info, state_key)
        embodiment.check_widths(s, a, where)
        if a != _width(real_info, act_key):
            raise EmbodimentError(
                f"{where}: action width {a} differs from the real dataset {real.path} "
                f"({_width(real_info, act_key)})"
            )
        if info.get("fps") != real_info.get("fps"):
            raise DatasetError(
                f"{where}: fps {info.get('fps')} differs from the real dataset {real.path} ({real_info.get('fps')}); "
                "action chunks would span different times"
            )
        rt, real_rt = info.get("robot_type"), real_info.get("robot_type")
        if rt and real_rt and rt != real_rt:  # names differ with converters and folders: the layout decides
            log.warning("%s: robot type %r differs from the real dataset's (%r); mixing because the layouts "
                        "match", where, rt, real_rt)
        prov = _provenance_embodiment(spec.path)
        if prov and prov not in _embodiment_names(embodiment):  # a layout check below decides, not the name
            log.info("%s: made for embodiment %r, training as %r (layouts are compared)", where, prov,
                     embodiment.name)
        _check_modality(spec.path, embodiment)

    cams_per_ds = [
        [k for k, f in info.get("features", {}).items() if f.get("dtype") in ("video", "image")] for info in infos
    ]
    if video_keys:
        wanted = list(video_keys)
    else:
        wanted = [k for k in embodiment.video_keys if k in cams_per_ds[0]] or cams_per_ds[0]
    if not wanted:
        raise DatasetError(f"{real.path}: no camera (video/image feature) to train a visuomotor policy on")
    for spec, cams in zip(specs, cams_per_ds, strict=True):
        missing = [k for k in wanted if k not in cams]
        if missing:
            raise DatasetError(
                f"{spec.path}: missing camera(s) {missing} (has {cams}); every dataset of the mix needs the "
                "cameras the policy uses (choose them with --video-key)"
            )
    has_state = [state_key in info.get("features", {}) for info in infos]
    if not use_state:
        return infos, wanted, False
    if has_state[0] and not all(has_state):
        lacking = [str(s.path) for s, h in zip(specs, has_state, strict=True) if not h]
        raise DatasetError(
            f"{', '.join(lacking)}: no {state_key!r} feature but the real dataset has one; label state with the "
            "IDM, or train without state (--no-state)"
        )
    return infos, wanted, has_state[0]


def _embodiment_names(e: Embodiment) -> set[str]:
    return {e.name, e.robot_type, *e.aliases}


def _provenance_embodiment(path: Path) -> str | None:
    p = path / "meta" / "dreamgen_provenance.json"
    if not p.is_file():
        return None
    try:
        prov = json.loads(p.read_text())
    except json.JSONDecodeError:
        return None
    emb = prov.get("embodiment") if isinstance(prov, dict) else None
    if isinstance(emb, dict):
        emb = emb.get("name")
    return emb if isinstance(emb, str) and emb else None


def _check_modality(path: Path, embodiment: Embodiment) -> None:
    p = path / "meta" / "modality.json"
    if not p.is_file():
        return
    modality = read_json(p, DatasetError)
    for part in ("state", "action"):
        theirs = {k: (g.get("start"), g.get("end")) for k, g in modality.get(part, {}).items()}
        ours = embodiment.groups(part)
        if theirs and ours and theirs != ours:
            raise EmbodimentError(
                f"{p}: {part} layout {theirs} differs from embodiment {embodiment.name!r} ({ours})"
            )


# ----------------------------------------------------------------------------------------------
# statistics


def mix_stats(stats_list: Sequence[dict], probs: Sequence[float], keys: Sequence[str]) -> dict[str, dict]:
    """Pool per-dataset statistics with the sampling probabilities: the statistics of the mix as drawn.

    mean and std are exact for the mixture distribution; min/max are the extremes; quantiles are
    the probability-weighted average of the datasets' quantiles (an approximation, as in LeRobot's
    own aggregation).
    """
    p = np.asarray(probs, dtype=np.float64)
    p = p / p.sum()
    out: dict[str, dict] = {}
    for key in keys:
        per = [s.get(key) for s in stats_list]
        if any(x is None for x in per):
            continue
        st: dict[str, np.ndarray] = {}
        means = [np.asarray(x["mean"], dtype=np.float64) for x in per]
        mean = sum(w * m for w, m in zip(p, means, strict=True))
        st["mean"] = mean
        if all("std" in x for x in per):
            var = sum(
                w * (np.asarray(x["std"], dtype=np.float64) ** 2 + (m - mean) ** 2)
                for w, x, m in zip(p, per, means, strict=True)
            )
            st["std"] = np.sqrt(var)
        if all("min" in x for x in per):
            st["min"] = np.min(np.stack([np.asarray(x["min"], dtype=np.float64) for x in per]), axis=0)
        if all("max" in x for x in per):
            st["max"] = np.max(np.stack([np.asarray(x["max"], dtype=np.float64) for x in per]), axis=0)
        for q in sorted(set.intersection(*[set(x) for x in per])):
            if q.startswith("q") and q[1:].isdigit():
                st[q] = sum(w * np.asarray(x[q], dtype=np.float64) for w, x in zip(p, per, strict=True))
        if all("count" in x for x in per):
            st["count"] = np.asarray([int(sum(int(np.asarray(x["count"]).reshape(-1)[0]) for x in per))])
        out[key] = {k: v.astype(np.float32) if k != "count" else v for k, v in st.items()}
    return out


# ----------------------------------------------------------------------------------------------
# the mixed dataset and its sampler


class MixtureMeta:
    """What `make_policy` / processors read from a dataset's metadata, for the mix.

    Features are the real dataset's, restricted to the cameras/state used; stats are the mix's.
    Anything else is read from the real dataset's metadata.
    """

    def __init__(self, base_meta: Any, features: dict, stats: dict):
        self._base = base_meta
        self.features = features
        self.stats = stats

    @property
    def camera_keys(self) -> list[str]:
        return [k for k, f in self.features.items() if f.get("dtype") in ("video", "image")]

    @property
    def video_keys(self) -> list[str]:
        return [k for k, f in self.features.items() if f.get("dtype") == "video"]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # keeps pickling (DataLoader workers) from recursing
            raise AttributeError(name)
        return getattr(self._base, name)


class MixedDataset(torch.utils.data.Dataset):
    """Concatenation of LeRobot datasets whose items carry only the features the policy uses.

    Index i < len(ds0) is dataset 0's frame i, and so on; `dataset_index` is added to each item.
    Which frames get drawn, and how often, is `WeightedMixSampler`'s job.
    """

    def __init__(self, datasets: Sequence[Any], specs: Sequence[DatasetSpec], keep_features: Sequence[str],
                 meta: MixtureMeta):
        self.datasets = list(datasets)
        self.specs = list(specs)
        self.meta = meta
        self.offsets = np.cumsum([0] + [len(d) for d in self.datasets])
        drop = set()
        for d in self.datasets:
            drop.update(k for k in d.meta.features if k not in keep_features and k not in BOOKKEEPING_KEYS)
        self._drop = drop

    def __len__(self) -> int:
        return int(self.offsets[-1])

    @property
    def num_frames(self) -> int:
        return len(self)

    @property
    def num_episodes(self) -> int:
        return sum(d.num_episodes for d in self.datasets)

    def locate(self, idx: int) -> tuple[int, int]:
        d = int(np.searchsorted(self.offsets, idx, side="right") - 1)
        return d, int(idx - self.offsets[d])

    def __getitem__(self, idx: int) -> dict:
        d, local = self.locate(idx)
        item = self.datasets[d][local]
        for k in list(item):
            if k in self._drop or (k.endswith("_is_pad") and k[: -len("_is_pad")] in self._drop):
                del item[k]
        item["dataset_index"] = torch.tensor(d)
        return item


def episode_bounds(dataset: Any) -> list[tuple[int, int]]:
    """(from, to) frame index ranges of every episode of a LeRobot dataset loaded in full."""
    eps = dataset.meta.episodes
    return list(zip((int(x) for x in eps["dataset_from_index"]), (int(x) for x in eps["dataset_to_index"]),
                    strict=True))


class WeightedMixSampler(torch.utils.data.Sampler[int]):
    """Draws global indices of a `MixedDataset`: dataset d with probability w_d / sum(w).

    Within a dataset the frame is uniform over its usable frames (episode tails too short for a full
    action chunk are left out, as LeRobot's EpisodeAwareSampler does). Sampling is with replacement,
    `num_samples` per pass, deterministic in (seed, pass). `load_state_dict` resumes mid-pass.
    """

    def __init__(self, frames_per_dataset: Sequence[np.ndarray], weights: Sequence[float], num_samples: int,
                 seed: int = 0):
        if len(frames_per_dataset) != len(weights):
            raise ValueError("one weight per dataset")
        for i, f in enumerate(frames_per_dataset):
            if len(f) == 0:
                raise DatasetError(f"dataset #{i} of the mix has no usable frame (episodes shorter than the chunk)")
        self.frames = [np.asarray(f, dtype=np.int64) for f in frames_per_dataset]
        w = np.asarray(weights, dtype=np.float64)
        self.probs = w / w.sum()
        self.num_samples = int(num_samples)
        self.seed = seed
        self.epoch = 0
        self.start_index = 0

    @classmethod
    def for_mixture(cls, mix: MixedDataset, drop_n_last_frames: int = 0, num_samples: int | None = None,
                    seed: int = 0, min_samples: int = 0) -> WeightedMixSampler:
        """`num_samples` per pass: default the usable frames, at least `min_samples` (e.g. one batch per
        process: with drop_last, a pass shorter than a batch would yield nothing, forever)."""
        frames = []
        for d, ds in enumerate(mix.datasets):
            idx = [np.arange(a, max(a, b - drop_n_last_frames)) for a, b in episode_bounds(ds)]
            frames.append(np.concatenate(idx) + mix.offsets[d] if idx else np.zeros(0, dtype=np.int64))
        n = max(num_samples if num_samples is not None else sum(len(f) for f in frames), min_samples)
        return cls(frames, [s.weight for s in mix.specs], n, seed)

    def __len__(self) -> int:
        return self.num_samples

    def indices(self, epoch: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, epoch])
        which = rng.choice(len(self.frames), size=self.num_samples, p=self.probs)
        out = np.empty(self.num_samples, dtype=np.int64)
        for d, frames in enumerate(self.frames):
            sel = which == d
            out[sel] = frames[rng.integers(0, len(frames), size=int(sel.sum()))]
        return out

    def __iter__(self) -> Iterator[int]:
        idx = self.indices(self.epoch)[self.start_index:]
        self.start_index = 0
        self.epoch += 1
        yield from (int(i) for i in idx)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "start_index": self.start_index}

    def load_state_dict(self, state: dict) -> None:
        self.epoch = int(state["epoch"])
        self.start_index = int(state["start_index"])

    def resume_at(self, samples_consumed: int) -> None:
        """Position the sampler as if `samples_consumed` indices had been drawn."""
        self.epoch, self.start_index = divmod(int(samples_consumed), self.num_samples)


class CachedMixedDataset(MixedDataset):
    """A `MixedDataset` of `CachedDataset`s: a DataLoader fetches whole batches with `__getitems__`
    (tensor indexing, no per-item Python work); use it with `collate_fn=passthrough_collate`."""

    def __getitems__(self, indices: Sequence[int]) -> dict:
        idx = np.asarray(indices, dtype=np.int64)
        which = np.searchsorted(self.offsets, idx, side="right") - 1
        parts, order = [], []
        for d in np.unique(which):
            sel = np.nonzero(which == d)[0]
            b = self.datasets[d].get_batch(torch.from_numpy(idx[sel] - self.offsets[d]))
            b["dataset_index"] = torch.full((len(sel),), int(d), dtype=torch.int64)
            parts.append(b)
            order.append(sel)
        if len(parts) == 1:
            return parts[0]
        inv = torch.from_numpy(np.argsort(np.concatenate(order)))
        out: dict = {}
        for key in parts[0]:
            if key == "task":
                tasks = [t for p in parts for t in p["task"]]
                out[key] = [tasks[i] for i in inv.tolist()]
            else:
                out[key] = torch.cat([p[key] for p in parts])[inv]
        return out

    def __getitem__(self, idx: int) -> dict:
        return {k: v[0] for k, v in self.__getitems__([int(idx)]).items()}

    def nbytes(self) -> int:
        return sum(d.nbytes() for d in self.datasets)


def passthrough_collate(batch: Any) -> Any:
    """`CachedMixedDataset.__getitems__` already returns a collated batch."""
    return batch
