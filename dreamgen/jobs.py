"""The resume rule, one helper for every resumable job.

A resumable job writes the settings that determine its output into its output (or work) folder as
`.dreamgen_job.json`. A rerun into the same folder continues only when those settings are equal;
otherwise it stops with one line naming the first differing setting, unless the caller asked to
`--overwrite`, in which case the job's previous results are cleared and it starts fresh. Settings
that only change speed (device, batch size, shard, workers) are not recorded.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dreamgen.errors import DreamgenError
from dreamgen.io import atomic_write_json

JOB_FILE = ".dreamgen_job.json"


class ResumeMismatchError(DreamgenError):
    pass


def _norm(value: Any) -> Any:
    """JSON round trip: tuples become lists, paths strings, so equal settings compare equal."""
    return json.loads(json.dumps(value, default=str))


def job_settings_path(folder: str | Path, name: str = JOB_FILE) -> Path:
    return Path(folder) / name


def read_job(folder: str | Path, name: str = JOB_FILE) -> dict[str, Any] | None:
    path = job_settings_path(folder, name)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        raise DreamgenError(f"{path}: unreadable job record; pass --overwrite to start this job fresh") from None
    if not isinstance(data, dict) or not isinstance(data.get("settings"), dict):
        raise DreamgenError(f"{path}: not a dreamgen job record; pass --overwrite to start this job fresh")
    return data


def first_difference(old: dict[str, Any], new: dict[str, Any]) -> str | None:
    for key in list(new) + [k for k in old if k not in new]:
        if old.get(key) != new.get(key):
            return key
    return None


def dotted(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested mapping as {"a.b.c": value}, so that a refused rerun names the one setting that differs."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(dotted(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def check_job(folder: str | Path, job: str, settings: dict[str, Any], *, overwrite: bool = False,
              clear: Callable[[], None] | None = None, has_results: bool | None = None,
              name: str = JOB_FILE, record: bool = True) -> bool:
    """Apply the resume rule to `folder`; returns True when earlier results may be reused.

    has_results: whether the folder already holds results made without a job record (older runs);
    those cannot be vouched for, so they are refused like a mismatch unless `overwrite`.
    record=False only checks (nothing is cleared or written): for jobs that load a model first."""
    folder = Path(folder)
    settings = _norm(settings)
    old = None if overwrite else read_job(folder, name)
    if old is not None:
        if old.get("job") != job:
            raise ResumeMismatchError(f"{folder}: holds the output of `{old.get('job')}`, not `{job}`; choose "
                                      "another folder or pass --overwrite")
        key = first_difference(old["settings"], settings)
        if key is not None:
            raise ResumeMismatchError(
                f"{folder}: was made with {key}={_show(old['settings'].get(key))}, this run has "
                f"{key}={_show(settings.get(key))}; rerun with the same settings to continue, use another output "
                "folder, or pass --overwrite to start fresh")
        return True
    if old is None and has_results and not overwrite:
        raise ResumeMismatchError(f"{folder}: holds results with no record of the settings that made them; "
                                  "pass --overwrite to start fresh or choose another folder")
    if not record:
        return False
    if overwrite and clear is not None:
        clear()
    atomic_write_json(job_settings_path(folder, name), {"job": job, "settings": settings})
    return False


def _show(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 80 else text[:77] + "..."
