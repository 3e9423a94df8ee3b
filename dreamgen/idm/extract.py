"""Label dreamed videos with IDM actions and write them as a LeRobot v3 dataset ("neural trajectories").

A state IDM (`kind: state`) estimates the robot state of every frame in one pass over the video; the
actions the embodiment derives from states (`action_from_state`) are differences of consecutive
estimates, the rest come from its action head; the dataset gets both `observation.state` and `action`.
A flow IDM (`kind: flow`): every frame t starts a window (frames t+offsets, clamped to the last frame) whose predicted chunk
covers actions t..t+H-1; each frame's action is the mean of all chunks covering it (the reference's
temporal ensembling). Each frame is encoded once and shared by the windows that use it.

Resumable: per-video results go to `<out>.work/` beside the output as they finish (atomic .npz);
a re-run skips finished videos. `shard=(i, n)` labels every n-th video only, so n GPUs/machines
can share the work; the dataset is assembled by a final run without a shard (or when all are done).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dreamgen.errors import DreamgenError, OutputExistsError, VideoError, check_number
from dreamgen.idm.labelling import (  # noqa: F401  (re-exported: callers import them from here)
    check_stride,
    compile_for_labelling,
    device_and_autocast,
    ensemble_chunks,
    label_frames,
    label_many,
    label_states,
    label_video,
    labelling_provenance,
)
from dreamgen.io import clean_stale_partials_in

log = logging.getLogger(__name__)


@dataclass
class ExtractConfig:
    checkpoint: str | Path
    videos: str | Path
    out: str | Path
    batch_size: int = 64
    device: str = "auto"
    precision: str = "auto"  # auto: bf16 on CUDA, fp32 on CPU
    num_inference_steps: int | None = None
    shard: tuple[int, int] = (0, 1)
    embodiment: str | Path | None = None  # write with this layout instead of the checkpoint's (widths must match)
    work_dir: str | Path | None = None
    seed: int = 0
    keep_work: bool = False
    videos_per_batch: int = 16  # flow IDMs label this many videos in shared batches (full GPU batches)
    stride: int = 1  # flow IDMs: a window every `stride` frames (labelling.py: the cost per labelled frame)
    compile: bool = False  # flow IDMs: torch.compile encoder + action DiT
    overwrite: bool = False  # discard labels in the work folder made with other settings


@dataclass
class ExtractResult:
    out: Path | None
    labelled: list[str] = field(default_factory=list)
    skipped_done: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    frames: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        s = (f"labelled {len(self.labelled)} video(s) ({self.frames} frames, "
             f"{self.frames / max(self.seconds, 1e-9):.1f} frames/s), {self.skipped_done} already done, "
             f"{len(self.failed)} failed")
        for path, why in sorted(self.failed.items()):
            s += f"\n  FAILED {path}: {why}"
        return s + (f"\ndataset: {self.out}" if self.out else "")


def find_videos(root: str | Path) -> list[Path]:
    root = Path(root)
    if not root.is_dir():
        raise DreamgenError(f"{root}: videos folder not found")
    videos = sorted(p for p in root.rglob("*.mp4") if not any(part.startswith(".") for part in
                                                                p.relative_to(root).parts))
    if not videos:
        raise DreamgenError(f"{root}: no .mp4 videos found (expected <Instruction>/<k>.mp4 from `dreamgen convert`)")
    return videos


def task_for(video: Path, root: Path) -> str:
    """The sidecar JSON's instruction/prompt wins; else the folder name (convert's layout); else the file name."""
    from dreamgen.naming import parse_dream_path, sidecar_instruction, stem_to_instruction

    text = sidecar_instruction(video)
    if text:
        return text
    if video.parent != root:
        return stem_to_instruction(video.parent.name)
    try:
        return parse_dream_path(video)[1]
    except DreamgenError:
        return stem_to_instruction(video.stem)


def check_video_formats(videos: list[Path], root: Path, emb, embodiment_spec: str) -> None:
    """Refuse, before any labelling, videos one dataset cannot hold truthfully: mixed fps or resolution
    (naming the odd file), or an fps other than the embodiment's (the dataset is stamped with the
    embodiment's fps and the IDM labels steps of 1/fps: an 8-fps dream is not a 20-fps episode).
    Unreadable videos are left to the labelling loop, which records them as failed."""
    from dreamgen.data import video_info

    groups: dict[tuple[float, int, int], list[Path]] = {}
    for v in videos:
        try:
            info = video_info(v)
        except VideoError:
            continue
        groups.setdefault((round(info.fps, 2), info.height, info.width), []).append(v)
    if not groups:
        return

    def fmt(k: tuple[float, int, int]) -> str:
        return f"{k[0]:g} fps, {k[2]}x{k[1]}"

    fix = f"`dreamgen preprocess {root} <new folder> -e {embodiment_spec}`"
    common = max(groups, key=lambda k: len(groups[k]))
    for k, vs in groups.items():
        if k != common:
            raise DreamgenError(f"{vs[0]}: {fmt(k)}, but {len(groups[common])} other video(s) in {root} are "
                                f"{fmt(common)}; one dataset holds one fps and size: bring them to one with {fix}")
    if abs(common[0] - emb.fps) > 0.01:
        raise DreamgenError(f"{root}: videos are at {common[0]:g} fps but embodiment {emb.name!r} runs at "
                            f"{emb.fps:g} fps; resample them first with {fix} (it resamples to {emb.fps:g} fps)")


def _work_name(video: Path, root: Path, key: str = "") -> str:
    """Cache key of one video's labels: the job's settings key + the video's path and content."""
    from dreamgen.io import fingerprint

    rel = video.relative_to(root).as_posix()
    return hashlib.sha1(f"{key}|{rel}|{fingerprint(video)}".encode()).hexdigest()[:16]


