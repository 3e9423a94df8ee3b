"""The ToyWorld pixel judge: decides an instruction's success from a video's pixels alone.

It reads the named object(s), the plate and the bin by colour (`pixel_scene`), turns their pixel
positions into table coordinates through the front camera, and applies the success rules of
`tasks.py` to what it read: a stand-in for a VLM judge that needs no IDM, no simulator state and no
GPU. It assumes the ToyWorld front camera (any resolution) and the default arm style.

What it cannot see: whether the gripper still holds an object resting where the task wants it (a
resting object is judged by where it is), and heights other than by the camera ray (lift, stack).
Calibration against the simulator's predicate: `benchmarks/bench_pixel_judge.py`, docs/bench.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dreamgen.errors import DreamgenError
from dreamgen.toyworld.pixel_scene import (
    CLASS_ID,
    classify,
    find_blob,
    pixel_height_above,
    pixel_to_plane,
    workspace_mask,
)
from dreamgen.toyworld.scene import (
    BIN_FLOOR_TOP,
    BIN_INNER_HALF,
    CAMERA_FOVY,
    CUBE_HALF,
    OBJECT_NAMES,
    PLATE_RADIUS,
    PLATE_TOP,
)
from dreamgen.toyworld.tasks import DIRECTIONS, LIFT_HEIGHT, NEXT_TO_RANGE, PUSH_DISTANCE, SIDES

LAST_FRAMES = 4  # a stack/next_to reference is looked for in this many frames up to the object's last sighting
_OBJ = "(?P<object>[a-z]+ (?:cube|cylinder))"
_TGT = "(?P<target>[a-z]+ (?:cube|cylinder))"
PATTERNS = [  # (behavior, regex over the normalised instruction); next_to before put_in_bin
    ("pick_place", rf"pick up the {_OBJ} and place it on the plate"),
    ("next_to", rf"put the {_OBJ} to the (?P<side>left|right) of the {_TGT}"),
    ("put_in_bin", rf"put the {_OBJ} in the bin"),
    ("push", rf"push the {_OBJ} (?:to the )?(?P<direction>left|right|forward|backward)"),
    ("stack", rf"stack the {_OBJ} on the {_TGT}"),
    ("lift", rf"lift the {_OBJ}"),
]


class InstructionError(DreamgenError, ValueError):
    """The instruction is not one of ToyWorld's task templates."""


@dataclass
class Task:
    behavior: str
    object: str
    target: str | None = None
    direction: str | None = None  # push
    side: str | None = None  # next_to


def parse_instruction(text: str) -> Task:
    """A ToyWorld instruction (any case, optional prompt prefix, trailing period) -> its Task."""
    norm = " ".join(str(text).lower().replace("_", " ").split()).rstrip(". ")
    for behavior, pattern in PATTERNS:
        m = re.search(pattern + "$", norm)
        if m:
            g = m.groupdict()
            for key in ("object", "target"):
                if g.get(key) is not None and g[key] not in OBJECT_NAMES:
                    raise InstructionError(f"{text!r}: unknown object {g[key]!r}; ToyWorld has "
                                           f"{', '.join(OBJECT_NAMES)}")
            return Task(behavior, g["object"], g.get("target"), g.get("direction"), g.get("side"))
    raise InstructionError(f"{text!r} is not a ToyWorld instruction (pick_place, put_in_bin, push, stack, lift, "
                           "next_to templates, e.g. 'pick up the red cube and place it on the plate')")


@dataclass
class Verdict:
    success: bool
    reason: str
    readings: dict = field(default_factory=dict)  # what was read, in metres


class _Scene:
    """Class maps of a clip and the geometry to read positions from them."""

    def __init__(self, frames: np.ndarray):
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) < 2:
            raise DreamgenError(f"the pixel judge needs >= 2 RGB frames (T, H, W, 3), got shape {frames.shape}")
        self.h, self.w = frames.shape[1:3]
        self.classes, self.env = classify(frames)
        self.ws = workspace_mask(self.h, self.w)
        self.px_per_m = (self.h / 2) / np.tan(np.deg2rad(CAMERA_FOVY) / 2) / 0.8  # at the table's depth

    def blob(self, t: int, name: str, radius_m: float, min_frac: float):
        area = (radius_m * self.px_per_m) ** 2
        return find_blob((self.classes[t] == CLASS_ID[name]) & self.ws, radius_m * self.px_per_m,
                         max(3, int(min_frac * area)))

    def object_at(self, name: str, frames: list[int]):
        """The blob of object `name` in the latest of `frames` where it shows, with its frame index."""
        for t in frames:
            b = self.blob(t, name, 0.03, 0.25)
            if b is not None:
                return t, b
        return None, None

    def receptacle(self, name: str, z: float, radius_m: float) -> np.ndarray | None:
        """Table xy of the plate or bin (static): the median over the frames where it shows most."""
        ts = [0, 1, len(self.classes) - 1]
        blobs = [b for b in (self.blob(t, name, radius_m, 0.1) for t in ts) if b is not None]
        if not blobs:
            return None
        best = max(b.area for b in blobs)
        pts = [pixel_to_plane(b.row, b.col, z, self.h, self.w) for b in blobs if b.area >= 0.8 * best]
        return np.median(np.stack(pts), axis=0)

    def xy(self, blob, z: float) -> np.ndarray:
        return pixel_to_plane(blob.row, blob.col, z, self.h, self.w)


