"""Ground truth for the ToyWorld pixel judge: labelled renders (to fit its colour table) and rollouts
whose outcome the simulator's own predicate decides (to measure its precision and recall).

Rollout variants: `expert` (the scripted expert), `noise` (the expert with Gaussian action noise),
`early_release` (the gripper opens at a random step and stays open), `wrong_object` (the expert does
the task with another object than the instruction names) and `truncated` (the expert stopped at a
random step). Together they give a mix of successes and near-miss failures.
"""

from __future__ import annotations

import mujoco
import numpy as np

from dreamgen.toyworld import scene as S
from dreamgen.toyworld.env import ToyWorldEnv
from dreamgen.toyworld.experts import ScriptedExpert
from dreamgen.toyworld.pixel_scene import CLASS_ID
from dreamgen.toyworld.tasks import is_success

VARIANTS = ("expert", "noise", "early_release", "wrong_object", "truncated")


def geom_classes(model: mujoco.MjModel) -> np.ndarray:
    """Class id (pixel_scene.CLASSES) of every geom, by the body it belongs to."""
    out = np.zeros(model.ngeom, dtype=np.uint8)
    for g in range(model.ngeom):
        body = mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_BODY, int(model.geom_bodyid[g])) or ""
        for obj in S.OBJECT_NAMES:
            if body == S.body_name(obj):
                out[g] = CLASS_ID[obj]
        if body in ("plate", "bin"):
            out[g] = CLASS_ID[body]
    return out


class LabelRenderer:
    """Renders the env's current frame with per-pixel class labels from MuJoCo's segmentation."""

    def __init__(self, env: ToyWorldEnv):
        self.env = env
        self.classes = geom_classes(env.model)
        self.renderer = S.make_renderer(env.model, env.height, env.width)
        self.renderer.enable_segmentation_rendering()

    def labels(self) -> np.ndarray:
        self.renderer.update_scene(self.env.data, camera="front", scene_option=self.env._scene_option)  # noqa: SLF001
        seg = self.renderer.render()
        geom = seg[..., 0]
        is_geom = (seg[..., 1] == int(mujoco.mjtObj.mjOBJ_GEOM)) & (geom >= 0)
        return np.where(is_geom, self.classes[np.clip(geom, 0, None)], 0).astype(np.uint8)


def rollout(env: ToyWorldEnv, behavior: str, env_name: str, seed: int, variant: str,
            rng: np.random.Generator, on_frame=None) -> tuple[np.ndarray, str, bool]:
    """One episode: (frames (T+1, H, W, 3), the instruction, the simulator's predicate at the last frame).
    `on_frame()` is called after every observation (to render labels alongside)."""
    obs, info = env.reset(seed=seed, options={"behavior": behavior, "env": env_name})
    instruction, params = info["instruction"], dict(env.task_params)
    if variant == "wrong_object":  # plan with another object, judge against the instruction's
        others = [o for o in S.OBJECT_NAMES if o not in (params["object"], params.get("target"))]
        env.task_params = {**params, "object": str(rng.choice(others))}
    expert = ScriptedExpert(env)
    env.task_params = params
    frames = [obs["image"]]
    if on_frame:
        on_frame()
    stop_at = int(rng.integers(4, 26)) if variant == "truncated" else None
    release_at = int(rng.integers(4, 20)) if variant == "early_release" else None
    sigma = float(rng.uniform(0.15, 0.5)) if variant == "noise" else 0.0
    after_done = 0
    while True:
        a = expert.act()
        if sigma:
            a = a + np.array([*rng.normal(0, sigma, 3), 0.0], dtype=np.float32)
        if release_at is not None and env.steps >= release_at:
            a[3] = -1.0
        obs, _, terminated, truncated, info = env.step(np.clip(a, -1, 1))
        frames.append(obs["image"])
        if on_frame:
            on_frame()
        after_done += expert.done
        if terminated or truncated or after_done > 3 or (stop_at is not None and env.steps >= stop_at):
            break
    ok = is_success(behavior, env.world_state(), params)
    return np.stack(frames), instruction, ok
