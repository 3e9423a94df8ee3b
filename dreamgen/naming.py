"""Instruction <-> file name, the contract between generate, bench and convert (DESIGN §4).

Spaces become `_`; accents are dropped (é -> e); every other character outside `[A-Za-z0-9_-]` is
dropped, so no instruction can name a path outside the output folder. An instruction with letters of
another script gets a short digest of its text in the name, so two such instructions never share a
name. The real text also lives in the sidecar JSON, which wins.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from pathlib import Path

from dreamgen.errors import DreamgenError

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_DREAM_NAME = re.compile(r"^(\d+)_(.+)$")
MAX_STEM = 200  # keep well under common 255-byte file-name limits


def instruction_to_stem(instruction: str) -> str:
    """'Pick the red cube.' -> 'Pick_the_red_cube'; 'Café' -> 'Cafe'.

    Accented Latin letters keep their base letter. Text in other scripts cannot be spelled in
    `[A-Za-z0-9_-]`: its letters are replaced by a short digest of the whole instruction
    ('把红色方块放进盒子' -> 'u_3f2a9c1d'), so distinct instructions keep distinct, safe names; the
    sidecar JSON keeps the real text."""
    text = " ".join(instruction.split())
    if not text:
        raise DreamgenError("empty instruction")
    latin = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    stem = _UNSAFE.sub("", latin.replace(" ", "_"))
    stem = re.sub(r"_+", "_", stem).strip("_")
    lost = sum(ch.isalnum() for ch in text) - sum(ch.isalnum() for ch in latin)
    if lost > 0 or not stem:  # letters of another script: keep the instruction distinct with a digest
        digest = "u_" + hashlib.sha1(text.encode()).hexdigest()[:8]
        stem = f"{stem[:MAX_STEM - len(digest) - 1]}_{digest}" if stem else digest
    return stem[:MAX_STEM]


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
