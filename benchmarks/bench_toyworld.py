"""ToyWorld speed (and expert success) benchmark.

    MUJOCO_GL=egl python benchmarks/bench_toyworld.py [--sizes 64 128] [--steps 300] [--expert-episodes 100]

Measures, on one process (pin it to one core with `taskset -c 0` for the per-core number):
- physics-only control steps per second (25 MuJoCo substeps each, no rendering),
- steps + renders per second ("rendered frames/s", what collection and evaluation pay) per image size,
- with --expert-episodes N: each behavior's scripted-expert success rate over N seeded episodes.
Prints a table and appends it to benchmarks/RESULTS.md with date, machine and command.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402

from dreamgen.toyworld.env import ToyWorldEnv  # noqa: E402
from dreamgen.toyworld.evaluate import wilson_interval  # noqa: E402
from dreamgen.toyworld.experts import ScriptedExpert, run_expert_episode  # noqa: E402
from dreamgen.toyworld.tasks import BEHAVIORS  # noqa: E402


def _expert_steps(env: ToyWorldEnv, steps: int, render: bool) -> float:
    """Run expert episodes for `steps` control steps; return steps per second."""
    if not render:  # physics + control only: swap the renderer-bound observation for the state
        env._observe = lambda: {"image": None, "state": env.state_vector()}  # noqa: SLF001
    done, seed = 0, 0
    t0 = time.perf_counter()
    while done < steps:
        env.reset(seed=seed, options={"behavior": list(BEHAVIORS)[seed % len(BEHAVIORS)]})
        expert = ScriptedExpert(env)
        seed += 1
        while done < steps:
            *_, terminated, truncated, _ = env.step(expert.act())
            done += 1
            if terminated or truncated:
                break
    return steps / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--expert-episodes", type=int, default=0)
    ap.add_argument("--no-append", action="store_true", help="Do not append to benchmarks/RESULTS.md.")
    args = ap.parse_args()

    rows = []
    env = ToyWorldEnv(image_size=16)
    rows.append(("physics+control only (no render)", f"{_expert_steps(env, args.steps, render=False):.0f} steps/s"))
    env.close()
    for size in args.sizes:
        env = ToyWorldEnv(image_size=size)
        _expert_steps(env, 10, render=True)  # warm-up: GL context, shader compilation
        rows.append((f"step + render {size}x{size}", f"{_expert_steps(env, args.steps, render=True):.1f} frames/s"))
        env.close()
    if args.expert_episodes:
        env = ToyWorldEnv(image_size=16)
        for b in BEHAVIORS:
            wins, lengths = 0, []
            for seed in range(args.expert_episodes):
                _, _, actions, ok, _ = run_expert_episode(env, seed, {"behavior": b})
                wins += ok
                lengths.append(len(actions))
            lo, hi = wilson_interval(wins, args.expert_episodes)
            rows.append((f"expert {b}", f"{wins}/{args.expert_episodes} success (95% CI {lo:.2f}-{hi:.2f}), "
                                        f"{np.mean(lengths):.1f} steps mean, {max(lengths)} max"))
        env.close()

    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    header = (f"### ToyWorld speed — {datetime.date.today().isoformat()}\n\n"
              f"Machine: {cpu}, {affinity} usable core(s), load average {load:.1f} at start; "
              f"{platform.system()} {platform.release()}, MUJOCO_GL={os.environ.get('MUJOCO_GL')}\n\n"
              f"Command: `MUJOCO_GL={os.environ.get('MUJOCO_GL')} python {' '.join(sys.argv)}`\n")
    table = "| measure | result |\n| --- | --- |\n" + "\n".join(f"| {a} | {b} |" for a, b in rows) + "\n"
    print(header)
    print(table)
    if not args.no_append:
        results = Path(__file__).with_name("RESULTS.md")
        with results.open("a") as f:
            f.write("\n" + header + "\n" + table)
        print(f"appended to {results}")


if __name__ == "__main__":
    main()
