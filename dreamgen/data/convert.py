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


def convert_v2_to_v3(src: str | Path, dst: str | Path, embodiment: str | Embodiment | None = None,
                     overwrite: bool = False) -> Path:
    """Convert. A finished output is never touched without `overwrite` (the refusal names the setting
    that differs, if any); an interrupted run's hidden partial folder is removed by the next run."""
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
    with DatasetWriter(dst, emb, provenance={"converted_from": str(src), "source_version": ds.version},
                       video_keys=ds.video_keys) as writer:
        for ep in tqdm(ds.episodes(), total=ds.num_episodes, desc="convert", unit="ep"):
            frames = {k: ep.frames(key=k) for k in ds.video_keys}
            if ep.action is None:
                raise DatasetError(f"{src}: episode {ep.index} has no action column")
            writer.add_episode(frames, ep.action, ep.task or "unknown task", state=ep.state)
    if ds.modality is not None:
        # keep the source's modality.json as GR00T wrote it (video/annotation sections included)
        import json

        (dst / "meta" / "modality.json").write_text(json.dumps(ds.modality, indent=2))
    atomic_write_json(job_settings_path(dst), {"job": "dataset convert", "settings": settings})
    return dst