def _job_key(cfg: ExtractConfig, ckpt: Path, work: Path) -> str:
    """The resume rule: labels in `work` are reused only when made by the same checkpoint (its weights'
    content, not its path) with the same sampling settings; returns the settings' digest."""
    import shutil

    from dreamgen.io import fingerprint
    from dreamgen.jobs import check_job

    settings = {"checkpoint": str(ckpt.resolve()), "checkpoint_weights": fingerprint(ckpt / "model.safetensors"),
                "steps": cfg.num_inference_steps, "seed": cfg.seed, "precision": cfg.precision, "stride": cfg.stride,
                "embodiment": None if cfg.embodiment is None else str(cfg.embodiment),
                "videos": str(Path(cfg.videos).resolve())}

    def clear() -> None:
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)

    has_results = work.is_dir() and any(work.glob("*.npz"))
    check_job(work, "idm-extract", settings, overwrite=cfg.overwrite, clear=clear, has_results=has_results)
    return hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def _write_as(spec: str | Path, model, emb, ckpt: Path):
    """The embodiment to write with (widths must match the IDM's), keeping the IDM's normalisation."""
    from dreamgen.embodiments import get_embodiment

    target = get_embodiment(spec)
    target.check_widths(model.config.state_dim or None, model.config.action_dim, f"IDM checkpoint {ckpt}")
    keys = [k for k in (emb.action_key, emb.state_key) if k in emb.stats]
    return target.with_stats({**target.stats, **{k: emb.stats[k] for k in keys}})


def _read_long_enough(video: Path, cfg_m) -> np.ndarray:
    from dreamgen.data import read_video

    frames = read_video(video)
    if len(frames) < cfg_m.window:
        raise VideoError(f"{video}: {len(frames)} frames, shorter than the IDM window ({cfg_m.window} frames: "
                         f"offsets {cfg_m.observation_offsets}, horizon {cfg_m.action_horizon})")
    return frames


def _label_group(model, emb, group, cfg: ExtractConfig, device, autocast) -> list[tuple[np.ndarray, object]]:
    """(actions, states or None) per video of the group: flow IDMs label the group in shared batches."""
    if model.config.kind == "flow":
        actions = label_many(model, emb, [g[3] for g in group], cfg.batch_size, cfg.num_inference_steps,
                             cfg.seed, device, autocast, cfg.stride)
        return [(a, None) for a in actions]
    return [label_video(model, emb, g[3], device=device, autocast=autocast) for g in group]


def _atomic_npz(path: Path, **arrays) -> None:
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.partial.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)


def _load_for_labelling(cfg: ExtractConfig, device):
    """(checkpoint folder, IDM ready to label with cfg's stride/compile, embodiment to write, train state)."""
    from dreamgen.idm.checkpoint import find_checkpoint, load_idm

    ckpt = find_checkpoint(cfg.checkpoint)
    model, emb, train_state = load_idm(ckpt, device)
    if cfg.embodiment is not None:
        emb = _write_as(cfg.embodiment, model, emb, ckpt)
    if model.config.kind == "flow":
        check_stride(cfg.stride, model.config.action_horizon)
        if cfg.compile:  # CUDA graphs on a GPU (the measured fast path: RESULTS.md, round 4)
            compile_for_labelling(model, mode="reduce-overhead" if device.type == "cuda" else None)
    return ckpt, model, emb, train_state


