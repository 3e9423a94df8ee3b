"""Collect scripted-expert episodes into a LeRobot v3 dataset (video, state, action, task text)."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dreamgen.errors import DreamgenError
from dreamgen.toyworld.env import IMAGE_SIZE, ToyWorldEnv
from dreamgen.toyworld.evaluate import episode_seed
from dreamgen.toyworld.experts import run_expert_episode
from dreamgen.toyworld.scene import ARM_STYLES, ENVIRONMENTS
from dreamgen.toyworld.tasks import BEHAVIORS, check_name

log = logging.getLogger(__name__)


@dataclass
class CollectConfig:
    out: str
    behaviors: list[str] = field(default_factory=lambda: ["pick_place"])
    envs: list[str] = field(default_factory=lambda: ["default"])
    episodes: int = 50  # in total, spread round-robin over the (behavior, env) pairs
    seed: int = 0
    image_size: int = IMAGE_SIZE
    arm_style: str = "default"
    embodiment: str = "toyworld"
    max_retries: int = 20  # seeds skipped per episode when the expert fails (it rarely does)
    # std of Gaussian noise added to the executed dx, dy, dz (recorded actions stay the expert's: DART-style
    # corrections for policy demos; experts.run_expert_episode). 0 for anything an IDM learns from.
    action_noise: float = 0.0


def _final_action(actions: np.ndarray) -> np.ndarray:
    """The row that goes with the last frame: stand still, keep the gripper command."""
    a = np.zeros(actions.shape[1], dtype=np.float32)
    a[3] = actions[-1, 3]
    return a


def expert_episode_arrays(env: ToyWorldEnv, seed: int, options: dict[str, Any], action_noise: float = 0.0):
    """One expert episode as dataset rows: frames (T,H,W,3), state (T,4), action (T,4), success, info.

    Row t is (observation t, action taken after it); the final observation gets a stand-still action so
    the dataset ends on the completed task.
    """
    frames, states, actions, success, info = run_expert_episode(env, seed, options, action_noise=action_noise)
    actions = np.concatenate([actions, _final_action(actions)[None]], 0)
    return frames, states, actions, success, info


def collect(cfg: CollectConfig, progress: bool = True) -> dict[str, Any]:
    from dreamgen.data import DatasetWriter
    from dreamgen.embodiments import get_embodiment

    behaviors = [check_name("behavior", b, list(BEHAVIORS)) for b in cfg.behaviors]
    envs = [check_name("environment", e, list(ENVIRONMENTS)) for e in cfg.envs]
    check_name("arm_style", cfg.arm_style, list(ARM_STYLES))
    if cfg.episodes < 1:
        raise DreamgenError(f"--episodes must be >= 1, got {cfg.episodes}")
    if not 0.0 <= cfg.action_noise <= 1.0:
        raise DreamgenError(f"--action-noise must be in [0, 1] (a fraction of the largest step), got {cfg.action_noise}")
    embodiment = get_embodiment(cfg.embodiment)
    pairs = [(b, e) for b in behaviors for e in envs]
    env = ToyWorldEnv(behavior=behaviors[0], env=envs[0], image_size=cfg.image_size, arm_style=cfg.arm_style)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.episodes, desc="toyworld collect", unit="ep")
    per_pair: dict[str, int] = {f"{b}/{e}": 0 for b, e in pairs}
    failures, lengths, episodes_meta = 0, [], []
    provenance = {"source": "toyworld scripted experts", "config": asdict(cfg)}
    try:
        # lossless h264 (crf 0, 4:4:4: at most 2/255 from the render) so that training frames look like the
        # raw renders a policy sees in evaluation (4:2:0 at crf 15 was 30 dB away, colours off by 28/255);
        # a keyframe every 40 frames (~one per episode) keeps that at ~35 KB per 96x96 episode
        with DatasetWriter(cfg.out, embodiment, provenance=provenance, crf=0, pix_fmt="yuv444p", gop=40) as writer:
            for k in range(cfg.episodes):
                b, e = pairs[k % len(pairs)]
                i = k // len(pairs)
                for retry in range(cfg.max_retries + 1):
                    # retries use seeds far from the regular ones so they never repeat another episode
                    s = episode_seed(cfg.seed, b, e, i + retry * 100_000)
                    frames, states, actions, success, info = expert_episode_arrays(
                        env, s, {"behavior": b, "env": e}, cfg.action_noise)
                    if success:
                        break
                    failures += 1
                else:
                    raise DreamgenError(f"the {b} expert failed {cfg.max_retries + 1} times in a row in {e}")
                writer.add_episode(frames, actions, task=info["instruction"], state=states)
                per_pair[f"{b}/{e}"] += 1
                lengths.append(len(actions))
                episodes_meta.append({"episode_index": k, "behavior": b, "env": e, "seed": s,
                                      "instruction": info["instruction"], "task": info["task"]})
                if bar is not None:
                    bar.update(1)
            writer.provenance["episodes"] = episodes_meta
    finally:
        env.close()
        if bar is not None:
            bar.close()
    summary = {"out": str(Path(cfg.out)), "episodes": cfg.episodes, "frames": int(sum(lengths)),
               "mean_length": float(np.mean(lengths)), "max_length": int(max(lengths)),
               "expert_failures_skipped": failures, "per_pair": per_pair}
    log.info("collected %s", summary)
    return summary


def embodiment_with_stats(dataset: str | Path, embodiment: str = "toyworld"):
    """The embodiment with statistics recomputed from `dataset` (e.g. freshly collected expert data)."""
    from dreamgen.data import compute_stats, open_dataset
    from dreamgen.embodiments import get_embodiment

    return get_embodiment(embodiment).with_stats(compute_stats(open_dataset(dataset)))

