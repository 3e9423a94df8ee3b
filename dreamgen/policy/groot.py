"""GR00T N1.7 (LeRobot 0.6.1's `groot` policy) from local folders only.

LeRobot builds GR00T from a *base model folder* (`--policy.base_model_path`): the GR00T config.json +
model.safetensors, optional processor sidecars (processor_config.json, statistics.json,
embodiment_id.json) and, through the config's `model_name`, a Qwen3-VL backbone folder whose tokenizer,
image and video processor configs feed the VLM. Stock LeRobot hard-codes the hub id of the backbone in
its VLM processor step; `localize_groot_processors` points that step at the local backbone folder.

The tests write such a base folder with a tiny Qwen3-VL backbone built from config
(tests/groot_fixture.py): a template for the layout a real N1.7 checkpoint must have on disk.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dreamgen.errors import DreamgenError


def _read(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DreamgenError(f"{path}: missing") from None
    except json.JSONDecodeError as exc:
        raise DreamgenError(f"{path}: invalid JSON ({exc.msg})") from None


def backbone_folder(base: Path) -> Path:
    """The Qwen3-VL folder a GR00T base config names (`model_name`), relative paths taken from `base`."""
    cfg = _read(base / "config.json")
    name = cfg.get("model_name")
    if not name:
        raise DreamgenError(f"{base / 'config.json'}: no model_name (the Qwen3-VL backbone folder)")
    p = Path(name).expanduser()
    if not p.is_absolute():
        p = (base / p) if (base / p).exists() else p
    return p


def check_groot_base(base: Path) -> None:
    """Every file GR00T needs offline, or a DreamgenError naming the missing one."""
    if not base.is_dir():
        raise DreamgenError(f"{base}: GR00T base model folder does not exist")
    cfg = _read(base / "config.json")
    if "type" in cfg:
        raise DreamgenError(
            f"{base}: this is a LeRobot policy checkpoint, not a GR00T base model; continue it with --resume "
            "or point --pretrained at the base model it was fine-tuned from"
        )
    if cfg.get("model_type") != "Gr00tN1d7":
        raise DreamgenError(f"{base / 'config.json'}: model_type {cfg.get('model_type')!r}, expected 'Gr00tN1d7'")
    if not any(base.glob("*.safetensors")):
        raise DreamgenError(f"{base}: missing model.safetensors (GR00T weights)")
    bb = backbone_folder(base)
    if not bb.is_dir():
        raise DreamgenError(
            f"{base / 'config.json'}: backbone {cfg.get('model_name')!r} is not a local folder; the hub is not "
            "used: download the Qwen3-VL/Cosmos-Reason2 folder and set model_name to its path"
        )
    for name in ("config.json", "tokenizer_config.json", "preprocessor_config.json",
                 "video_preprocessor_config.json"):
        if not (bb / name).is_file():
            raise DreamgenError(f"{bb}: missing {name} (Qwen3-VL backbone component)")


def localize_groot_processors(preprocessor: Any, base: Path) -> None:
    """Point GR00T's VLM-encode step at the local backbone folder instead of the hub id."""
    bb = str(backbone_folder(Path(base)))
    for step in getattr(preprocessor, "steps", []):
        if type(step).__name__ == "GrootN17VLMEncodeStep" and step.model_name != bb:
            step.model_name = bb
            step._proc = None