def extract_actions(cfg: ExtractConfig) -> ExtractResult:
    from tqdm import tqdm

    out = Path(cfg.out)
    if out.exists():
        raise OutputExistsError(f"{out}: output already exists; choose a new path or remove it")
    shard_i, shard_n = cfg.shard
    if not (shard_n >= 1 and 0 <= shard_i < shard_n):
        raise DreamgenError(f"--shard must be i/n with 0 <= i < n, got {shard_i}/{shard_n}")
    check_number("--batch-size", cfg.batch_size, 1)
    check_number("--sampling-steps", cfg.num_inference_steps, 1)  # never labels from a 0-step sampler
    root = Path(cfg.videos)
    videos = find_videos(root)
    device, autocast = device_and_autocast(cfg.device, cfg.precision)
    ckpt, model, emb, train_state = _load_for_labelling(cfg, device)
    check_video_formats(videos, root, emb, str(cfg.embodiment or ckpt / "embodiment"))
    cfg_m = model.config
    work = Path(cfg.work_dir) if cfg.work_dir else out.with_name(out.name + ".work")
    key = _job_key(cfg, ckpt, work)
    clean_stale_partials_in(work)  # label files a killed run was writing
    (work / "checkpoint.txt").write_text(str(ckpt.resolve()))
    result = ExtractResult(out=None)
    mine = videos[shard_i::shard_n]
    t0 = time.time()
    group: list[tuple[str, str, str, np.ndarray]] = []  # (rel, name, task, frames) waiting to be labelled

    def flush() -> None:
        if not group:
            return
        for (rel, name, task, frames), (actions, states) in zip(group, _label_group(model, emb, group, cfg, device,
                                                                                   autocast), strict=True):
            extra = {} if states is None else {"states": states}
            _atomic_npz(work / f"{name}.npz", actions=actions, task=np.array(task), video=np.array(rel), **extra)
            (work / f"{name}.failed.json").unlink(missing_ok=True)
            result.labelled.append(rel)
            result.frames += len(frames)
        group.clear()

    for video in tqdm(mine, desc=f"idm-extract {shard_i}/{shard_n}", dynamic_ncols=True):
        rel = video.relative_to(root).as_posix()
        name = _work_name(video, root, key)
        if (work / f"{name}.npz").is_file():
            result.skipped_done += 1
            continue
        try:
            task, frames = task_for(video, root), _read_long_enough(video, cfg_m)
        except (VideoError, DreamgenError) as exc:
            result.failed[rel] = str(exc)
            log.warning("skipping %s", exc)
            (work / f"{name}.failed.json").write_text(json.dumps({"video": rel, "error": str(exc)}))
            continue
        group.append((rel, name, task, frames))
        if len(group) >= cfg.videos_per_batch:
            flush()
    flush()
    result.seconds = time.time() - t0
    # failures recorded by other shards or earlier runs count too
    for f in work.glob("*.failed.json"):
        info = json.loads(f.read_text())
        result.failed.setdefault(info["video"], info["error"])

    pending = [v for v in videos if not (work / f"{_work_name(v, root, key)}.npz").is_file()
               and v.relative_to(root).as_posix() not in result.failed]
    if pending:
        log.info("%d video(s) still unlabelled (other shards): re-run without --shard when they finish to "
                 "assemble %s", len(pending), out)
        return result
    result.out = assemble_dataset(videos, root, work, out, emb, ckpt, train_state, result.failed, key,
                                  labelling_provenance(model, emb, cfg.stride))
    if not cfg.keep_work:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return result


def assemble_dataset(videos: list[Path], root: Path, work: Path, out: Path, emb, ckpt: Path,
                     train_state: dict, failed: dict[str, str], key: str = "",
                     labels: dict[str, str] | None = None) -> Path:
    from tqdm import tqdm

    from dreamgen.data import DatasetWriter, read_video

    done = [(v, work / f"{_work_name(v, root, key)}.npz") for v in videos]
    done = [(v, p) for v, p in done if p.is_file()]
    if not done:
        raise DreamgenError(f"{root}: no video could be labelled ({len(failed)} failed); nothing written")
    provenance = {
        "stage": "idm-extract",
        "idm_checkpoint": str(ckpt.resolve()),
        "idm_step": train_state.get("step"),
        "idm_train_dataset": train_state.get("dataset_path"),
        "videos": str(root.resolve()),
        "num_videos": len(done),
        "failed_videos": failed,
        "labels": labels or {},
        "episodes": [],
    }
    with DatasetWriter(out, emb, provenance) as writer:
        for v, p in tqdm(done, desc="assemble", dynamic_ncols=True):
            data = np.load(p, allow_pickle=False)
            frames = read_video(v)
            actions = data["actions"]
            if len(frames) != len(actions):
                raise VideoError(f"{v}: changed since it was labelled ({len(frames)} frames, {len(actions)} "
                                 f"actions); delete {p} to relabel it")
            writer.add_episode(frames, actions, str(data["task"]),
                               state=data["states"] if "states" in data.files else None)
            provenance["episodes"].append(str(data["video"]))
    return out
