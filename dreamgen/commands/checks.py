"""Validation at the command-line boundary: every number a user types is checked before any work.

Used as typer callbacks (`typer.Option(None, "--steps", callback=at_least(1))`): a bad value stops
the command with one line naming the flag and the allowed range (exit code 2). NaN and inf are never
accepted, and 0 never silently means "default".
"""

from __future__ import annotations

from typing import Any

import typer

from dreamgen.errors import BadFlagError, check_number, parse_shard

__all__ = ["BadFlagError", "at_least", "check_number", "finite", "in_range", "parse_shard", "parse_size",
           "precision_choice", "precision_help"]

# The one vocabulary of --precision (issue #17): what the model computes in. Older spellings still read.
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
_SPELLINGS = {"no": "fp32", "float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}


def _flag(param: typer.CallbackParam) -> str:
    """The option's first long name: its canonical spelling (later ones are older aliases)."""
    opts = [o for o in getattr(param, "opts", []) if o.startswith("--")]
    return opts[0] if opts else (param.name or "value").upper()


def precision_choice(*allowed: str):
    """A typer callback for --precision: one of `allowed` (a subset of PRECISIONS), returned canonical."""
    assert set(allowed) <= set(PRECISIONS), allowed

    def callback(ctx: typer.Context, param: typer.CallbackParam, value: str | None) -> str | None:
        if value is None or ctx.resilient_parsing:
            return value
        canonical = _SPELLINGS.get(value.lower(), value.lower())
        if canonical not in allowed:
            raise BadFlagError(f"{_flag(param)} must be one of {' | '.join(allowed)}, got {value!r}")
        return canonical

    return callback


def precision_help(*allowed: str, auto: str = "bf16 on a GPU, fp32 on a CPU") -> str:
    return f"{' | '.join(allowed)} (auto: {auto})."


def in_range(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False, hi_open: bool = False):
    """A typer callback accepting finite numbers in the range (None passes: the option was not given)."""

    def callback(ctx: typer.Context, param: typer.CallbackParam, value: Any) -> Any:
        if ctx.resilient_parsing:
            return value
        return check_number(_flag(param), value, lo, hi, lo_open=lo_open, hi_open=hi_open)

    return callback


def at_least(lo: float):
    return in_range(lo)


def finite():
    return in_range()


def parse_size(text: str | None, flag: str, example: str = "432x768") -> list[int] | None:
    """'HxW' (or 'H,W') -> [H, W], both >= 1."""
    if text is None:
        return None
    try:
        a, b = (int(x) for x in text.lower().replace("x", ",").split(","))
    except ValueError:
        raise BadFlagError(f"{flag} must look like HxW (e.g. {example}), got {text!r}") from None
    if a < 1 or b < 1 or a > 16384 or b > 16384:
        raise BadFlagError(f"{flag} must be HxW with both sides in [1, 16384], got {text!r}")
    return [a, b]
