#!/usr/bin/env python
"""Reference-compatible entry point: generate's layout -> <Instruction>/<k>.mp4 (GR00T-Dreams step 3.1).

    python IDM_dump/convert_directory.py --input_dir results/dream_gen_benchmark/cosmos_predict2_14b_gr1_object \
        --output_dir results/dream_gen_benchmark/cosmos_predict2_14b_gr1_object_step3

Same flags and defaults as the reference; unlike it, two dreams of one instruction both survive
(0.mp4, 1.mp4, ...), sidecar JSONs travel with their video, and --dry-run prints the plan.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input_dir", "--input-dir", default="results/dream_gen_benchmark/cosmos_predict2_14b_gr1_object")
    parser.add_argument("--output_dir", "--output-dir",
                        default="results/dream_gen_benchmark/cosmos_predict2_14b_gr1_object_step3")
    parser.add_argument("--dry_run", "--dry-run", action="store_true", help="Print the plan, copy nothing.")
    args = parser.parse_args(argv)

    from dreamgen.errors import DreamgenError
    from dreamgen.idm.convert import convert_dreams

    try:
        plan = convert_dreams(args.input_dir, args.output_dir, dry_run=args.dry_run)
    except DreamgenError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"Found {len(plan)} mp4 files")
    for item in plan:
        print(f"{'Would copy' if args.dry_run else 'Copied'} {item.src} to {Path(args.output_dir) / item.dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
