"""Calibrate the ToyWorld pixel judge against the simulator's own success predicate.

    MUJOCO_GL=egl python benchmarks/bench_pixel_judge.py [--episodes 10] [--seed 500000] [--size 96]
        [--behaviors pick_place put_in_bin push lift] [--envs default ...] [--fit-colours]

Runs rollouts of every (behavior, environment) cycling through the variants of
`dreamgen.toyworld.pixel_calibration` (expert, action noise, early release, wrong object, truncated),
judges each clip's frames with `judge_frames`, and compares with `is_success` at the last frame.
Prints precision / recall / accuracy with counts per behavior and per environment and appends the
table to benchmarks/RESULTS.md (date, machine, command). Episode seeds are `--seed + i`: the colour
tables are fitted on seeds 10000-10089 (`--fit-colours` refits them there), so report on others.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402

from dreamgen.toyworld.env import ToyWorldEnv  # noqa: E402
from dreamgen.toyworld.pixel_calibration import VARIANTS, LabelRenderer, rollout  # noqa: E402
from dreamgen.toyworld.pixel_judge import judge_frames  # noqa: E402
from dreamgen.toyworld.pixel_scene import fit_colour_tables  # noqa: E402
from dreamgen.toyworld.scene import ENVIRONMENTS  # noqa: E402
from dreamgen.toyworld.tasks import BEHAVIORS  # noqa: E402

FIT_SEED = 10_000


def fit_colours(size: int, per_cell: int = 3) -> None:
    """Refit the colour tables on labelled renders (seeds FIT_SEED...) and save them."""
    env = ToyWorldEnv(image_size=size)
    labeller = LabelRenderer(env)
    rng = np.random.default_rng(0)
    samples, k = {}, 0
    for e in ENVIRONMENTS:
        samples[e] = []
        for b in BEHAVIORS:
            for j in range(per_cell):
                buf: list = []
                rollout(env, b, e, FIT_SEED + k, VARIANTS[j % len(VARIANTS)], rng,
                        on_frame=lambda buf=buf: buf.append((env.render(), labeller.labels())))
                samples[e] += buf[::3]
                k += 1
    fit_colour_tables(samples).save()
    print(f"colour tables refitted on seeds {FIT_SEED}-{FIT_SEED + k - 1}")


def run(behaviors, envs, episodes: int, seed: int, size: int) -> list[dict]:
    env = ToyWorldEnv(image_size=size)
    rows = []
    for b in behaviors:
        for e in envs:
            for i in range(episodes):
                s = seed + i + 1000 * list(ENVIRONMENTS).index(e)
                rng = np.random.default_rng(s)
                variant = VARIANTS[i % len(VARIANTS)]
                frames, instruction, truth = rollout(env, b, e, s, variant, rng)
                verdict = judge_frames(frames, instruction)
                rows.append({"behavior": b, "env": e, "seed": s, "variant": variant, "truth": truth,
                             "judge": verdict.success, "reason": verdict.reason})
    return rows


def _stats(rows: list[dict]) -> str:
    tp = sum(r["truth"] and r["judge"] for r in rows)
    fp = sum(r["judge"] and not r["truth"] for r in rows)
    fn = sum(r["truth"] and not r["judge"] for r in rows)
    tn = len(rows) - tp - fp - fn
    prec = f"{tp / (tp + fp):.2f}" if tp + fp else "-"
    rec = f"{tp / (tp + fn):.2f}" if tp + fn else "-"
    return f"{len(rows)} | {tp + fn} | {prec} ({tp}/{tp + fp}) | {rec} ({tp}/{tp + fn}) | {(tp + tn) / len(rows):.2f}"


def table(rows: list[dict]) -> str:
    head = "| group | episodes | successes (sim) | precision | recall | accuracy |\n| --- | --- | --- | --- | --- | --- |"
    lines = [head]
    groups = defaultdict(list)
    for r in rows:
        groups[("behavior", r["behavior"])].append(r)
    for r in rows:
        groups[("env", r["env"])].append(r)
    for r in rows:
        if r["env"] == "default":
            groups[("default env", r["behavior"])].append(r)
    for (kind, name), rs in groups.items():
        lines.append(f"| {kind} {name} | {_stats(rs)} |")
    lines.append(f"| all | {_stats(rows)} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--episodes", type=int, default=10, help="episodes per (behavior, environment)")
    p.add_argument("--seed", type=int, default=500_000)
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--behaviors", nargs="+", default=list(BEHAVIORS))
    p.add_argument("--envs", nargs="+", default=list(ENVIRONMENTS))
    p.add_argument("--fit-colours", action="store_true", help="refit the colour tables first (seeds 10000+)")
    p.add_argument("--no-record", action="store_true", help="do not append to benchmarks/RESULTS.md")
    p.add_argument("--show-errors", action="store_true", help="print every misjudged episode")
    a = p.parse_args(argv)
    if a.fit_colours:
        fit_colours(96)
    t0 = time.perf_counter()
    rows = run(a.behaviors, a.envs, a.episodes, a.seed, a.size)
    text = table(rows)
    print(text)
    if a.show_errors:
        for r in rows:
            if r["truth"] != r["judge"]:
                print(r)
    took = time.perf_counter() - t0
    print(f"{len(rows)} episodes in {took:.0f}s")
    if not a.no_record:
        cmd = "python benchmarks/bench_pixel_judge.py " + " ".join(sys.argv[1:] if argv is None else argv)
        note = (f"\n## ToyWorld pixel judge vs the simulator predicate ({datetime.date.today()}, "
                f"{platform.node()}, {platform.processor() or platform.machine()})\n\n`{cmd}`: {a.size}x{a.size} frames, "
                f"seeds {a.seed} + 1000 x env index + 0..{a.episodes - 1} per (behavior, env), variants {', '.join(VARIANTS)} "
                f"in turn; positive = the predicate holds at the last frame.\n\n{text}\n")
        with open(Path(__file__).with_name("RESULTS.md"), "a") as f:
            f.write(note)


if __name__ == "__main__":
    main()
