#!/usr/bin/env python
"""IDM training entry point, command-line compatible with GR00T-Dreams' scripts/idm_training.py.

    torchrun scripts/idm_training.py --dataset-path demo_data/robot_sim.PickNPlace/ --embodiment_tag gr1
    torchrun --nproc_per_node=8 scripts/idm_training.py --dataset-path D --data-config single_panda_gripper \
        --embodiment_tag robocasa_panda_omron
    python scripts/idm_training.py --dataset-path D --embodiment_tag toyworld --model-config toyworld   # CPU

Every flag accepts both spellings (--dataset-path / --dataset_path), booleans also --no-<flag>, as the
reference's tyro parser does. Flags of the reference that have no meaning here (--report-to,
--video-backend, --tune-action-head) are accepted and ignored. Runs single-process when not under
torchrun; with --num-gpus N > 1 outside torchrun it relaunches itself under torchrun like the reference.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing


def _add(p: argparse.ArgumentParser, name: str, **kw) -> None:
    dashed, under = f"--{name.replace('_', '-')}", f"--{name}"
    names = [dashed] if dashed == under else [dashed, under]
    if kw.get("type") is bool:
        kw.pop("type")
        default = kw.pop("default", False)
        p.add_argument(*names, dest=name, action="store_true", default=default, **kw)
        p.add_argument(*[n.replace("--", "--no-", 1) for n in names], dest=name, action="store_false")
    else:
        p.add_argument(*names, dest=name, **kw)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add(p, "dataset_path", required=True, help="Training dataset (LeRobot v3 or GR00T v2.x).")
    _add(p, "output_dir", default="/tmp/gr00t", help="Run folder: checkpoint-<step>/ are written here.")
    _add(p, "data_config", default=None, help="Reference data-config name (gr1_arms_only, so100, "
         "single_panda_gripper, ...) or a YAML with observation_offsets/action_horizon overrides.")
    _add(p, "batch_size", type=int, default=16, help="Batch size per process.")
    _add(p, "max_steps", type=int, default=10000)
    _add(p, "num_gpus", type=int, default=1)
    _add(p, "save_steps", type=int, default=500)
    _add(p, "tune_action_head", type=bool, default=True, help="(accepted for compatibility)")
    _add(p, "tune_encoder", type=bool, default=True, help="Train the image encoder too.")
    _add(p, "resume", type=bool, default=False, help="Continue from the newest checkpoint in --output-dir.")
    _add(p, "learning_rate", type=float, default=1e-4)
    _add(p, "weight_decay", type=float, default=1e-5)
    _add(p, "warmup_ratio", type=float, default=0.05)
    _add(p, "dataloader_num_workers", type=int, default=8)
    _add(p, "report_to", default="none", help="(accepted for compatibility; metrics go to train_state.json)")
    _add(p, "embodiment_tag", default="new_embodiment", help="Embodiment name/alias/file; new_embodiment "
         "reads modality.json + stats.json from the dataset's meta/.")
    _add(p, "video_backend", default="pyav", help="(accepted for compatibility)")
    _add(p, "random_init", type=bool, default=False, help="(accepted: the encoder is random unless "
         "the model config names encoder_path)")
    _add(p, "model_config", default=None, help="dreamgen/configs/idm preset name (toyworld, siglip2_large, "
         "siglip2_large_local) or a YAML file; default: the small from-scratch IDM.")
    _add(p, "val_fraction", type=float, default=0.1)
    _add(p, "device", default="auto")
    _add(p, "precision", default="auto", help="auto (bf16 on GPU) | bf16 | fp32")
    _add(p, "augment", type=bool, default=True)
    _add(p, "seed", type=int, default=42)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    under_torchrun = "LOCAL_RANK" in os.environ
    if args.num_gpus > 1 and not under_torchrun:
        cmd = ["torchrun", "--standalone", f"--nproc_per_node={args.num_gpus}", "--nnodes=1", __file__,
               *(argv if argv is not None else sys.argv[1:])]
        print("Running:", " ".join(cmd), flush=True)
        return subprocess.run(cmd).returncode

    from dreamgen.errors import DreamgenError
    from dreamgen.idm.train import IDMTrainConfig, train_idm

    try:
        ckpt = train_idm(IDMTrainConfig(
            dataset_path=args.dataset_path, output_dir=args.output_dir, embodiment=args.embodiment_tag,
            model_config=args.model_config, data_config=args.data_config, batch_size=args.batch_size,
            max_steps=args.max_steps, save_steps=args.save_steps, learning_rate=args.learning_rate,
            weight_decay=args.weight_decay, warmup_ratio=args.warmup_ratio,
            num_workers=args.dataloader_num_workers, resume=args.resume, tune_encoder=args.tune_encoder,
            val_fraction=args.val_fraction, device=args.device, precision=args.precision, augment=args.augment,
            seed=args.seed))
    except DreamgenError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    finally:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    if int(os.environ.get("RANK", 0)) == 0:
        print(f"checkpoint: {ckpt}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
