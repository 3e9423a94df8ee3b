"""A judge that is a Python function, not a VLM: `fn(video_path, instruction, task) -> 0/1/bool/str`.

For checkers that know the answer another way, e.g. the ToyWorld experiment replaying a dream's
instruction in the simulator or comparing it with its ground-truth episode. Scores it produces are
labelled `python-callable:<function name>` in every CSV summary, so they are never mistaken for
VLM-judge numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from dreamgenbench.judges.base import JudgeItemError


class PythonCallableJudge:
    kind = "python-callable"
    prompt_style = "qwen"

    def __init__(self, fn: Callable[[Path, str, str], int | bool | str], name: str | None = None):
        self._fn = fn
        self.model = name or getattr(fn, "__qualname__", None) or type(fn).__qualname__

    def describe(self) -> dict:
        return {"function": self.model}

    def ask(self, video_path: Path, question: str, task: str, instruction: str = "") -> str:
        # the callable gets the instruction, not the VLM question built around it
        try:
            verdict = self._fn(video_path, instruction, task)
        except Exception as exc:  # a checker crash fails this item only
            raise JudgeItemError(f"{self.model} raised {type(exc).__name__}: {exc}") from None
        if isinstance(verdict, bool):
            return "1" if verdict else "0"
        return str(verdict)
