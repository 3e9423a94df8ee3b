"""Keep the dreams that pass DreamGenBench, drop the "nightmares" (the filter the paper describes).

A dream passes when its IF prediction >= `min_if` and, if `min_pa` is set, the mean of its PA
predictions over the PA score CSVs given >= `min_pa`. A dream whose needed score is missing or failed
does not pass (it was not judged). Passing videos and their sidecar JSONs are copied (or hard/soft
linked) into `out` under the same names, so `convert`/`idm-extract` consume them unchanged, plus
`manifest.json` listing every decision. `out` is built under a temporary name and renamed at the end.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from dreamgen.errors import DreamgenError, OutputExistsError
from dreamgen.io import clean_stale_partials
from dreamgenbench.scoring import read_scores, summary_path

MODES = ("copy", "hardlink", "symlink")


@dataclass
class FilterResult:
    out: str
    n_kept: int
    n_rejected: int
    n_unscored: int
    kept: list[str]


def _task_of(csv_path: Path) -> str | None:
    s = summary_path(csv_path)
    if s.is_file():
        try:
            return json.loads(s.read_text()).get("task")
        except json.JSONDecodeError:
            return None
    return None


def _place(src: Path, dst: Path, mode: str) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if mode == "symlink":
        dst.symlink_to(src.resolve())
    elif mode == "hardlink":
        try:
            os.link(src, dst)
        except OSError:  # other file system: a copy is the honest fallback
            shutil.copy2(src, dst)
    else:
        shutil.copy2(src, dst)


def _mean_score(tables: list[dict], video: str) -> float | None:
    vals = [t[video].value for t in tables if video in t]
    if len(vals) < len(tables) or any(v is None for v in vals):
        return None  # missing or failed in one of the judges: not judged
    return sum(vals) / len(vals)


def _decide(if_rows: list[dict], pa_rows: list[dict], min_if: float | None, min_pa: float | None) -> list[dict]:
    """One decision per scored video (kept / rejected / unscored), in the order the CSVs list them."""
    videos: list[str] = []
    for table in if_rows + pa_rows:
        videos += [v for v in table if v not in videos]
    decisions = []
    for v in videos:
        s_if = _mean_score(if_rows, v) if if_rows else None
        s_pa = _mean_score(pa_rows, v) if pa_rows else None
        prompt = next((t[v].prompt for t in if_rows + pa_rows if v in t), "")
        unscored = (min_if is not None and s_if is None) or (min_pa is not None and s_pa is None)
        passed = not unscored and (min_if is None or s_if >= min_if) and (min_pa is None or s_pa >= min_pa)
        decisions.append({"video_path": v, "prompt": prompt, "if": s_if, "pa": s_pa,
                          "decision": "kept" if passed else ("unscored" if unscored else "rejected")})
    return decisions


def filter_dreams(
    scores: list[str | Path] | str | Path,
    out: str | Path,
    min_if: float | None = 1,
    min_pa: float | None = None,
    pa_scores: list[str | Path] | None = None,
    mode: str = "copy",
) -> FilterResult:
    """`scores`: IF score CSV(s) (a CSV whose summary.json says task "pa" counts as PA instead);
    `pa_scores`: PA score CSV(s), averaged per video (the paper averages two PA judges)."""
    if mode not in MODES:
        raise DreamgenError(f"unknown mode {mode!r}; expected one of {MODES}")
    scores = [scores] if isinstance(scores, (str, Path)) else list(scores)
    if_csvs, pa_csvs = [], [Path(p) for p in (pa_scores or [])]
    for p in map(Path, scores):
        (pa_csvs if _task_of(p) == "pa" else if_csvs).append(p)
    if min_if is not None and not if_csvs:
        raise DreamgenError("--min-if needs an IF score CSV (--scores)")
    if min_pa is not None and not pa_csvs:
        raise DreamgenError("--min-pa needs a PA score CSV (--pa-scores, or --scores with a PA summary.json)")
    if min_if is None and min_pa is None:
        raise DreamgenError("give --min-if and/or --min-pa")
    out = Path(out)
    if out.exists():
        raise OutputExistsError(f"{out}: output folder exists; choose a new one")

    decisions = _decide([read_scores(p) for p in if_csvs], [read_scores(p) for p in pa_csvs], min_if, min_pa)
    kept = [d for d in decisions if d["decision"] == "kept"]
    missing = [d["video_path"] for d in kept if not Path(d["video_path"]).is_file()]
    if missing:
        raise DreamgenError(f"{len(missing)} scored video(s) no longer exist, e.g. {missing[0]}")
    root = Path(os.path.commonpath([str(Path(d["video_path"]).parent) for d in kept])) if kept else None

    clean_stale_partials(out)  # leftovers of an interrupted run
    tmp = out.with_name(f".{out.name}.{os.getpid()}.partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        for d in kept:
            src = Path(d["video_path"])
            rel = src.relative_to(root)  # relative to the kept videos' common folder: never escapes `out`
            _place(src, tmp / rel, mode)
            sidecar = src.with_suffix(".json")
            if sidecar.is_file():
                _place(sidecar, tmp / rel.with_suffix(".json"), mode)
            d["output_path"] = str(rel)
        manifest = {
            "thresholds": {"min_if": min_if, "min_pa": min_pa},
            "if_scores": [str(p.resolve()) for p in if_csvs],
            "pa_scores": [str(p.resolve()) for p in pa_csvs],
            "mode": mode,
            "n_kept": len(kept),
            "n_rejected": sum(d["decision"] == "rejected" for d in decisions),
            "n_unscored": sum(d["decision"] == "unscored" for d in decisions),
            "videos": decisions,
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return FilterResult(out=str(out), n_kept=manifest["n_kept"], n_rejected=manifest["n_rejected"],
                        n_unscored=manifest["n_unscored"], kept=[d["output_path"] for d in kept])


def result_dict(r: FilterResult) -> dict:
    return asdict(r)
