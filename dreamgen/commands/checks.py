"""Validation at the command-line boundary: every number a user types is checked before any work.

Used as typer callbacks (`typer.Option(None, "--steps", callback=at_least(1))`): a bad value stops
the command with one line naming the flag and the allowed range (exit code 2). NaN and inf are never
accepted, and 0 never silently means "default".
"""

from __future__ import annotations

from typing import Any

import typer

from dreamgen.errors import BadFlagError, check_number, parse_shard

__all__ = ["BadFlagError", "at_least", "check_number", "finite", "in_range", "parse_shard", "parse_size"]


def _flag(param: typer.CallbackParam) -> str:
    opts = [o for o in getattr(param, "opts", []) if o.startswith("--")]
    return max(opts, key=len) if opts else (param.name or "value").upper()


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
