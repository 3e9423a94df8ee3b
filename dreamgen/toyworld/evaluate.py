"""Closed-loop evaluation: success rate per (behavior, environment) with Wilson 95% intervals."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dreamgen.intervals import wilson_interval  # noqa: F401  (re-exported by dreamgen.toyworld)
from dreamgen.toyworld.env import IMAGE_SIZE, ToyWorldEnv
from dreamgen.toyworld.scene import ENVIRONMENTS
from dreamgen.toyworld.tasks import BEHAVIORS, check_name


def episode_seed(seed: int, behavior: str, env: str, i: int) -> int:
    """The seed of episode i of (behavior, env): stable across runs and independent of the other pairs."""
    b = list(BEHAVIORS).index(behavior)
    e = list(ENVIRONMENTS).index(env)
    return int(seed) * 1_000_003 + b * 10_007 + e * 101 + i


def evaluate(
    policy: Any,
    behaviors: Sequence[str],
    envs: Sequence[str],
    episodes: int,
    seed: int = 0,
    out_dir: str | Path | None = None,
    save_videos: int = 2,
    image_size: int | tuple[int, int] = IMAGE_SIZE,
    arm_style: str = "default",
    max_steps: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run `episodes` closed-loop episodes per (behavior, env); return (and write) the results.

    Returns {"results": [{behavior, env, episodes, successes, success_rate, ci95: [lo, hi],
    mean_steps}], "overall": {...}, ...}. With `out_dir`: writes results.json and, per pair, up to
    `save_videos` rollout mp4s (rollouts/<behavior>__<env>__<i>_<success|fail>.mp4).
    """
    behaviors = [check_name("behavior", b, list(BEHAVIORS)) for b in behaviors]
    envs = [check_name("environment", e, list(ENVIRONMENTS)) for e in envs]
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        (out / "rollouts").mkdir(parents=True, exist_ok=True)
    env = ToyWorldEnv(behavior=behaviors[0], env=envs[0], image_size=image_size, arm_style=arm_style,
                      max_episode_steps=max_steps)
    pairs = [(b, e) for b in behaviors for e in envs]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(pairs) * episodes, desc="toyworld eval", unit="ep")
    rows = []
    t0 = time.time()
    try:
        for b, e in pairs:
            successes, steps = 0, []
            for i in range(episodes):
                ok, frames, n = _run_episode(env, policy, b, e, episode_seed(seed, b, e, i),
                                             record=out is not None and i < save_videos)
                successes += ok
                steps.append(n)
                if frames is not None:
                    from dreamgen.data.video import write_video

                    name = f"{b}__{e}__{i}_{'success' if ok else 'fail'}.mp4"
                    write_video(out / "rollouts" / name, np.stack(frames), fps=env.metadata["render_fps"])
                if bar is not None:
                    bar.update(1)
            lo, hi = wilson_interval(successes, episodes)
            rows.append({"behavior": b, "env": e, "episodes": episodes, "successes": successes,
                         "success_rate": successes / episodes, "ci95": [lo, hi],
                         "mean_steps": float(np.mean(steps))})
    finally:
        env.close()
        if bar is not None:
            bar.close()
    total_s = sum(r["successes"] for r in rows)
    total_n = sum(r["episodes"] for r in rows)
    report = {
        "policy": getattr(policy, "name", type(policy).__name__),
        "seed": seed,
        "arm_style": arm_style,
        "image_size": image_size,
        "results": rows,
        "overall": {"episodes": total_n, "successes": total_s, "success_rate": total_s / total_n,
                    "ci95": list(wilson_interval(total_s, total_n))},
        "seconds": round(time.time() - t0, 2),
    }
    if out is not None:
        tmp = out / "results.json.tmp"
        tmp.write_text(json.dumps(report, indent=2))
        tmp.replace(out / "results.json")
    return report


def _run_episode(env: ToyWorldEnv, policy: Any, behavior: str, env_name: str, seed: int, record: bool):
    obs, info = env.reset(seed=seed, options={"behavior": behavior, "env": env_name})
    if hasattr(policy, "bind"):
        policy.bind(env)
    policy.reset()
    frames = [obs["image"]] if record else None
    steps = 0
    while True:
        action = policy.act({"image": obs["image"], "state": obs["state"], "instruction": info["instruction"]})
        obs, _, terminated, truncated, info = env.step(action)
        steps += 1
        if frames is not None:
            frames.append(obs["image"])
        if terminated or truncated:
            return bool(info["success"]), frames, steps


def format_report(report: dict[str, Any]) -> str:
    lines = [f"{'behavior':<12} {'env':<12} {'success':>9} {'rate':>6}  95% CI"]
    for r in report["results"]:
        lo, hi = r["ci95"]
        lines.append(f"{r['behavior']:<12} {r['env']:<12} {r['successes']:>4}/{r['episodes']:<4} "
                     f"{r['success_rate']:>6.2f}  [{lo:.2f}, {hi:.2f}]")
    o = report["overall"]
    lines.append(f"{'overall':<25} {o['successes']:>4}/{o['episodes']:<4} {o['success_rate']:>6.2f}  "
                 f"[{o['ci95'][0]:.2f}, {o['ci95'][1]:.2f}]")
    return "\n".join(lines)
