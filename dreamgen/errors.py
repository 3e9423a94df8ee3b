"""User-facing errors. The CLI prints them as one line and exits non-zero; anything else is a bug."""

from __future__ import annotations

import math
from typing import Any


class DreamgenError(Exception):
    """Bad input or environment: the message names the file and what is wrong."""

    exit_code = 2


class EmbodimentError(DreamgenError):
    pass


class DatasetError(DreamgenError):
    pass


class VideoError(DreamgenError):
    pass


class OutputExistsError(DreamgenError):
    pass


class BadFlagError(DreamgenError):
    """A number or value outside what a flag allows."""


class TrainingError(DreamgenError):
    """Training went wrong in a way the data or settings explain (e.g. a non-finite loss)."""


def _fmt(x: float) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def describe_range(lo: float | None, hi: float | None, lo_open: bool, hi_open: bool) -> str:
    if lo is not None and hi is not None:
        return f"in {'(' if lo_open else '['}{_fmt(lo)}, {_fmt(hi)}{')' if hi_open else ']'}"
    if lo is not None:
        return f"{'>' if lo_open else '>='} {_fmt(lo)}"
    if hi is not None:
        return f"{'<' if hi_open else '<='} {_fmt(hi)}"
    return "a finite number"


def check_number(flag: str, value: Any, lo: float | None = None, hi: float | None = None, *,
                 lo_open: bool = False, hi_open: bool = False) -> Any:
    """Return `value` if it is a finite number within the range, else raise one line naming `flag`."""
    if value is None:
        return value
    values = value if isinstance(value, list | tuple) else [value]
    want = describe_range(lo, hi, lo_open, hi_open)
    for v in values:
        ok = isinstance(v, int | float) and math.isfinite(v)
        if ok and lo is not None:
            ok = v > lo if lo_open else v >= lo
        if ok and hi is not None:
            ok = v < hi if hi_open else v <= hi
        if not ok:
            raise BadFlagError(f"{flag} must be {want}, got {v}")
    return value


def parse_shard(text: str | None, flag: str = "--shard") -> tuple[int, int]:
    """`i/n` -> (i, n): this worker's shard of n (none given: the only one, (0, 1))."""
    if not text:
        return 0, 1
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise BadFlagError(f"{flag} must look like i/n (e.g. 0/4), got {text!r}") from None
    if n < 1 or not 0 <= i < n:
        raise BadFlagError(f"{flag} must be i/n with 0 <= i < n, got {text!r}")
    return i, n


def check_finite_loss(loss: Any, step: int, what: str) -> None:
    """Abort training on a NaN/inf loss, before anything is saved as if it were a trained model."""
    value = float(loss)
    if not math.isfinite(value):
        raise TrainingError(f"{what}: loss is {value} at step {step}; stopped without saving a checkpoint "
                            "(look for NaN/inf in the data, or lower the learning rate)")
