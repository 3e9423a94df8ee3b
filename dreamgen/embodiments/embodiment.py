"""The one `Embodiment` type every stage uses (DESIGN §5).

An embodiment is described on disk in the GR00T form: `modality.json` (named state/action groups
with index ranges) + `stats.json` (normalisation statistics per feature), plus a small
`embodiment.yaml` holding everything else (fps, video keys, world-model resolution, IDM data config,
prompt prefix). The same three files make a built-in, a user file or a saved checkpoint's copy.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from dreamgen.errors import EmbodimentError
from dreamgen.io import to_json

STAT_NAMES = ("mean", "std", "min", "max", "q01", "q99")


@dataclass
class IDMDataConfig:
    """Which frames the IDM sees and how long an action chunk is."""

    observation_offsets: list[int] = field(default_factory=lambda: [0, 16])
    action_horizon: int = 16

    def __post_init__(self) -> None:
        if len(self.observation_offsets) < 2 or sorted(self.observation_offsets) != list(self.observation_offsets):
            raise EmbodimentError(
                f"idm.observation_offsets must be >= 2 increasing frame offsets, got {self.observation_offsets}"
            )
        if self.action_horizon < 1:
            raise EmbodimentError(f"idm.action_horizon must be >= 1, got {self.action_horizon}")

    @property
    def window(self) -> int:
        """Frames spanned by one IDM sample (first observation to the end of the action chunk)."""
        return max(self.observation_offsets[-1], self.action_horizon) + 1


ACTION_FROM_STATE_KINDS = ("delta", "next", "sign_of_change")


@dataclass
class ActionFromState:
    """How one action group follows from consecutive states s[t], s[t+1] (for an IDM that predicts state):
    `delta`: a[t] = (s[t+1] - s[t]) * scale; `next`: a[t] = s[t+1] (absolute position targets);
    `sign_of_change`: a[t] = +1 if the state rises by more than `deadband`, -1 if it falls by more, else +1
    above `threshold` and -1 below (a gripper command from its closure)."""

    action: list[int]  # [start, end) in the action vector
    state: list[int]  # [start, end) in the state vector, same width
    kind: str
    scale: float = 1.0
    threshold: float = 0.5
    deadband: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in ACTION_FROM_STATE_KINDS:
            raise EmbodimentError(f"action_from_state kind must be one of {ACTION_FROM_STATE_KINDS}, got {self.kind!r}")
        for name in ("action", "state"):
            r = getattr(self, name)
            if not (isinstance(r, list | tuple) and len(r) == 2 and 0 <= int(r[0]) < int(r[1])):
                raise EmbodimentError(f"action_from_state.{name} must be [start, end) with start < end, got {r}")
            setattr(self, name, [int(r[0]), int(r[1])])
        if self.action[1] - self.action[0] != self.state[1] - self.state[0]:
            raise EmbodimentError(f"action_from_state: action {self.action} and state {self.state} differ in width")


@dataclass
class Embodiment:
    name: str
    robot_type: str
    fps: float
    video_keys: list[str]
    modality: dict[str, Any]
    stats: dict[str, dict[str, list]] = field(default_factory=dict)
    aliases: list[str] = field(default_factory=list)
    state_key: str = "observation.state"
    action_key: str = "action"
    wm_resolution: list[int] = field(default_factory=lambda: [432, 768])  # (height, width)
    wm_num_frames: int = 93
    idm_image_size: list[int] = field(default_factory=lambda: [256, 256])  # (height, width)
    idm: IDMDataConfig = field(default_factory=IDMDataConfig)
    prompt_prefix: str = "The robot arm is performing a task. "
    # actions that follow from the state trajectory (an IDM then predicts state and derives them)
    action_from_state: list[ActionFromState] = field(default_factory=list)
    source: str = "<memory>"  # where it was loaded from; used in error messages only

    def __post_init__(self) -> None:
        if isinstance(self.idm, dict):
            self.idm = IDMDataConfig(**self.idm)
        try:
            self.action_from_state = [r if isinstance(r, ActionFromState) else ActionFromState(**r)
                                      for r in self.action_from_state or []]
        except TypeError as exc:
            raise EmbodimentError(f"{self.source}: action_from_state: {exc}") from None
        if not self.video_keys:
            raise EmbodimentError(f"{self.source}: embodiment {self.name!r} has no video_keys")
        for part in ("state", "action"):
            if part not in self.modality:
                raise EmbodimentError(f"{self.source}: modality has no {part!r} section")
            check_groups(self.modality[part], f"{self.source}: modality.{part}")
        if self.fps <= 0:
            raise EmbodimentError(f"{self.source}: fps must be positive, got {self.fps}")
        for r in self.action_from_state:
            if r.action[1] > self.action_dim or r.state[1] > self.state_dim:
                raise EmbodimentError(f"{self.source}: action_from_state {r.action}<-{r.state} is outside the "
                                      f"layout (action_dim {self.action_dim}, state_dim {self.state_dim})")

    # ----- layout -------------------------------------------------------------------------
    @property
    def state_dim(self) -> int:
        return max((g["end"] for g in self.modality["state"].values()), default=0)

    @property
    def action_dim(self) -> int:
        return max((g["end"] for g in self.modality["action"].values()), default=0)

    @property
    def video_key(self) -> str:
        """The primary camera: the one the world model and the IDM look through."""
        return self.video_keys[0]

    def groups(self, part: str) -> dict[str, tuple[int, int]]:
        return {k: (g["start"], g["end"]) for k, g in self.modality[part].items()}

    def check_widths(self, state_dim: int | None, action_dim: int | None, where: str) -> None:
        """Raise if a dataset's widths disagree with this layout."""
        if action_dim is not None and action_dim != self.action_dim:
            raise EmbodimentError(
                f"{where}: action width {action_dim} disagrees with embodiment {self.name!r} "
                f"(action_dim {self.action_dim})"
            )
        if state_dim is not None and self.state_dim and state_dim != self.state_dim:
            raise EmbodimentError(
                f"{where}: state width {state_dim} disagrees with embodiment {self.name!r} "
                f"(state_dim {self.state_dim})"
            )

    # ----- normalisation ------------------------------------------------------------------
    def feature_stats(self, key: str) -> dict[str, np.ndarray]:
        if key not in self.stats:
            raise EmbodimentError(f"embodiment {self.name!r} has no statistics for {key!r}")
        return {k: np.asarray(v, dtype=np.float32) for k, v in self.stats[key].items() if k in STAT_NAMES}

    def normalize_action(self, action: np.ndarray) -> np.ndarray:
        """Map actions to [-1, 1] with the q01/q99 range (GR00T's choice: robust to outliers)."""
        lo, hi = self._range(self.action_key)
        return np.clip(2.0 * (action - lo) / (hi - lo) - 1.0, -1.5, 1.5).astype(np.float32)

    def unnormalize_action(self, action: np.ndarray) -> np.ndarray:
        lo, hi = self._range(self.action_key)
        return ((np.asarray(action, dtype=np.float32) + 1.0) / 2.0 * (hi - lo) + lo).astype(np.float32)

    def normalize_state(self, state: np.ndarray) -> np.ndarray:
        """States to [-1, 1] by their q01/q99 range, like actions (not clipped: a state estimate needs range)."""
        lo, hi = self._range(self.state_key)
        return (2.0 * (state - lo) / (hi - lo) - 1.0).astype(np.float32)

    def unnormalize_state(self, state: np.ndarray) -> np.ndarray:
        lo, hi = self._range(self.state_key)
        return ((np.asarray(state, dtype=np.float32) + 1.0) / 2.0 * (hi - lo) + lo).astype(np.float32)

    def _range(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        s = self.feature_stats(key)
        lo, hi = s.get("q01", s["min"]), s.get("q99", s["max"])
        # constant dimensions (a gripper never used, a frozen joint) would divide by zero
        hi = np.where(hi - lo < 1e-6, lo + 1.0, hi)
        return lo, hi

    # ----- (de)serialisation --------------------------------------------------------------
    def config_dict(self) -> dict[str, Any]:
        """Everything but modality/stats: the content of embodiment.yaml."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("modality", "stats", "source")}
        d["idm"] = asdict(self.idm)
        d["action_from_state"] = [asdict(r) for r in self.action_from_state]
        return d

    def to_dict(self) -> dict[str, Any]:
        d = self.config_dict()
        d["modality"] = copy.deepcopy(self.modality)
        d["stats"] = copy.deepcopy(self.stats)
        return d

    def save(self, folder: str | Path) -> Path:
        """Write embodiment.yaml + modality.json + stats.json into `folder` (created if needed)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        _atomic_write(folder / "embodiment.yaml", yaml.safe_dump(self.config_dict(), sort_keys=False))
        _atomic_write(folder / "modality.json", json.dumps(self.modality, indent=2))
        _atomic_write(folder / "stats.json", to_json(self.stats, folder / "stats.json", indent=2))  # never NaN
        return folder

    def with_stats(self, stats: dict[str, dict[str, list]]) -> Embodiment:
        e = copy.deepcopy(self)
        e.stats = stats
        return e

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "<dict>") -> Embodiment:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise EmbodimentError(f"{source}: unknown embodiment field(s) {sorted(unknown)}; known: {sorted(known)}")
        missing = [k for k in ("name", "robot_type", "fps", "video_keys", "modality") if k not in d]
        if missing:
            raise EmbodimentError(f"{source}: missing required field(s) {missing}")
        try:
            return cls(**{**d, "source": source})
        except TypeError as exc:
            raise EmbodimentError(f"{source}: {exc}") from exc


def check_groups(groups: Any, where: str) -> None:
    if not isinstance(groups, dict):
        raise EmbodimentError(f"{where} must be a mapping of group name -> {{start, end}}")
    for name, g in groups.items():
        if not isinstance(g, dict) or "start" not in g or "end" not in g:
            raise EmbodimentError(f"{where}.{name} needs integer 'start' and 'end'")
        if not (isinstance(g["start"], int) and isinstance(g["end"], int) and 0 <= g["start"] < g["end"]):
            raise EmbodimentError(f"{where}.{name}: need 0 <= start < end, got {g['start']}..{g['end']}")
    spans = sorted((g["start"], g["end"], name) for name, g in groups.items())
    for (s0, e0, n0), (s1, e1, n1) in zip(spans, spans[1:], strict=False):
        if s1 < e0:
            raise EmbodimentError(f"{where}: groups {n0!r} ({s0}..{e0}) and {n1!r} ({s1}..{e1}) overlap; each "
                                  "index belongs to one group")


def _atomic_write(path: Path, text: str) -> None:
    from dreamgen.io import atomic_write_text

    atomic_write_text(path, text)
