"""ToyWorld behaviors: task sampling, language instructions and exact success predicates.

A behavior samples its parameters (which object, which target, which direction) from a seeded
generator and a scene layout, turns them into an instruction, and judges success from a
`WorldState` snapshot. Predicates are pure functions of that snapshot so they can be tested on
hand-made states.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dreamgen.errors import DreamgenError
from dreamgen.toyworld.scene import (
    BIN_HEIGHT,
    BIN_INNER_HALF,
    CUBE_HALF,
    OBJECT_NAMES,
    OBJECT_REGION,
    OBJECTS,
    PLATE_RADIUS,
    PLATE_TOP,
)

PUSH_DISTANCE = 0.08  # required displacement along the push direction
LIFT_HEIGHT = 0.15  # required height of the object's bottom above the table (pick_place carries lower)
NEXT_TO_RANGE = (0.045, 0.10)  # centre offset along the side direction for "next to"
DIRECTIONS = {"left": (-1.0, 0.0), "right": (1.0, 0.0), "forward": (0.0, 1.0), "backward": (0.0, -1.0)}
SIDES = {"left": (-1.0, 0.0), "right": (1.0, 0.0)}
CUBES = [o for o in OBJECT_NAMES if OBJECTS[o][0] == "box"]


@dataclass
class WorldState:
    """What the success predicates look at. Positions are object centres (m)."""

    objects: dict[str, np.ndarray]  # name -> (3,) position
    plate: np.ndarray  # (3,) plate base centre
    bin: np.ndarray  # (3,) bin base centre
    held: str | None = None
    ee: np.ndarray = field(default_factory=lambda: np.zeros(3))
    upright: dict[str, float] = field(default_factory=dict)  # name -> cos(tilt) of the object's z axis


@dataclass
class Layout:
    """Initial scene: object and receptacle positions on the table (xy, m)."""

    objects: dict[str, np.ndarray]
    plate: np.ndarray
    bin: np.ndarray


def _resting_on_table(z: float) -> bool:
    return z <= CUBE_HALF + 0.008


def _on_plate(s: WorldState, obj: str) -> bool:
    p = s.objects[obj]
    d = np.linalg.norm(p[:2] - s.plate[:2])
    return d <= PLATE_RADIUS - 0.01 and PLATE_TOP + CUBE_HALF - 0.006 <= p[2] <= PLATE_TOP + CUBE_HALF + 0.008


def _in_bin(s: WorldState, obj: str) -> bool:
    p = s.objects[obj]
    dx, dy = np.abs(p[:2] - s.bin[:2])
    return dx <= BIN_INNER_HALF - 0.01 and dy <= BIN_INNER_HALF - 0.01 and p[2] < BIN_HEIGHT


# ----- predicates --------------------------------------------------------------------------------
def success_pick_place(s: WorldState, p: dict[str, Any]) -> bool:
    return s.held is None and _on_plate(s, p["object"])


def success_put_in_bin(s: WorldState, p: dict[str, Any]) -> bool:
    return s.held is None and _in_bin(s, p["object"])


def success_push(s: WorldState, p: dict[str, Any]) -> bool:
    pos = s.objects[p["object"]]
    d = np.asarray(DIRECTIONS[p["direction"]])
    disp = pos[:2] - np.asarray(p["start"][:2])
    along = float(disp @ d)
    across = abs(float(disp[0] * d[1] - disp[1] * d[0]))
    return s.held is None and _resting_on_table(pos[2]) and along >= PUSH_DISTANCE and across <= 0.05


def success_stack(s: WorldState, p: dict[str, Any]) -> bool:
    top, base = s.objects[p["object"]], s.objects[p["target"]]
    dz = top[2] - base[2]
    return (
        s.held is None
        and np.linalg.norm(top[:2] - base[:2]) <= CUBE_HALF
        and 2 * CUBE_HALF - 0.006 <= dz <= 2 * CUBE_HALF + 0.008
        and _resting_on_table(base[2])
    )


def success_lift(s: WorldState, p: dict[str, Any]) -> bool:
    return s.objects[p["object"]][2] - CUBE_HALF >= LIFT_HEIGHT


def success_next_to(s: WorldState, p: dict[str, Any]) -> bool:
    obj, ref = s.objects[p["object"]], s.objects[p["target"]]
    d = np.asarray(SIDES[p["side"]])
    off = obj[:2] - ref[:2]
    along = float(off @ d)
    across = abs(float(off[0] * d[1] - off[1] * d[0]))
    return (
        s.held is None
        and _resting_on_table(obj[2])
        and NEXT_TO_RANGE[0] <= along <= NEXT_TO_RANGE[1]
        and across <= 0.03
    )


# ----- behaviors ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Behavior:
    name: str
    description: str
    template: str
    success: Any  # (WorldState, params) -> bool
    max_steps: int  # time limit (control steps at 10 fps)


BEHAVIORS: dict[str, Behavior] = {
    b.name: b
    for b in [
        Behavior("pick_place", "pick an object and place it on the plate",
                 "pick up the {object} and place it on the plate", success_pick_place, 60),
        Behavior("put_in_bin", "pick an object and drop it into the bin",
                 "put the {object} in the bin", success_put_in_bin, 60),
        Behavior("push", "push an object 8+ cm left/right/forward/backward",
                 "push the {object} {direction}", success_push, 50),
        Behavior("stack", "stack one cube on another",
                 "stack the {object} on the {target}", success_stack, 60),
        Behavior("lift", "lift an object 15+ cm above the table",
                 "lift the {object}", success_lift, 40),
        Behavior("next_to", "place an object to the left/right of another",
                 "put the {object} to the {side} of the {target}", success_next_to, 60),
    ]
}


def check_name(kind: str, name: str, valid: list[str]) -> str:
    if name not in valid:
        close = difflib.get_close_matches(name, valid, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise DreamgenError(f"unknown ToyWorld {kind} {name!r}{hint}; valid: {', '.join(valid)}")
    return name


def get_behavior(name: str) -> Behavior:
    return BEHAVIORS[check_name("behavior", name, list(BEHAVIORS))]


def instruction_for(behavior: str, task_params: dict[str, Any]) -> str:
    """The language instruction, e.g. 'pick up the red cube and place it on the plate'."""
    b = get_behavior(behavior)
    words = {k: v for k, v in task_params.items() if isinstance(v, str)}
    if words.get("direction") in ("left", "right"):
        words["direction"] = f"to the {words['direction']}"
    return b.template.format(**words)


def is_success(behavior: str, state: WorldState, task_params: dict[str, Any]) -> bool:
    return bool(get_behavior(behavior).success(state, task_params))


# ----- sampling ----------------------------------------------------------------------------------
def _free(xy: np.ndarray, layout: Layout, ignore: tuple[str, ...] = (), margin: float = 0.065) -> bool:
    """True when a cube centred at `xy` stays on the table and clear of everything else."""
    lo, hi = OBJECT_REGION
    if np.any(xy < lo - 0.02) or np.any(xy > hi + 0.02):
        return False
    for name, p in layout.objects.items():
        if name not in ignore and np.linalg.norm(xy - p[:2]) < margin:
            return False
    if np.linalg.norm(xy - layout.plate[:2]) < PLATE_RADIUS + CUBE_HALF + 0.02:
        return False
    return not np.all(np.abs(xy - layout.bin[:2]) < BIN_INNER_HALF + CUBE_HALF + 0.03)


def sample_layout(rng: np.random.Generator) -> Layout:
    lo, hi = OBJECT_REGION
    for _ in range(1000):
        plate = rng.uniform(lo + PLATE_RADIUS * 0.5, hi - PLATE_RADIUS * 0.5)
        bin_ = rng.uniform(lo + BIN_INNER_HALF * 0.5, hi - BIN_INNER_HALF * 0.5)
        if np.linalg.norm(plate - bin_) < PLATE_RADIUS + BIN_INNER_HALF * 1.42 + 0.06:
            continue
        layout = Layout({}, np.array([*plate, 0.0]), np.array([*bin_, 0.0]))
        ok = True
        for obj in OBJECT_NAMES:
            for _ in range(200):
                xy = rng.uniform(lo, hi)
                if _free(xy, layout, margin=0.075):
                    layout.objects[obj] = np.array([*xy, CUBE_HALF])
                    break
            else:
                ok = False
                break
        if ok:
            return layout
    raise RuntimeError("could not sample a ToyWorld layout")  # pragma: no cover - never in practice


def sample_task(behavior: str, rng: np.random.Generator) -> tuple[Layout, dict[str, Any]]:
    """A layout plus the behavior's parameters, resampling the layout until the task is feasible."""
    get_behavior(behavior)
    for _ in range(1000):
        layout = sample_layout(rng)
        params = _sample_params(behavior, layout, rng)
        if params is not None:
            return layout, params
    raise RuntimeError(f"could not sample a feasible {behavior} task")  # pragma: no cover


