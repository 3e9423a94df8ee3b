"""Instruction following (success rate) judged by a local Qwen-VL, as the reference's entry point:

    python -m dreamgenbench.eval_sr_qwen_whole --video_dir DIR --output_csv CSV --device cuda:0 [--zeroshot true]

Extra flags: `--model` (local folder or cached hub id; default Qwen/Qwen2.5-VL-7B-Instruct),
`--num_frames` (49) and `--scale` (0.3), `--dtype`.
"""

from __future__ import annotations

import argparse
import os
import sys

from dreamgenbench._entry import run_main, str2bool


def build_parser() -> argparse.ArgumentParser:
    from dreamgenbench.judges.qwen_vl import DEFAULT_QWEN_MODEL

    p = argparse.ArgumentParser(description="Evaluate whether videos follow their instructions using Qwen-VL.")
    p.add_argument("--video_dir", required=True, help="folder of <i>_<Instruction>.mp4 videos (searched recursively)")
    p.add_argument("--output_csv", default="eval_results.csv", help="CSV to append results to (resumed if present)")
    p.add_argument("--device", default=None, help="torch device (cuda, cuda:0, cpu); default cuda if available")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--zeroshot", type=str2bool, default=False, help="zero-shot prompt: true or false")
    p.add_argument("--model", default=os.environ.get("DREAMGEN_QWEN_VL", DEFAULT_QWEN_MODEL),
                   help="local Qwen2.5-VL/Qwen3-VL folder (or a hub id already in the local cache)")
    p.add_argument("--dtype", default="auto", help="auto, bfloat16 or float32")
    p.add_argument("--num_frames", type=int, default=49, help="frames sampled evenly from each video")
    p.add_argument("--scale", type=float, default=0.3, help="resize factor of the frames")
    p.add_argument("--max_new_tokens", type=int, default=4)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body():
        from dreamgenbench.judges.qwen_vl import QwenVLJudge, QwenVLJudgeConfig
        from dreamgenbench.scoring import format_summary, score_videos, set_seed

        set_seed(args.seed)
        judge = QwenVLJudge(QwenVLJudgeConfig(model=args.model, device=args.device, dtype=args.dtype,
                                              if_num_frames=args.num_frames, if_scale=args.scale,
                                              max_new_tokens=args.max_new_tokens))
        s = score_videos(args.video_dir, judge, "if", args.output_csv, zeroshot=args.zeroshot)
        print(f"Evaluation done. Results saved to {args.output_csv}")
        print(format_summary(s))

    return run_main(body)


if __name__ == "__main__":
    sys.exit(main())
