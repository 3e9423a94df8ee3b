"""GR00T-flavoured LeRobot v2.x -> LeRobot v3, keeping meta/modality.json.

LeRobot ships a v2.1 -> v3 converter, but it cannot read v2.0 (no per-episode stats) and drops
modality.json (DESIGN §8), so conversion goes through our reader and LeRobot's writer instead.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from tqdm import tqdm

from dreamgen.data.dataset import GrootV2Dataset, open_dataset
from dreamgen.data.writer import DatasetWriter
from dreamgen.embodiments import Embodiment, get_embodiment
from dreamgen.errors import DatasetError, EmbodimentError, OutputExistsError
from dreamgen.io import atomic_write_json, check_output_location
from dreamgen.jobs import check_job, job_settings_path, read_job

log = logging.getLogger(__name__)


def _video_plan(ds: GrootV2Dataset, reencode: bool) -> bool:
    """Copy the source streams unless asked not to or LeRobot could not use them as they are."""
    from dreamgen.data.videocopy import copyable_videos

    if reencode:
        return False
    why = copyable_videos([ds.video_files(i) for i in range(ds.num_episodes)], ds.episode_lengths, ds.fps)
    if why:
        log.warning("re-encoding the videos: %s", why)
    return why is None


def _extra_features(ds: GrootV2Dataset) -> dict[str, dict]:
    return {k: {"dtype": ds.features[k]["dtype"], "shape": tuple(ds.features[k].get("shape") or (1,)),
                "names": None} for k in ds.extra_columns}


def convert_v2_to_v3(src: str | Path, dst: str | Path, embodiment: str | Embodiment | None = None,
                     overwrite: bool = False, reencode: bool = False) -> Path:
    """Convert. A finished output is never touched without `overwrite` (the refusal names the setting
    that differs, if any); an interrupted run's hidden partial folder is removed by the next run.
    Video streams are copied as they are where LeRobot can use them (else, or with `reencode`, encoded
    again); next.reward, next.done and the annotation columns modality.json names are kept."""
    src, dst = Path(src), Path(dst)
    settings = {"src": str(src.resolve()), "embodiment": embodiment if not isinstance(embodiment, Embodiment)
                else embodiment.name}
    if dst.exists() and not overwrite:
        if read_job(dst) is not None:
            check_job(dst, "dataset convert", settings)  # raises, naming the setting, if made otherwise
            raise OutputExistsError(f"{dst}: already converted from {src} with these settings; nothing to do "
                                    "(--overwrite redoes it)")
        raise OutputExistsError(f"{dst}: output already exists; choose a new path, remove it or pass --overwrite")
    check_output_location(dst, "DST", {"SRC": src})
    ds = open_dataset(src)
    ds.check_finite()
    if not isinstance(ds, GrootV2Dataset):
        raise DatasetError(f"{src}: is {ds.version}, not a v2.x dataset; nothing to convert")
    if embodiment is None:
        if ds.modality is None:
            raise DatasetError(f"{src / 'meta' / 'modality.json'}: missing; pass --embodiment to give the layout")
        emb = get_embodiment("new_embodiment", dataset=src)
    else:
        emb = embodiment if isinstance(embodiment, Embodiment) else get_embodiment(embodiment)
    try:
        emb.check_widths(ds.state_dim, ds.action_dim, str(src))
    except EmbodimentError as exc:
        raise DatasetError(str(exc)) from None
    if ds.modality is not None:  # the dataset's own layout wins over the registry's
        emb.modality = {**emb.modality, **{k: v for k, v in ds.modality.items() if k in ("state", "action")}}
    if not ds.video_keys:
        raise DatasetError(f"{src}: no video files found for any video key")
    emb.video_keys = list(ds.video_keys)
    emb.fps = ds.fps
    if overwrite and dst.exists():
        shutil.rmtree(dst)
    copy = _video_plan(ds, reencode)
    with DatasetWriter(dst, emb, provenance={"converted_from": str(src), "source_version": ds.version},
                       video_keys=ds.video_keys, extra_features=_extra_features(ds), copy_videos=copy,
                       tasks=ds.task_table) as writer:
        for ep in tqdm(ds.episodes(), total=ds.num_episodes, desc="convert", unit="ep"):
            frames = {k: ep.frames(key=k) for k in ds.video_keys}
            if ep.action is None:
                raise DatasetError(f"{src}: episode {ep.index} has no action column")
            writer.add_episode(frames, ep.action, ep.task or "unknown task", state=ep.state, extras=ep.extras,
                               video_files=ep.video_paths if copy else None)
    if ds.modality is not None:
        # keep the source's modality.json as GR00T wrote it (video/annotation sections included)
        import json

        (dst / "meta" / "modality.json").write_text(json.dumps(ds.modality, indent=2))
    atomic_write_json(job_settings_path(dst), {"job": "dataset convert", "settings": settings})
    return dst
