"""Instruction <-> file name, the contract between generate, bench and convert (DESIGN §4).

Spaces become `_`; every other character outside `[A-Za-z0-9_-]` is dropped, so no instruction can
name a path outside the output folder. The real text also lives in the sidecar JSON, which wins.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from dreamgen.errors import DreamgenError

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_DREAM_NAME = re.compile(r"^(\d+)_(.+)$")
MAX_STEM = 200  # keep well under common 255-byte file-name limits


def instruction_to_stem(instruction: str) -> str:
    """'Pick the red cube.' -> 'Pick_the_red_cube'."""
    text = " ".join(instruction.split())
    if not text:
        raise DreamgenError("empty instruction")
    stem = _UNSAFE.sub("", text.replace(" ", "_"))
    stem = re.sub(r"_+", "_", stem).strip("_")[:MAX_STEM]
    if not stem:
        raise DreamgenError(f"instruction {instruction!r} has no characters usable in a file name")
    return stem


def stem_to_instruction(stem: str) -> str:
    return stem.replace("_", " ").strip()


def dream_filename(index: int, instruction: str, ext: str = ".mp4") -> str:
    """`<i>_<Instruction_with_underscores>.mp4`."""
    return f"{index}_{instruction_to_stem(instruction)}{ext}"


def parse_dream_path(path: str | Path) -> tuple[int, str]:
    """(index, instruction) of a generated video: the sidecar JSON's prompt wins over the file name."""
    path = Path(path)
    m = _DREAM_NAME.match(path.stem)
    if not m:
        raise DreamgenError(f"{path}: name is not '<i>_<Instruction>.mp4'")
    return int(m.group(1)), sidecar_instruction(path) or stem_to_instruction(m.group(2))


def sidecar_instruction(video: str | Path) -> str | None:
    """The instruction (else the prompt) in a video's sidecar JSON, or None without one."""
    sidecar = Path(video).with_suffix(".json")
    if not sidecar.is_file():
        return None
    try:
        meta = json.loads(sidecar.read_text())
    except json.JSONDecodeError as exc:
        raise DreamgenError(f"{sidecar}: invalid JSON ({exc.msg})") from None
    text = meta.get("instruction") or meta.get("prompt") if isinstance(meta, dict) else None
    return text.strip() if isinstance(text, str) and text.strip() else None
