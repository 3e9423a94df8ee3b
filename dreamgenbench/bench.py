"""`dreamgen bench`: IF and PA over several folders of dreams, as the paper's table (model x split).

Folder layout: give a root holding `<model>/<split>/*.mp4` (or `<model>/*.mp4`, split "all"), or the
leaf folders themselves (model = folder name, split "all"). Every leaf folder (one holding .mp4 files)
is scored without descending further. Results go to `<out>/<model>/<split>/if.csv`,
`pa_<judge>.csv` (one per PA judge; the PA score is their mean, as the paper averages two judges),
their `.summary.json`, and `<out>/summary.json` + `<out>/table.md` for the whole run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from dreamgen.errors import DreamgenError
from dreamgen.io import atomic_write_json, atomic_write_text
from dreamgenbench.judges.base import Judge
from dreamgenbench.prompts import PROMPT_VERSION
from dreamgenbench.scoring import ScoreSummary, score_videos


@dataclass
class Cell:
    model: str
    split: str
    video_dir: str
    if_summary: ScoreSummary | None = None
    pa_summaries: list[ScoreSummary] = field(default_factory=list)

    @property
    def pa_score(self) -> float | None:
        scores = [s.score for s in self.pa_summaries]
        if not scores or any(s is None for s in scores):
            return None
        return sum(scores) / len(scores)


def find_leaves(video_dirs: list[str | Path]) -> list[tuple[str, str, Path]]:
    """(model, split, folder) for every folder holding .mp4 files."""
    leaves = []
    for root in map(Path, video_dirs):
        if not root.is_dir():
            raise DreamgenError(f"{root}: video folder not found")
        folders = sorted({p.parent for p in root.rglob("*.mp4") if not p.name.startswith(".")})
        if not folders:
            raise DreamgenError(f"{root}: no .mp4 videos found (searched sub-folders too)")
        for folder in folders:
            rel = folder.relative_to(root).parts
            if not rel:
                model, split = root.resolve().name, "all"
            elif len(rel) == 1:
                model, split = rel[0], "all"
            else:
                model, split = rel[0], "/".join(rel[1:])
            leaves.append((model, split, folder))
    seen = set()
    for model, split, folder in leaves:
        if (model, split) in seen:
            raise DreamgenError(f"two folders map to model {model!r} split {split!r} (e.g. {folder}); "
                                "pass them in separate runs")
        seen.add((model, split))
    return leaves


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name).strip(".") or "judge"


def run_bench(
    video_dirs: list[str | Path],
    out: str | Path,
    if_judge: Judge | None,
    pa_judges: list[Judge] | None = None,
    zeroshot: bool = False,
    limit: int | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> list[Cell]:
    pa_judges = pa_judges or []
    if if_judge is None and not pa_judges:
        raise DreamgenError("nothing to do: ask for --if and/or --pa")
    out = Path(out)
    cells = []
    for model, split, folder in find_leaves(video_dirs):
        cell = Cell(model, split, str(folder))
        cell_dir = out / _safe(model) / Path(*[_safe(p) for p in split.split("/")])
        if if_judge is not None:
            cell.if_summary = score_videos(folder, if_judge, "if", cell_dir / "if.csv", zeroshot=zeroshot,
                                           recursive=False, limit=limit, progress=progress, overwrite=overwrite)
        names = [_safe(f"{j.kind}-{Path(j.model).name}") for j in pa_judges]
        for i, judge in enumerate(pa_judges):
            name = names[i] if names.count(names[i]) == 1 else f"{names[i]}-{i}"
            cell.pa_summaries.append(score_videos(folder, judge, "pa", cell_dir / f"pa_{name}.csv",
                                                  recursive=False, limit=limit, progress=progress,
                                                  overwrite=overwrite))
        cells.append(cell)
    write_report(cells, out)
    return cells


def _fmt(score: float | None, n_failed: int) -> str:
    if score is None:
        return "-"
    return f"{score:.3f}" + (f" ({n_failed} failed)" if n_failed else "")


def format_table(cells: list[Cell]) -> str:
    """Markdown table: one row per model, one column per split, cells 'IF x / PA y'."""
    models = list(dict.fromkeys(c.model for c in cells))
    splits = list(dict.fromkeys(c.split for c in cells))
    by = {(c.model, c.split): c for c in cells}
    lines = ["| model | " + " | ".join(splits) + " |", "|---" * (len(splits) + 1) + "|"]
    for m in models:
        row = []
        for s in splits:
            c = by.get((m, s))
            if c is None:
                row.append("")
                continue
            parts = []
            if c.if_summary is not None:
                parts.append("IF " + _fmt(c.if_summary.score, c.if_summary.n_failed))
            if c.pa_summaries:
                parts.append("PA " + _fmt(c.pa_score, sum(p.n_failed for p in c.pa_summaries)))
            row.append(" / ".join(parts))
        lines.append(f"| {m} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def write_report(cells: list[Cell], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    data = {
        "prompt_version": PROMPT_VERSION,
        "cells": [
            {"model": c.model, "split": c.split, "video_dir": c.video_dir,
             "if": c.if_summary.to_dict() if c.if_summary else None,
             "pa": c.pa_score, "pa_judges": [s.to_dict() for s in c.pa_summaries]}
            for c in cells
        ],
    }
    atomic_write_json(out / "summary.json", data)
    atomic_write_text(out / "table.md", format_table(cells) + "\n")
