"""Instruction following (success rate) judged by GPT-4o or any OpenAI-compatible server:

    python -m dreamgenbench.eval_sr_gpt4o_whole --video_dir DIR --output_csv CSV [--zeroshot true] [--api_key KEY]

The key comes from `--api_key` or `OPENAI_API_KEY` and is never printed. Extra flags: `--model`
(gpt-4o), `--base_url` (e.g. a vLLM server, http://host:8000/v1), `--timeout`, `--num_frames` (8),
`--scale` (0.5).
"""

from __future__ import annotations

import argparse
import sys

from dreamgenbench._entry import base_parser, run_scoring


def build_parser() -> argparse.ArgumentParser:
    p = base_parser("Evaluate whether videos follow their instructions with GPT-4o or another "
                    "OpenAI-compatible judge.")
    p.add_argument("--api_key", default=None, help="API key (default: the OPENAI_API_KEY environment variable)")
    p.add_argument("--max_retries", type=int, default=3, help="retries per video on timeouts, 429 and 5xx")
    p.add_argument("--model", default="gpt-4o", help="model name on the server")
    p.add_argument("--base_url", "--base-url", dest="base_url", default=None,
                   help="OpenAI-compatible server, e.g. http://localhost:8000/v1 (default: OpenAI)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for one reply")
    p.add_argument("--num_frames", type=int, default=8, help="frames sampled evenly from each video")
    p.add_argument("--scale", type=float, default=0.5, help="resize factor of the frames")
    return p


def _judge(args: argparse.Namespace):
    from dreamgenbench.judges.openai_compatible import OpenAIJudge, OpenAIJudgeConfig

    return OpenAIJudge(OpenAIJudgeConfig(model=args.model, base_url=args.base_url, api_key=args.api_key,
                                         timeout_s=args.timeout, max_retries=args.max_retries,
                                         num_frames=args.num_frames, scale=args.scale, seed=args.seed))


def main(argv: list[str] | None = None) -> int:
    return run_scoring(build_parser().parse_args(argv), _judge, "if")


if __name__ == "__main__":
    sys.exit(main())
