"""Physics alignment (PA score I of the paper) judged by a local Qwen-VL from the video itself:

    python -m dreamgenbench.eval_qwen_pa --video_dir DIR --output_csv CSV --device cuda:0

Extra flags: `--model`, `--fps` (2, what qwen_vl_utils samples), `--dtype`. The paper's PA is the mean
of this and a second judge: see docs/bench.md and `dreamgen bench --pa-judge`.
"""

from __future__ import annotations

import argparse
import os
import sys

from dreamgenbench._entry import run_main


def build_parser() -> argparse.ArgumentParser:
    from dreamgenbench.judges.qwen_vl import DEFAULT_QWEN_MODEL

    p = argparse.ArgumentParser(description="Evaluate the physics alignment of videos using Qwen-VL.")
    p.add_argument("--video_dir", required=True, help="folder of <i>_<Instruction>.mp4 videos (searched recursively)")
    p.add_argument("--output_csv", default="eval_results.csv", help="CSV to append results to (resumed if present)")
    p.add_argument("--device", default=None, help="torch device (cuda, cuda:0, cpu); default cuda if available")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--model", default=os.environ.get("DREAMGEN_QWEN_VL", DEFAULT_QWEN_MODEL),
                   help="local Qwen2.5-VL/Qwen3-VL folder (or a hub id already in the local cache)")
    p.add_argument("--dtype", default="auto", help="auto, bfloat16 or float32")
    p.add_argument("--fps", type=float, default=2.0, help="frames per second given to the model")
    p.add_argument("--max_new_tokens", type=int, default=4)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body():
        from dreamgenbench.judges.qwen_vl import QwenVLJudge, QwenVLJudgeConfig
        from dreamgenbench.scoring import format_summary, score_videos, set_seed

        set_seed(args.seed)
        judge = QwenVLJudge(QwenVLJudgeConfig(model=args.model, device=args.device, dtype=args.dtype,
                                              pa_fps=args.fps, max_new_tokens=args.max_new_tokens))
        s = score_videos(args.video_dir, judge, "pa", args.output_csv)
        print(f"Evaluation done. Results saved to {args.output_csv}")
        print(format_summary(s))

    return run_main(body)


if __name__ == "__main__":
    sys.exit(main())
