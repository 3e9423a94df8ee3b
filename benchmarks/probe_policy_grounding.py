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

`--feature-seed S` asks whether the policy's conditioning (image keypoint features + state + instruction feature
at frame 0) carries the direction to the named object at all: a linear map and a small MLP are fitted on
`--train-layouts` layouts of collection seed S (its training layouts) and scored on 100 layouts of seed S + 5.
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


def _conditioning(policy, obs: dict, instruction: str):
    import torch

    b = policy.loaded.preprocessor(policy.observation_batch({**obs, "instruction": instruction}))
    two = {"observation.images": torch.stack([b["observation.images.front"]] * 2, 1)[:, :, None]}
    for key in ("observation.state", "observation.environment_state"):
        if key in b:
            two[key] = torch.stack([b[key]] * 2, 1)
    with torch.no_grad():
        return policy.policy.diffusion._prepare_global_conditioning(two)[0].numpy()


def features(checkpoint: str, train_layouts: int, seed: int) -> dict:
    """Held-out cosine of linear / MLP read-outs of the target direction from the policy's conditioning."""
    import torch

    from dreamgen.policy.eval import LeRobotToyWorldPolicy
    from dreamgen.toyworld.env import ToyWorldEnv
    from dreamgen.toyworld.evaluate import episode_seed

    policy = LeRobotToyWorldPolicy.from_checkpoint(checkpoint, device="cpu")
    env = ToyWorldEnv("pick_place", "default")

    def collect(base: int, n: int):
        xs, ys = [], []
        for i in range(n):
            obs, info = env.reset(seed=episode_seed(base, "pick_place", "default", i))
            t = env.object_position(info["task"]["object"])[:2] - env.ee[:2]
            xs.append(_conditioning(policy, {"image": obs["image"], "state": obs["state"]}, info["instruction"]))
            ys.append(t / np.linalg.norm(t))
        return np.stack(xs), np.stack(ys).astype(np.float32)

    try:
        (xtr, ytr), (xte, yte) = collect(seed, train_layouts), collect(seed + 5, 100)
    finally:
        env.close()
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-6
    norm = lambda x: torch.tensor((x - mu) / sd, dtype=torch.float32)  # noqa: E731
    out = {"train_layouts": train_layouts, "seed": seed, "held_out_seed": seed + 5}
    for name, net in (("linear", torch.nn.Linear(xtr.shape[1], 2)),
                      ("mlp", torch.nn.Sequential(torch.nn.Linear(xtr.shape[1], 256), torch.nn.ReLU(),
                                                  torch.nn.Linear(256, 2)))):
        torch.manual_seed(0)
        opt = torch.optim.Adam(net.parameters(), 1e-3, weight_decay=1e-4)
        for _ in range(3000):
            loss = ((net(norm(xtr)) - torch.from_numpy(ytr)) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            for split, x, y in (("train", xtr, ytr), ("held_out", xte, yte)):
                pred = net(norm(x)).numpy()
                cos = (pred * y).sum(1) / (np.linalg.norm(pred, axis=1) + 1e-9)
                out[f"{name}_{split}_mean_cos"] = round(float(cos.mean()), 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--layouts", type=int, default=10)
    ap.add_argument("--seed", type=int, default=2000)
    ap.add_argument("--reach-seed", type=int, default=None, help="measure reaching on this collection seed instead")
    ap.add_argument("--episodes", type=int, default=12, help="with --reach-seed: episodes to measure")
    ap.add_argument("--feature-seed", type=int, default=None, help="probe the conditioning features instead")
    ap.add_argument("--train-layouts", type=int, default=200, help="with --feature-seed: layouts to fit on")
    a = ap.parse_args()
    if a.feature_seed is not None:
        print(features(a.checkpoint, a.train_layouts, a.feature_seed))
    elif a.reach_seed is not None:
        print(reach(a.checkpoint, a.episodes, a.reach_seed))
    else:
        print(probe(a.checkpoint, a.layouts, a.seed))


if __name__ == "__main__":
    main()
