"""Physics alignment (PA score I of the paper) judged by a local Qwen-VL from the video itself:

    python -m dreamgenbench.eval_qwen_pa --video_dir DIR --output_csv CSV --device cuda:0

Extra flags: `--model`, `--fps` (2, what qwen_vl_utils samples), `--dtype`. The paper's PA is the mean
of this and a second judge: see docs/bench.md and `dreamgen bench --pa-judge`.
"""

from __future__ import annotations

import argparse
import sys

from dreamgenbench._entry import add_qwen_flags, base_parser, run_scoring


def build_parser() -> argparse.ArgumentParser:
    p = base_parser("Evaluate the physics alignment of videos using Qwen-VL.", zeroshot=False, device=True)
    add_qwen_flags(p)
    p.add_argument("--fps", type=float, default=2.0, help="frames per second given to the model")
    return p


def _judge(args: argparse.Namespace):
    from dreamgenbench.judges.qwen_vl import QwenVLJudge, QwenVLJudgeConfig

    return QwenVLJudge(QwenVLJudgeConfig(model=args.model, device=args.device, dtype=args.dtype,
                                         pa_fps=args.fps, max_new_tokens=args.max_new_tokens))


def main(argv: list[str] | None = None) -> int:
    return run_scoring(build_parser().parse_args(argv), _judge, "pa")


if __name__ == "__main__":
    sys.exit(main())
