#!/usr/bin/env python
"""Reference-compatible GR00T fine-tuning entry point, run by dreamgen's policy stage.

    torchrun scripts/gr00t_finetune.py --dataset-path D --data-config C --embodiment_tag E [--num-gpus N]

keeps NVIDIA GR00T-Dreams' command line: D is an `idm-extract` output (a LeRobot v3 dataset), C a
GR00T data config name (franka, gr1_arms_waist, so100, single_panda_gripper, ... or any dreamgen
embodiment), E the embodiment tag. Training goes through `dreamgen.policy.finetune_policy` with
LeRobot's GR00T N1.7. The base model must be a local folder (`--base-model-path`, or
$DREAMGEN_GROOT_BASE); the hub is not used. Extra datasets can be mixed in with
`--extra-dataset PATH:WEIGHT` and LeRobot flags passed after `--`.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import subprocess
import sys
from pathlib import Path

# GR00T-Dreams data config names -> dreamgen embodiments (others are looked up in the registry as-is)
DATA_CONFIG_TO_EMBODIMENT = {
    "franka": "franka",
    "gr1_arms_waist": "gr1",
    "gr1_arms_only": "gr1",
    "gr1_full_upper_body": "gr1",
    "so100": "so100",
    "single_panda_gripper": "robocasa",
    "robocasa": "robocasa",
}
# Tags LeRobot's GR00T N1.7 has an embodiment slot for; any other robot trains as "new_embodiment".
GROOT_TAGS = {"new_embodiment", "libero_sim", "simpler_env_google", "simpler_env_widowx",
              "oxe_droid_relative_eef_relative_joint"}


def _bool(text: str) -> bool:
    return text.lower() in ("1", "true", "yes", "y")


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    if "--" in argv:
        i = argv.index("--")
        argv, passthrough = argv[:i], argv[i + 1:]
    else:
        passthrough = []
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    a = p.add_argument
    a("--dataset-path", "--dataset_path", required=True, help="LeRobot v3 dataset (idm-extract output).")
    a("--extra-dataset", "--extra_dataset", action="append", default=[], help="More datasets, PATH[:WEIGHT].")
    a("--output-dir", "--output_dir", default="/tmp/gr00t", help="Run folder.")
    a("--data-config", "--data_config", default="gr1_arms_only", help="GR00T data config / dreamgen embodiment.")
    a("--batch-size", "--batch_size", type=int, default=16)
    a("--max-steps", "--max_steps", type=int, default=10000)
    a("--num-gpus", "--num_gpus", type=int, default=1)
    a("--save-steps", "--save_steps", type=int, default=500)
    a("--base-model-path", "--base_model_path", default=os.environ.get("DREAMGEN_GROOT_BASE"),
      help="Local GR00T N1.7 base model folder (default $DREAMGEN_GROOT_BASE).")
    a("--tune-llm", "--tune_llm", type=_bool, default=False)
    a("--tune-visual", "--tune_visual", type=_bool, default=True)
    a("--tune-projector", "--tune_projector", type=_bool, default=True)
    a("--tune-diffusion-model", "--tune_diffusion_model", type=_bool, default=True)
    a("--resume", action="store_true")
    a("--learning-rate", "--learning_rate", type=float, default=1e-4)
    a("--weight-decay", "--weight_decay", type=float, default=1e-5)
    a("--warmup-ratio", "--warmup_ratio", type=float, default=0.05)
    a("--dataloader-num-workers", "--dataloader_num_workers", type=int, default=8)
    a("--embodiment-tag", "--embodiment_tag", default="new_embodiment")
    a("--device", default=None)
    a("--report-to", "--report_to", default=None, help="Accepted for compatibility; logs go to the console.")
    a("--video-backend", "--video_backend", default=None, help="Accepted for compatibility (LeRobot decodes).")
    a("--lora-rank", "--lora_rank", type=int, default=0)
    return p.parse_args(argv), passthrough


def main(argv: list[str] | None = None) -> int:
    args, passthrough = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    in_launcher = "LOCAL_RANK" in os.environ or os.environ.get("IS_TORCHRUN") == "1"
    if args.num_gpus > 1 and not in_launcher:
        # like the reference: re-launch under torchrun with one process per GPU
        cmd = ["torchrun", "--standalone", f"--nproc_per_node={args.num_gpus}", "--nnodes=1", __file__,
               *sys.argv[1:]]
        print("running:", shlex.join(cmd), flush=True)
        return subprocess.run(cmd, env={**os.environ, "IS_TORCHRUN": "1"}).returncode

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from dreamgen.errors import DreamgenError
    from dreamgen.policy.finetune import PolicyTrainConfig, finetune_policy
    from dreamgen.policy.mixing import DatasetSpec, parse_dataset_spec

    if args.lora_rank:
        print("error: --lora-rank is not supported by LeRobot's GR00T N1.7; use --policy.* flags after --",
              file=sys.stderr)
        return 2
    embodiment = DATA_CONFIG_TO_EMBODIMENT.get(args.data_config, args.data_config)
    tag = args.embodiment_tag if args.embodiment_tag in GROOT_TAGS else "new_embodiment"
    lerobot_args = [
        f"--policy.embodiment_tag={tag}",
        f"--policy.tune_llm={str(args.tune_llm).lower()}",
        f"--policy.tune_visual={str(args.tune_visual).lower()}",
        f"--policy.tune_projector={str(args.tune_projector).lower()}",
        f"--policy.tune_diffusion_model={str(args.tune_diffusion_model).lower()}",
        f"--policy.optimizer_lr={args.learning_rate}",
        f"--policy.optimizer_weight_decay={args.weight_decay}",
        f"--policy.warmup_ratio={args.warmup_ratio}",
        f"--policy.max_steps={args.max_steps}",
        *passthrough,
    ]
    try:
        cfg = PolicyTrainConfig(
            datasets=[DatasetSpec(Path(args.dataset_path)), *(parse_dataset_spec(x) for x in args.extra_dataset)],
            output_dir=Path(args.output_dir),
            policy="groot",
            embodiment=embodiment,
            steps=args.max_steps,
            batch_size=args.batch_size,
            num_workers=args.dataloader_num_workers,
            save_freq=args.save_steps,
            pretrained=args.base_model_path,
            resume=args.resume,
            device=args.device,
            lerobot_args=lerobot_args,
            command=shlex.join([sys.argv[0], *sys.argv[1:]]),
        )
        result = finetune_policy(cfg)
    except DreamgenError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"checkpoint: {result.checkpoint}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
