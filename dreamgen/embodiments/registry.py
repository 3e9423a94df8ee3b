"""Resolve an embodiment by name, alias, file or folder (DESIGN §5)."""

from __future__ import annotations

import difflib
import json
import logging
from functools import cache
from importlib import resources
from pathlib import Path

import yaml

from dreamgen.embodiments.embodiment import Embodiment
from dreamgen.errors import EmbodimentError

log = logging.getLogger(__name__)

BUILTIN_DIR = Path(str(resources.files("dreamgen.embodiments") / "builtin"))
# The tag GR00T uses for a robot it has no built-in config for: the layout must come from files.
NEW_EMBODIMENT = "new_embodiment"


def builtin_names() -> list[str]:
    return sorted(p.name for p in BUILTIN_DIR.iterdir() if (p / "embodiment.yaml").is_file())


@cache
def _aliases() -> dict[str, str]:
    table = {}
    for name in builtin_names():
        cfg = yaml.safe_load((BUILTIN_DIR / name / "embodiment.yaml").read_text())
        table[name] = name
        for alias in cfg.get("aliases", []):
            table[alias] = name
    return table


def get_embodiment(spec: str | Path, dataset: str | Path | None = None) -> Embodiment:
    """`spec` is a built-in name or alias, a YAML/JSON file, or a folder with modality.json + stats.json.

    `new_embodiment` (GR00T's tag for user robots) reads the layout from `dataset`'s `meta/` folder.
    """
    spec_s = str(spec)
    if spec_s == NEW_EMBODIMENT:
        if dataset is None:
            raise EmbodimentError(
                f"{NEW_EMBODIMENT!r} is the tag for a user-defined robot: pass a YAML/JSON file or a folder "
                "with modality.json + stats.json, or a dataset whose meta/ has them"
            )
        return load_embodiment_folder(Path(dataset) / "meta")
    key = spec_s.lower()
    if key in _aliases():
        return load_embodiment_folder(BUILTIN_DIR / _aliases()[key])
    path = Path(spec_s).expanduser()
    if path.is_dir():
        return load_embodiment_folder(path)
    if path.is_file():
        return load_embodiment_file(path)
    if path.suffix in (".yaml", ".yml", ".json") or "/" in spec_s:
        raise EmbodimentError(f"{spec_s}: embodiment file or folder does not exist")
    close = difflib.get_close_matches(key, list(_aliases()), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise EmbodimentError(
        f"unknown embodiment {spec_s!r}{hint} (built-in: {', '.join(builtin_names())}; "
        "or pass a YAML/JSON file or a folder with modality.json + stats.json)"
    )


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise EmbodimentError(f"{path}: file not found") from None
    except json.JSONDecodeError as exc:
        raise EmbodimentError(f"{path}: invalid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise EmbodimentError(f"{path}: expected a JSON object")
    return data


def load_embodiment_file(path: str | Path) -> Embodiment:
    """A single YAML/JSON file holding every field, modality and stats included (or paths to them)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())  # YAML is a superset of JSON
    except yaml.YAMLError as exc:
        raise EmbodimentError(f"{path}: invalid YAML/JSON ({exc})") from None
    if not isinstance(data, dict):
        raise EmbodimentError(f"{path}: expected a mapping of embodiment fields")
    for part, fname in (("modality", "modality.json"), ("stats", "stats.json")):
        if isinstance(data.get(part), str):  # a path relative to the file
            data[part] = _read_json(path.parent / data[part])
        elif part not in data and (path.parent / fname).is_file():
            data[part] = _read_json(path.parent / fname)
    return Embodiment.from_dict(data, source=str(path))


def load_embodiment_folder(folder: str | Path) -> Embodiment:
    """A folder with modality.json + stats.json and, optionally, embodiment.yaml (else derived)."""
    folder = Path(folder)
    if not (folder / "modality.json").is_file():
        raise EmbodimentError(f"{folder}: no modality.json (an embodiment folder needs modality.json + stats.json)")
    modality = _read_json(folder / "modality.json")
    stats = _read_json(folder / "stats.json") if (folder / "stats.json").is_file() else {}
    cfg_path = folder / "embodiment.yaml"
    if cfg_path.is_file():
        cfg = yaml.safe_load(cfg_path.read_text()) or {}
    else:
        cfg = _derive_config(folder, modality)
    return Embodiment.from_dict({**cfg, "modality": modality, "stats": stats}, source=str(folder))


def _derive_config(folder: Path, modality: dict) -> dict:
    videos = modality.get("video", {})
    keys = [v.get("original_key", f"observation.images.{k}") for k, v in videos.items()]
    info_path = folder / "info.json"  # a LeRobot dataset's meta/ folder
    info = _read_json(info_path) if info_path.is_file() else {}
    if not keys:
        keys = [k for k, f in info.get("features", {}).items() if f.get("dtype") == "video"]
    fps = info.get("fps")
    if fps is None:
        log.warning("%s: no embodiment.yaml or info.json gives fps; assuming 30", folder)
        fps = 30
    name = folder.parent.name if folder.name == "meta" else folder.name
    return {"name": name, "robot_type": info.get("robot_type") or name, "fps": fps, "video_keys": keys}
