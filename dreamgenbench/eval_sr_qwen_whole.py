"""Instruction following (success rate) judged by a local Qwen-VL, as the reference's entry point:

    python -m dreamgenbench.eval_sr_qwen_whole --video_dir DIR --output_csv CSV --device cuda:0 [--zeroshot true]

Extra flags: `--model` (local folder or cached hub id; default Qwen/Qwen2.5-VL-7B-Instruct),
`--num_frames` (49) and `--scale` (0.3), `--dtype`.
"""

from __future__ import annotations

import argparse
import sys

from dreamgenbench._entry import add_qwen_flags, base_parser, run_scoring


def build_parser() -> argparse.ArgumentParser:
    p = base_parser("Evaluate whether videos follow their instructions using Qwen-VL.", device=True)
    add_qwen_flags(p)
    p.add_argument("--num_frames", type=int, default=49, help="frames sampled evenly from each video")
    p.add_argument("--scale", type=float, default=0.3, help="resize factor of the frames")
    return p


def _judge(args: argparse.Namespace):
    from dreamgenbench.judges.qwen_vl import QwenVLJudge, QwenVLJudgeConfig

    return QwenVLJudge(QwenVLJudgeConfig(model=args.model, device=args.device, dtype=args.dtype,
                                         if_num_frames=args.num_frames, if_scale=args.scale,
                                         max_new_tokens=args.max_new_tokens))


def main(argv: list[str] | None = None) -> int:
    return run_scoring(build_parser().parse_args(argv), _judge, "if")


if __name__ == "__main__":
    sys.exit(main())
