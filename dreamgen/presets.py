"""The shipped presets: YAML files inside the package (`dreamgen/configs/<kind>/<name>.yaml`).

They are package data, so a wheel install finds them from any working directory. A preset is named by
its kind (`worldmodel`, `idm`, `policy`, `experiment`) and its name, or given as a path to a YAML file
of one's own. Each stage turns the mapping read here into its own typed config (`WorldModelPreset`,
`IDMConfig`, `PolicyTrainConfig`, `PipelineConfig`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from dreamgen.errors import DreamgenError

PRESET_ROOT = Path(__file__).resolve().parent / "configs"
KINDS = ("worldmodel", "idm", "policy", "experiment")


def _kind_dir(kind: str) -> Path:
    if kind not in KINDS:
        raise ValueError(f"preset kind must be one of {KINDS}, got {kind!r}")
    return PRESET_ROOT / kind


def list_presets(kind: str) -> list[str]:
    """The names of the shipped presets of one kind."""
    return sorted(p.stem for p in _kind_dir(kind).glob("*.yaml"))


def find_preset(kind: str, spec: str | Path) -> Path | None:
    """The file meant by `spec`: an existing YAML path, else the shipped preset of that name; None if neither."""
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    name = str(spec)
    named = _kind_dir(kind) / (name if name.endswith((".yaml", ".yml")) else f"{name}.yaml")
    return named if named.is_file() else None


def read_yaml_mapping(path: Path, what: str) -> dict[str, Any]:
    """A YAML file that must hold a mapping (an empty file is an empty mapping)."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as exc:
        raise DreamgenError(f"{path}: invalid YAML ({exc})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise DreamgenError(f"{path}: expected a mapping of {what}")
    return data


def load_preset(kind: str, spec: str | Path, what: str | None = None) -> dict[str, Any]:
    """The mapping in the preset `spec` of `kind` (a name or a YAML path); an error names the shipped ones."""
    path = find_preset(kind, spec)
    if path is None:
        raise DreamgenError(f"{spec}: no such {kind} preset or YAML file "
                            f"(presets: {', '.join(list_presets(kind)) or 'none'})")
    return read_yaml_mapping(path, what or f"{kind} settings")
