"""Labelled ToyWorld frames for pretraining a policy's image trunk: rendered frames of expert episodes
with the pixel position of every object, the plate, the bin and the gripper (projected through the
front camera's pinhole model, pixel_scene.project).

These are the stand-in for the labelled images (ImageNet, detection sets) that real robot policies'
vision backbones are pretrained on: collected with the *prior's* arm styles (never the target arm's
episodes), all behaviors and environments, at seeds disjoint from every demo. See policy/trunk.py.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

from dreamgen.toyworld.scene import OBJECT_NAMES

KEYPOINT_NAMES = (*OBJECT_NAMES, "plate", "bin", "gripper")


@dataclass(frozen=True)
class KeypointJob:
    arm_style: str
    behavior: str
    env: str
    episodes: int
    seed: int
    image_size: int
    every: int = 2  # keep every `every`-th frame of an episode (neighbouring frames are near copies)


def scene_keypoints(env, height: int, width: int) -> np.ndarray:
    """(K, 2) float32 (row, col) of KEYPOINT_NAMES in the env's current state."""
    from dreamgen.toyworld.pixel_scene import project

    world = env.world_state()
    points = [world.objects[o] for o in OBJECT_NAMES]
    points += [world.plate, world.bin, np.asarray(world.ee, dtype=np.float64)]
    return np.array([project(p, height, width) for p in points], dtype=np.float32)


def render_job(job: KeypointJob) -> tuple[np.ndarray, np.ndarray]:
    """Frames (N, H, W, 3) uint8 and keypoints (N, K, 2) of `job.episodes` expert episodes."""
    from dreamgen.toyworld.env import ToyWorldEnv
    from dreamgen.toyworld.evaluate import episode_seed
    from dreamgen.toyworld.experts import ScriptedExpert

    env = ToyWorldEnv(job.behavior, job.env, image_size=job.image_size, arm_style=job.arm_style)
    frames, points = [], []
    try:
        for i in range(job.episodes):
            obs, _ = env.reset(seed=episode_seed(job.seed, job.behavior, job.env, i))
            expert, t, done = ScriptedExpert(env), 0, False
            while not done:
                if t % job.every == 0:
                    frames.append(obs["image"])
                    points.append(scene_keypoints(env, env.height, env.width))
                obs, _, terminated, truncated, _ = env.step(expert.act())
                done, t = terminated or truncated, t + 1
    finally:
        env.close()
    return np.stack(frames), np.stack(points)


def render_keypoint_frames(arm_styles: list[str], behaviors: list[str], envs: list[str], episodes: int,
                           seed: int, image_size: int, workers: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """`episodes` expert episodes per (arm style, behavior, environment), rendered in `workers` processes."""
    jobs = [KeypointJob(a, b, e, episodes, seed + 7919 * k, image_size)
            for k, (a, b, e) in enumerate((a, b, e) for a in arm_styles for b in behaviors for e in envs)]
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            parts = list(pool.map(render_job, jobs))
    else:
        parts = [render_job(j) for j in jobs]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
