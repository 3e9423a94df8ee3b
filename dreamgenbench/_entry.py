"""Shared pieces of the reference-compatible `python -m dreamgenbench.*` entry points."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from dreamgen.errors import DreamgenError


def str2bool(value: str) -> bool:
    """`--zeroshot true|false` as the reference's README writes it. (The reference parsed it with
    `type=bool`, so 'false' meant True, and then never passed it to the scorer.)"""
    v = str(value).strip().lower()
    if v in ("true", "1", "yes", "y", "t", "on"):
        return True
    if v in ("false", "0", "no", "n", "f", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def run_main(body: Callable[[], int | None]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    try:
        return body() or 0
    except DreamgenError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted (rows already written are kept; re-run to resume)", file=sys.stderr)
        return 130


def base_parser(description: str, zeroshot: bool = True, device: bool = False) -> argparse.ArgumentParser:
    """The flags every reference entry point takes (the reference's spellings): video folder, CSV, seed,
    and for instruction following `--zeroshot true|false`; `device` for local (Qwen-VL) judges."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--video_dir", required=True, help="folder of <i>_<Instruction>.mp4 videos (searched recursively)")
    p.add_argument("--output_csv", default="eval_results.csv", help="CSV to append results to (resumed if present)")
    if device:
        p.add_argument("--device", default=None, help="torch device (cuda, cuda:0, cpu); default cuda if available")
    p.add_argument("--seed", type=int, default=0, help="random seed (sent with every request by API judges)")
    if zeroshot:
        p.add_argument("--zeroshot", type=str2bool, default=False, help="zero-shot prompt: true or false")
    return p


def add_qwen_flags(p: argparse.ArgumentParser) -> None:
    import os

    from dreamgenbench.judges.qwen_vl import DEFAULT_QWEN_MODEL

    p.add_argument("--model", default=os.environ.get("DREAMGEN_QWEN_VL", DEFAULT_QWEN_MODEL),
                   help="local Qwen2.5-VL/Qwen3-VL folder (or a hub id already in the local cache)")
    p.add_argument("--dtype", default="auto", help="auto, bfloat16 or float32")
    p.add_argument("--max_new_tokens", type=int, default=4)


def run_scoring(args: argparse.Namespace, make_judge: Callable[[argparse.Namespace], object], task: str) -> int:
    """The one body of the three entry points: seed, judge, score every video (resumable CSV), summary."""

    def body():
        from dreamgenbench.scoring import format_summary, score_videos, set_seed

        set_seed(args.seed)
        s = score_videos(args.video_dir, make_judge(args), task, args.output_csv,
                         **({"zeroshot": args.zeroshot} if task == "if" else {}))
        print(f"Evaluation done. Results saved to {args.output_csv}")
        print(format_summary(s))

    return run_main(body)
