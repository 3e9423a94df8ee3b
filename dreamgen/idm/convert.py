"""generate's layout -> the IDM's layout (DESIGN §4).

    <src>/<i>_<Instruction>.mp4 (+ <i>_<Instruction>.json)  ->  <dst>/<Instruction>/<k>.mp4 (+ <k>.json)

k counts 0, 1, 2, ... per instruction, in the order of the source index i, so two dreams of the same
instruction both survive (the reference wrote every one to 0.mp4, keeping only the last). The
output folder must not exist; everything is copied into a temporary sibling that is renamed at
the end. Instructions come from the sidecar when present (it wins over the file name) and are made
file-name safe, so nothing can be written outside `dst`.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from dreamgen.errors import DreamgenError, OutputExistsError
from dreamgen.io import clean_stale_partials
from dreamgen.naming import instruction_to_stem, parse_dream_path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConvertItem:
    src: Path
    dst: Path  # relative to the output folder
    instruction: str
    sidecar: Path | None


def plan_conversion(src: str | Path) -> list[ConvertItem]:
    src = Path(src)
    if not src.is_dir():
        raise DreamgenError(f"{src}: input folder not found")
    videos = [p for p in src.glob("*.mp4") if not p.name.startswith(".")]
    if not videos:
        raise DreamgenError(f"{src}: no .mp4 videos (expected generate's <i>_<Instruction>.mp4 files)")
    parsed = []
    for p in videos:
        index, instruction = parse_dream_path(p)  # raises on names that are not <i>_<Instruction>.mp4
        parsed.append((index, p.name, p, instruction))
    parsed.sort()
    counts: dict[str, int] = {}
    plan = []
    for _, _, p, instruction in parsed:
        folder = instruction_to_stem(instruction)
        k = counts.get(folder, 0)
        counts[folder] = k + 1
        sidecar = p.with_suffix(".json")
        plan.append(ConvertItem(p, Path(folder) / f"{k}.mp4", instruction, sidecar if sidecar.is_file() else None))
    return plan


def convert_dreams(src: str | Path, dst: str | Path, dry_run: bool = False) -> list[ConvertItem]:
    """Reorganise generated videos by instruction; returns the plan (executed unless dry_run)."""
    dst = Path(dst)
    if dst.exists():
        raise OutputExistsError(f"{dst}: output folder already exists; choose a new one (nothing is overwritten)")
    plan = plan_conversion(src)
    if dry_run:
        return plan
    clean_stale_partials(dst)  # leftovers of an interrupted run
    tmp = dst.with_name(f".{dst.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        for item in plan:
            target = tmp / item.dst
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(item.src, target)
            if item.sidecar is not None:
                shutil.copy2(item.sidecar, target.with_suffix(".json"))
        if dst.exists():
            raise OutputExistsError(f"{dst}: appeared while converting; not overwriting it")
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp.rename(dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("converted %d videos into %d instruction folders under %s", len(plan),
             len({i.dst.parent for i in plan}), dst)
    return plan
