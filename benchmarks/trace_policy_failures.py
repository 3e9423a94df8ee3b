"""Where does a ToyWorld pick_place policy fail? (a CPU probe)

Runs the policy closed loop on eval-policy's held-out episodes (same seeds) and sorts every episode into one
outcome, from the simulator's own state:
  success       the predicate holds at the end;
  no_grasp      the gripper never held anything (with the closest xy approach to the named object, in cm);
  wrong_object  the first object held was not the named one;
  not_placed    the named object was held but does not end on the plate (with its final xy distance to the
                plate centre, in cm, and whether it was still held at the end).

    MUJOCO_GL=egl python benchmarks/trace_policy_failures.py CHECKPOINT [--episodes 50] [--seed 1000]
"""

from __future__ import annotations

import argparse
import json
import os
from collections import Counter

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402


def trace_episode(env, policy, seed: int) -> dict:
    obs, info = env.reset(seed=seed, options={"behavior": "pick_place", "env": "default"})
    policy.reset()
    target = info["task"]["object"]
    first_held, closest, ever_held = None, np.inf, False
    while True:
        if not ever_held:
            closest = min(closest, float(np.linalg.norm(env.object_position(target)[:2] - env.ee[:2])))
        action = policy.act({"image": obs["image"], "state": obs["state"], "instruction": info["instruction"]})
        obs, _, terminated, truncated, info = env.step(action)
        if env.held is not None and first_held is None:
            first_held, ever_held = env.held, True
        if terminated or truncated:
            break
    s = env.world_state()
    row = {"seed": seed, "steps": info["step"], "target": target, "first_held": first_held,
           "closest_cm": round(100 * closest, 1),
           "plate_cm": round(100 * float(np.linalg.norm(s.objects[target][:2] - s.plate[:2])), 1),
           "held_at_end": s.held is not None}
    if info["success"]:
        row["outcome"] = "success"
    elif first_held is None:
        row["outcome"] = "no_grasp"
    elif first_held != target:
        row["outcome"] = "wrong_object"
    else:
        row["outcome"] = "not_placed"
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("--episodes", type=int, default=50)
    ap.add_argument("--seed", type=int, default=1000, help="episode seed base (eval-policy's default: 1000)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    from dreamgen.policy.eval import LeRobotToyWorldPolicy
    from dreamgen.toyworld.env import ToyWorldEnv
    from dreamgen.toyworld.evaluate import episode_seed

    policy = LeRobotToyWorldPolicy.from_checkpoint(args.checkpoint, device=args.device)
    env = ToyWorldEnv(behavior="pick_place", env="default")
    if hasattr(policy, "bind"):
        policy.bind(env)
    rows = [trace_episode(env, policy, episode_seed(args.seed, "pick_place", "default", i))
            for i in range(args.episodes)]
    env.close()
    counts = Counter(r["outcome"] for r in rows)

    def median(key: str, outcome: str) -> float | None:
        vals = [r[key] for r in rows if r["outcome"] == outcome]
        return float(np.median(vals)) if vals else None

    summary = {"checkpoint": args.checkpoint, "episodes": args.episodes, "seed": args.seed,
               "outcomes": dict(counts),
               "no_grasp_median_closest_cm": median("closest_cm", "no_grasp"),
               "not_placed_median_plate_cm": median("plate_cm", "not_placed"),
               "not_placed_held_at_end": sum(r["held_at_end"] for r in rows if r["outcome"] == "not_placed"),
               "episodes_detail": rows}
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