def _sample_params(behavior: str, layout: Layout, rng: np.random.Generator) -> dict[str, Any] | None:
    if behavior in ("pick_place", "put_in_bin", "lift"):
        return {"object": str(rng.choice(OBJECT_NAMES))}
    if behavior == "push":
        obj = str(rng.choice(OBJECT_NAMES))
        start = layout.objects[obj]
        dirs = [str(d) for d in rng.permutation(list(DIRECTIONS))]
        for d in dirs:
            v = np.asarray(DIRECTIONS[d])
            # the path, the end point and the spot behind the object (where the gripper goes down) are clear
            if all(_free(start[:2] + v * t, layout, ignore=(obj,)) for t in (-0.05, 0.04, 0.08, 0.12)):
                return {"object": obj, "direction": d, "start": [float(x) for x in start]}
        return None
    if behavior == "stack":
        obj, target = (str(x) for x in rng.choice(CUBES, size=2, replace=False))
        return {"object": obj, "target": target}
    if behavior == "next_to":
        obj, target = (str(x) for x in rng.choice(OBJECT_NAMES, size=2, replace=False))
        for side in [str(s) for s in rng.permutation(list(SIDES))]:
            goal = layout.objects[target][:2] + 0.07 * np.asarray(SIDES[side])
            if _free(goal, layout, ignore=(obj, target), margin=0.07):
                return {"object": obj, "target": target, "side": side}
        return None
    raise AssertionError(behavior)  # pragma: no cover
