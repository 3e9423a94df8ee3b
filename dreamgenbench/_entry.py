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
