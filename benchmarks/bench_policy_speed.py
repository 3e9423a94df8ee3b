"""Training-speed probe: data-loading throughput (frame cache on/off) and the model's step time.

    python benchmarks/bench_policy_speed.py -d demo_data/toyworld_pick_place -c toyworld_diffusion_tiny \
        --device cpu --batches 20 --steps 5

Prints seconds per batch for the DataLoader alone (LeRobot decoding vs the frame cache, num_workers=0)
and per optimizer step for the model alone (forward + backward + step on a fixed batch), wall clock
and process CPU time (the dev machine is shared, so CPU time is the steadier number), plus a FLOP count
of one training step (torch.utils.flop_counter) to extrapolate to a GPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _timed(fn, n: int) -> tuple[float, float]:
    w0, c0 = time.perf_counter(), time.process_time()
    for _ in range(n):
        fn()
    return (time.perf_counter() - w0) / n, (time.process_time() - c0) / n


def _config(args: argparse.Namespace, unknown: list[str]):
    """The policy config of the preset (+ flags), its training config, embodiment, cameras and task feature."""
    from dreamgen.policy.finetune import PolicyTrainConfig
    from dreamgen.policy.mixing import DatasetSpec, check_mixture
    from dreamgen.policy.task_encoding import resolve_task_conditioning
    from dreamgen.policy.train_setup import build_train_config, resolve_embodiment
    from dreamgen.presets import load_preset

    preset = load_preset("policy", args.config)
    lerobot_args = list(preset.pop("lerobot_args", [])) + list(args.extra) + unknown
    keep = {k: v for k, v in preset.items() if k in ("policy", "embodiment", "batch_size", "task_conditioning",
                                                     "task_dim", "mixed_precision")}
    if args.batch_size:
        keep["batch_size"] = args.batch_size
    if args.mixed_precision:
        keep["mixed_precision"] = args.mixed_precision
    cfg = PolicyTrainConfig([DatasetSpec(Path(args.dataset))], Path("/nonexistent"), lerobot_args=lerobot_args,
                            device=args.device, **keep)
    emb = resolve_embodiment(cfg.embodiment, cfg.datasets[0].path)
    _, cams, has_state = check_mixture(cfg.datasets, emb, None)
    train_cfg = build_train_config(cfg, args.device)
    enc = resolve_task_conditioning(cfg.policy, cfg.task_conditioning, cfg.task_dim)
    return cfg, emb, cams, has_state, train_cfg, enc


def _time_data(args, cfg, emb, cams, has_state, train_cfg, enc, report: dict):
    """Seconds per batch from the DataLoader alone, frame cache off then on; returns the last mix and loader."""
    import torch

    from dreamgen.policy.mixing import CachedMixedDataset, WeightedMixSampler, passthrough_collate
    from dreamgen.policy.train_data import open_mixture

    for mode in ("off", "on"):
        t0 = time.perf_counter()
        mix = open_mixture(cfg.datasets, cams, has_state and cfg.use_state, emb, train_cfg, enc, frame_cache=mode)
        report[f"open_s_cache_{mode}"] = round(time.perf_counter() - t0, 2)
        cached = isinstance(mix, CachedMixedDataset)
        sampler = WeightedMixSampler.for_mixture(mix, seed=0, num_samples=10**7)
        loader = torch.utils.data.DataLoader(mix, batch_size=cfg.batch_size, sampler=sampler, num_workers=0,
                                             drop_last=True, **({"collate_fn": passthrough_collate} if cached else {}))
        it = iter(loader)
        next(it)
        wall, cpu = _timed(lambda it=it: next(it), args.batches)
        report[f"data_s_per_batch_cache_{mode}"] = round(wall, 4)
        report[f"data_cpu_s_per_batch_cache_{mode}"] = round(cpu, 4)
    return mix, loader


def _time_model(args, cfg, train_cfg, enc, mix, loader, report: dict) -> None:
    """Seconds per optimizer step on one fixed batch, and the FLOPs of one step."""
    import torch
    from lerobot.optim.factory import make_optimizer_and_scheduler
    from lerobot.policies.factory import make_policy, make_pre_post_processors

    from dreamgen.policy.task_encoding import TASK_FEATURE_KEY

    device = torch.device(args.device)
    if device.type == "cuda":  # as finetune_policy does
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    policy = make_policy(train_cfg.policy, ds_meta=mix.meta)
    pre, _ = make_pre_post_processors(train_cfg.policy, dataset_stats=mix.meta.stats, dataset_meta=mix.meta)
    optimizer, _ = make_optimizer_and_scheduler(train_cfg, policy)
    batch = next(iter(loader))
    for key in mix.meta.camera_keys:
        batch[key] = batch[key].float() / 255.0
    delta = getattr(train_cfg.policy, "observation_delta_indices", None)
    if enc.enabled:
        batch[TASK_FEATURE_KEY] = enc.tensor(batch["task"], steps=len(delta) if delta else None)
    batch = pre(batch)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.mixed_precision)
    policy.train()

    def step():
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss, _ = policy(batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if device.type == "cuda":
            torch.cuda.synchronize()

    step()
    wall, cpu = _timed(step, args.steps)
    report["model_s_per_step"] = round(wall, 4)
    report["model_cpu_s_per_step"] = round(cpu, 4)
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc:
        loss, _ = policy(batch)
        loss.backward()
    optimizer.zero_grad()
    report["gflop_per_step"] = round(fc.get_total_flops() / 1e9, 2)
    report["params_m"] = round(sum(p.numel() for p in policy.parameters()) / 1e6, 2)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-d", "--dataset", required=True)
    ap.add_argument("-c", "--config", default="toyworld_diffusion_tiny")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--mixed-precision", default=None)
    ap.add_argument("extra", nargs="*", help="LeRobot flags, e.g. --policy.down_dims=[64,128]")
    args, unknown = ap.parse_known_args(argv)

    import torch

    cfg, emb, cams, has_state, train_cfg, enc = _config(args, unknown)
    report: dict = {"config": args.config, "batch_size": cfg.batch_size, "device": args.device,
                    "torch_threads": torch.get_num_threads()}
    mix, loader = _time_data(args, cfg, emb, cams, has_state, train_cfg, enc, report)
    _time_model(args, cfg, train_cfg, enc, mix, loader, report)
    print(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
