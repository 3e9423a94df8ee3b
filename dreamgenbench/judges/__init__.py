"""Judges behind one interface (`Judge.ask(video, question, task) -> raw reply`) and a factory."""

from __future__ import annotations

from dreamgenbench.judges.base import Judge, JudgeItemError, JudgeUnavailableError
from dreamgenbench.judges.openai_compatible import OpenAIJudge, OpenAIJudgeConfig
from dreamgenbench.judges.python_callable import PythonCallableJudge
from dreamgenbench.judges.qwen_vl import DEFAULT_QWEN_MODEL, QwenVLJudge, QwenVLJudgeConfig

JUDGE_KINDS = ("qwen", "openai")

__all__ = [
    "DEFAULT_QWEN_MODEL", "JUDGE_KINDS", "Judge", "JudgeItemError", "JudgeUnavailableError", "OpenAIJudge",
    "OpenAIJudgeConfig", "PythonCallableJudge", "QwenVLJudge", "QwenVLJudgeConfig", "make_judge",
]


def make_judge(kind: str, model: str | None = None, **options) -> Judge:
    """`make_judge("qwen", "/models/Qwen2.5-VL-7B-Instruct", device="cuda")` or
    `make_judge("openai", "gpt-4o", base_url=..., api_key=...)`; options are the config fields."""
    if kind in ("qwen", "qwen-vl"):
        cfg = QwenVLJudgeConfig(**({"model": model} if model else {}), **options)
        return QwenVLJudge(cfg)
    if kind in ("openai", "gpt4o"):
        cfg = OpenAIJudgeConfig(**({"model": model} if model else {}), **options)
        return OpenAIJudge(cfg)
    raise ValueError(f"unknown judge kind {kind!r}; expected one of {JUDGE_KINDS}")
