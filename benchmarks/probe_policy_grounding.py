"""Does a ToyWorld policy head for the object its instruction names? (pick_place; a CPU probe)

For each held-out layout, the policy sees the first frame once per possible instruction ("pick up the
red cube ...", "... green cube ...", ...); the xy direction of its first executed actions is matched to
the object it points at (smallest angle from the end effector). A policy that grounds the instruction
scores ~100%; one that ignores it or picks at random ~25%.

    MUJOCO_GL=egl python benchmarks/probe_policy_grounding.py CHECKPOINT [--layouts 10] [--seed 2000]

`--reach-seed S` instead measures reaching on the episodes `toyworld collect --seed S` made (the policy's own
training episodes when S is its demos' seed): the cosine between the first executed chunk's xy motion and the
direction to the named object, and the same with a black image (a policy that ignores the image moves the same
way in both). A policy that reaches scores ~1; one that ignores the layout ~0.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402


def _target(direction: np.ndarray, ee: np.ndarray, positions: dict[str, np.ndarray]) -> str:
    def angle(p: np.ndarray) -> float:
        v = p - ee
        cos = float(direction @ v) / (np.linalg.norm(direction) * np.linalg.norm(v) + 1e-9)
        return float(np.arccos(np.clip(cos, -1.0, 1.0)))

    return min(positions, key=lambda o: angle(positions[o]))


def probe(checkpoint: str, layouts: int, seed: int) -> dict:
    from dreamgen.policy.eval import LeRobotToyWorldPolicy
    from dreamgen.toyworld.env import ToyWorldEnv
    from dreamgen.toyworld.scene import OBJECT_NAMES
    from dreamgen.toyworld.tasks import instruction_for

    policy = LeRobotToyWorldPolicy.from_checkpoint(checkpoint, device="cpu")
    steps = int(getattr(policy.policy.config, "n_action_steps", 1))
    env = ToyWorldEnv("pick_place", "default")
    hits, total, all_same = 0, 0, 0
    try:
        for s in range(seed, seed + layouts):
            obs, _ = env.reset(seed=s)
            positions = {o: env.object_position(o)[:2] for o in OBJECT_NAMES}
            chosen = []
            for obj in OBJECT_NAMES:
                policy.reset()
                o = {"image": obs["image"], "state": obs["state"],
                     "instruction": instruction_for("pick_place", {"object": obj})}
                move = np.sum([policy.act(o)[:2] for _ in range(steps)], axis=0)
                chosen.append(_target(move, env.ee[:2], positions))
                hits += chosen[-1] == obj
                total += 1
            all_same += len(set(chosen)) == 1
    finally:
        env.close()
    return {"named_object_hits": hits, "probes": total, "layouts_with_one_target_for_all": all_same,
            "layouts": layouts, "seed": seed}


def reach(checkpoint: str, episodes: int, seed: int) -> dict:
    from dreamgen.policy.eval import LeRobotToyWorldPolicy
    from dreamgen.toyworld.env import ToyWorldEnv
    from dreamgen.toyworld.evaluate import episode_seed

    policy = LeRobotToyWorldPolicy.from_checkpoint(checkpoint, device="cpu")
    steps = int(getattr(policy.policy.config, "n_action_steps", 1))
    env = ToyWorldEnv("pick_place", "default")

    import torch

    def first_move(obs: dict, noise_seed: int) -> np.ndarray:
        policy.reset()
        torch.manual_seed(noise_seed)  # the diffusion sampler's starting noise
        return np.sum([policy.act(obs)[:2] for _ in range(steps)], axis=0)

    def cos(a: np.ndarray, b: np.ndarray) -> float:
        return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-9))

    seen, blind, noise = [], [], []
    try:
        for i in range(episodes):
            obs, info = env.reset(seed=episode_seed(seed, "pick_place", "default", i))
            target = env.object_position(info["task"]["object"])[:2] - env.ee[:2]
            o = {"image": obs["image"], "state": obs["state"], "instruction": info["instruction"]}
            moves = [first_move(o, k) for k in range(3)]
            seen += [cos(m, target) for m in moves]
            blind += [cos(m, first_move({**o, "image": np.zeros_like(o["image"])}, k)) for k, m in enumerate(moves)]
            noise += [cos(moves[0], moves[1]), cos(moves[0], moves[2])]
    finally:
        env.close()
    return {"episodes": episodes, "seed": seed, "noise_seeds": 3,
            "mean_cos_to_target": round(float(np.mean(seen)), 3),  # 1: heads for the named object
            "mean_cos_to_black_image_move": round(float(np.mean(blind)), 3),  # 1: the image changes nothing
            "mean_cos_between_noise_seeds": round(float(np.mean(noise)), 3)}  # low: the noise picks the way


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--layouts", type=int, default=10)
    ap.add_argument("--seed", type=int, default=2000)
    ap.add_argument("--reach-seed", type=int, default=None, help="measure reaching on this collection seed instead")
    ap.add_argument("--episodes", type=int, default=12, help="with --reach-seed: episodes to measure")
    a = ap.parse_args()
    if a.reach_seed is not None:
        print(reach(a.checkpoint, a.episodes, a.reach_seed))
    else:
        print(probe(a.checkpoint, a.layouts, a.seed))


if __name__ == "__main__":
    main()
