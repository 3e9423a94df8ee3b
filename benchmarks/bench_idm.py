#!/usr/bin/env python
"""IDM labelling speed: frames labelled per second by `label_frames` (the idm-extract inner loop:
encode every frame once, mix per window, flow-matching sampling, temporal ensembling).

    # the reference-sized IDM (SigLIP-2-large shape, random weights), one H100, bf16:
    python benchmarks/bench_idm.py --model-config siglip2_large --device cuda --frames 93 --videos 8 --size 256 \
        --batch-size 128 --compile --stride 8
    # the ToyWorld IDM on CPU:
    python benchmarks/bench_idm.py --model-config toyworld --device cpu --frames 24 --videos 4 --size 64 \
        --offsets 0,8 --horizon 8 --action-dim 4

IDM quality on a ToyWorld dataset (normalised action error vs. the predict-the-mean baseline on the
checkpoint's held-out episodes, and open-loop replay success of the labels vs. the expert's actions):
    python benchmarks/bench_idm.py --quality runs/idm_toyworld --dataset demo_data/toyworld_pick_place

Prints a table row and appends it to benchmarks/RESULTS.md (date, machine, command).
"""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SPEED_HEADER = ("| date | machine | IDM | input | eager, one video at a time (frames/s) | fast path (frames/s) | "
                "max label diff (normalised) | peak mem |\n|---|---|---|---|---|---|---|---|")