def judge_frames(frames: np.ndarray, instruction: str, last_frames: int = LAST_FRAMES) -> Verdict:
    """Success of `instruction` in a clip (uint8 (T, H, W, 3), the ToyWorld front camera)."""
    task = parse_instruction(instruction)
    s = _Scene(frames)
    # the gripper may hide the object at the end (a push): its latest sighting counts
    t_end, obj = s.object_at(task.object, list(range(len(frames) - 1, 0, -1)))
    if obj is None:
        return Verdict(False, f"the {task.object} is not visible after the first frame", {"env": s.env})
    _, first = s.object_at(task.object, [0, 1])
    rest = CUBE_HALF
    if task.behavior == "pick_place":
        plate = s.receptacle("plate", 0.0, 0.07)
        if plate is None:
            return Verdict(False, "no plate found", {"env": s.env})
        d = float(np.linalg.norm(s.xy(obj, PLATE_TOP + rest) - plate))
        return Verdict(d <= PLATE_RADIUS - 0.01, f"{d * 100:.1f} cm from the plate centre", {"dist": d})
    if task.behavior == "put_in_bin":
        bin_ = s.receptacle("bin", 0.01, 0.09)
        if bin_ is None:
            return Verdict(False, "no bin found", {"env": s.env})
        dx, dy = np.abs(s.xy(obj, BIN_FLOOR_TOP + rest) - bin_)
        ok = max(dx, dy) <= BIN_INNER_HALF - 0.01
        return Verdict(bool(ok), f"{dx * 100:.1f}/{dy * 100:.1f} cm from the bin centre (x/y)", {"dx": dx, "dy": dy})
    if first is None:
        return Verdict(False, f"the {task.object} is not visible in the first frames", {"env": s.env})
    start = s.xy(first, rest)
    if task.behavior == "lift":
        # the palm hides a lifted object's top: read the height of its front-bottom edge instead
        z = pixel_height_above(obj.bottom, obj.col, start - np.array([0.0, rest]), s.h, s.w)
        return Verdict(z >= LIFT_HEIGHT, f"bottom {z * 100:.1f} cm above the table", {"height": z})
    if task.behavior == "push":
        return _along_across(s.xy(obj, rest) - start, DIRECTIONS[task.direction], (PUSH_DISTANCE, np.inf), 0.05,
                             f"pushed {task.direction}")
    _, ref = s.object_at(task.target, list(range(t_end, max(t_end - last_frames, 0), -1)))
    if ref is None:
        return Verdict(False, f"the {task.target} is not visible near the end", {"env": s.env})
    ref_xy = s.xy(ref, rest)
    if task.behavior == "next_to":
        return _along_across(s.xy(obj, rest) - ref_xy, SIDES[task.side], NEXT_TO_RANGE, 0.03,
                             f"{task.side} of the {task.target}")
    # stack: the top cube's centre one cube above the base's, within a cube's half width in xy
    z = pixel_height_above(obj.row, obj.col, ref_xy, s.h, s.w)
    d = float(np.linalg.norm(s.xy(obj, 3 * rest) - ref_xy))
    ok = d <= CUBE_HALF and 2 * CUBE_HALF <= z <= 4 * CUBE_HALF
    return Verdict(bool(ok), f"{d * 100:.1f} cm off the {task.target}, centre {z * 100:.1f} cm up",
                   {"dist": d, "height": z})


def _along_across(disp: np.ndarray, direction, along_range, max_across: float, what: str) -> Verdict:
    d = np.asarray(direction, dtype=np.float64)
    along = float(disp @ d)
    across = abs(float(disp[0] * d[1] - disp[1] * d[0]))
    ok = along_range[0] <= along <= along_range[1] and across <= max_across
    return Verdict(bool(ok), f"{what}: {along * 100:.1f} cm along, {across * 100:.1f} cm across",
                   {"along": along, "across": across})


class ToyWorldPixelJudge:
    """DreamGenBench judge (`Judge` protocol) for instruction following in ToyWorld videos.

    Replies '1' or '0' like a VLM judge; an instruction it cannot parse or a video it cannot read fails
    that item only. It does not judge physics alignment (task 'pa')."""

    kind = "toyworld-pixel"
    model = "toyworld-pixel-v1"
    prompt_style = "qwen"

    def __init__(self, last_frames: int = LAST_FRAMES):
        self.last_frames = last_frames

    def describe(self) -> dict:
        return {"last_frames": self.last_frames, "colour_tables": "dreamgen/toyworld/pixel_colours.npz",
                "measures": "instruction success from object/plate/bin positions read by colour"}

    def ask(self, video_path: Path, question: str, task: str, instruction: str = "") -> str:
        from dreamgen.data import read_video
        from dreamgenbench.judges.base import JudgeItemError

        if task != "if":
            raise JudgeItemError("the ToyWorld pixel judge scores instruction following (if) only, not pa")
        try:
            verdict = judge_frames(read_video(video_path), instruction, self.last_frames)
        except DreamgenError as exc:
            raise JudgeItemError(str(exc)) from None
        return "1" if verdict.success else "0"