QUALITY_HEADER = ("| date | IDM | dataset | eval set | IDM MSE (norm.) | mean-action MSE | ratio | IDM replay success "
                  "| expert replay success |\n|---|---|---|---|---|---|---|---|---|")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model-config", default="toyworld")
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="auto")
    p.add_argument("--frames", type=int, default=93, help="frames per video")
    p.add_argument("--videos", type=int, default=4)
    p.add_argument("--size", type=int, default=256, help="video frame size (square)")
    p.add_argument("--offsets", default="0,16")
    p.add_argument("--horizon", type=int, default=16)
    p.add_argument("--action-dim", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: the config's)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--stride", type=int, default=1, help="a window every STRIDE frames (1..horizon)")
    p.add_argument("--compile", action="store_true", help="torch.compile the fast path (encoder + action DiT)")
    p.add_argument("--compile-mode", default=None, help="torch.compile mode, e.g. reduce-overhead (CUDA graphs)")
    p.add_argument("--videos-per-batch", type=int, default=8, help="videos labelled together on the fast path")
    p.add_argument("--profile", metavar="FILE", help="after the timed fast path, run it once more under "
                   "torch.profiler and write its operator table (by self device time on a GPU) to FILE")
    p.add_argument("--no-record", action="store_true")
    p.add_argument("--quality", metavar="CHECKPOINT", help="measure quality of this checkpoint instead of speed")
    p.add_argument("--dataset", help="with --quality: the dataset (default: the checkpoint's training dataset)")
    args = p.parse_args()
    if args.quality:
        return quality(args)

    return speed(args)


def speed(args) -> None:
    """Frames/s of the slow path (eager, one video at a time) and of the fast one (`--compile`, videos
    batched together), the same stride and noise, and the largest label difference between them."""
    import numpy as np
    import torch

    from dreamgen.idm.configuration_idm import IDMConfig, resolve_model_config
    from dreamgen.idm.labelling import compile_for_labelling, device_and_autocast, label_frames, label_many
    from dreamgen.idm.modeling_idm import IDM
    from tests.idm_fixture import synthetic_embodiment

    torch.set_num_threads(args.threads)
    fields = resolve_model_config(args.model_config)
    fields.pop("encoder_path", None)
    fields.setdefault("image_size", [args.size, args.size])
    offsets = [int(x) for x in args.offsets.split(",")]
    cfg = IDMConfig.from_dict({**fields, "observation_offsets": offsets, "action_horizon": args.horizon,
                               "action_dim": args.action_dim})
    device, autocast = device_and_autocast(args.device, args.precision)
    model = IDM(cfg).to(device).eval()
    emb = synthetic_embodiment(offsets, args.horizon, cfg.image_size[0], args.action_dim)  # action std 1
    rng = np.random.default_rng(0)
    videos = [rng.integers(0, 255, (args.frames, args.size, args.size, 3), dtype=np.uint8)
              for _ in range(args.videos)]
    kw = {"batch_size": args.batch_size, "num_steps": args.steps, "seed": 0, "device": device,
          "autocast": autocast, "stride": args.stride}

    def timed(fn):
        fn()  # warm-up (and, compiled, the compile)
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return out, time.perf_counter() - t0

    slow, t_slow = timed(lambda: [label_frames(model, emb, v, **kw) for v in videos])
    if args.compile:
        compile_for_labelling(model, mode=args.compile_mode)
    group = args.videos_per_batch
    fast, t_fast = timed(lambda: [a for i in range(0, len(videos), group)
                                  for a in label_many(model, emb, videos[i:i + group], **kw)])
    if args.profile:
        _profile(args.profile, lambda: [label_many(model, emb, videos[i:i + group], **kw)
                                        for i in range(0, len(videos), group)], device)
    diff = max(float(np.abs(a - b).max()) for a, b in zip(slow, fast, strict=True))
    n = args.frames * args.videos
    params = sum(p.numel() for p in model.parameters()) / 1e6
    mem = f"{torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if device.type == "cuda" else "-"
    machine = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU {platform.processor() or ''} " \
        f"{args.threads} thread(s)"
    fast_name = ("compiled, " if args.compile else "eager, ") + f"{group} videos per batch"
    row = (f"| {datetime.date.today()} | {machine} | {args.model_config} ({params:.0f}M) | {cfg.image_size[0]}px, "
           f"offsets {offsets}, H={args.horizon}, {args.steps or cfg.num_inference_steps} steps, stride "
           f"{args.stride} | {n / t_slow:.1f} | {n / t_fast:.1f} ({fast_name}) | {diff:.1e} | {mem} |")
    _record(args, "IDM labelling speed", SPEED_HEADER, row)


def _profile(path: str, fn, device) -> None:
    """fn once under torch.profiler (CPU, and CUDA on a GPU) -> FILE: the 25 operators with the most self time
    (device time on a GPU, then a second table by CPU time for the host side), and the profiled run's wall time."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    t0 = time.perf_counter()
    with profile(activities=activities) as prof:
        fn()
        if cuda:
            torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    table = prof.key_averages()
    text = [f"profiled fast path: {wall:.3f} s wall (profiler overhead included)\n"]
    for key in (["self_cuda_time_total"] if cuda else []) + ["self_cpu_time_total"]:
        text.append(f"sorted by {key}\n" + table.table(sort_by=key, row_limit=25) + "\n")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("\n".join(text))
    print(f"profile written to {path}")


def quality(args) -> None:
    import json

    import torch

    from dreamgen.idm.checkpoint import find_checkpoint, load_idm
    from dreamgen.idm.evaluate import EvalConfig, evaluate_idm, replay_success

    torch.set_num_threads(args.threads)
    ckpt = find_checkpoint(args.quality)
    state = load_idm(ckpt)[2]
    dataset = args.dataset or state.get("dataset_path")
    err = evaluate_idm(EvalConfig(ckpt, dataset, device=args.device, num_inference_steps=args.steps))
    rep = replay_success(ckpt, dataset, device=args.device, num_inference_steps=args.steps)
    print(json.dumps({**err, **rep}, indent=2))
    row = (f"| {datetime.date.today()} | {ckpt} (step {state.get('step')}) | {dataset} | {err['episodes']} "
           f"held-out eps / {err['frames']} frames | {err['idm_mse']:.3f} | {err['baseline_mse']:.3f} | "
           f"{err['mse_ratio']:.2f} | {rep['idm_replay_success']:.0%} | {rep['expert_replay_success']:.0%} |")
    _record(args, "IDM quality on ToyWorld", QUALITY_HEADER, row)


def _record(args, title: str, header: str, row: str) -> None:
    """Print the table; unless --no-record, append it to RESULTS.md under `title` with the command line."""
    print(header + "\n" + row)
    if not args.no_record:
        results = Path(__file__).resolve().parent / "RESULTS.md"
        with results.open("a") as f:
            f.write(f"\n### {title}\n`{' '.join(sys.argv)}`\n\n{header}\n{row}\n")


if __name__ == "__main__":
    main()
