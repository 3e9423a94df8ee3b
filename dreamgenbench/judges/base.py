"""The judge interface: one question about one video in, the judge's raw text reply out.

A judge owns how it looks at a video (frame count, scale, video vs images) because that differs per
judge in the reference. It never interprets the reply: `prompts.parse_reply` does, in one place.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

from dreamgen.errors import DreamgenError


class JudgeItemError(Exception):
    """This video could not be judged (retries exhausted, malformed reply, bad request). The item is
    recorded as failed and the run goes on."""


class JudgeUnavailableError(DreamgenError):
    """The judge cannot work at all (server unreachable, key rejected, model missing). The run stops
    with a clear message; rows already written stay and a re-run resumes after them."""


@runtime_checkable
class Judge(Protocol):
    #: judge kind, e.g. "qwen-vl", "openai", "python-callable"
    kind: str
    #: model name or local path, as written into summary.json
    model: str
    #: which IF wording of the reference to use with this judge ("qwen" or "gpt4o")
    prompt_style: str

    def ask(self, video_path: Path, question: str, task: str, instruction: str = "") -> str:
        """Show the video to the judge with `question`; return its raw reply.
        `task` ("if" or "pa") lets the judge pick the reference's way of showing the video;
        `instruction` is the plain instruction the question was built from (VLM judges ignore it)."""
        ...

    def describe(self) -> dict:
        """Settings that affect scores (frame sampling, generation), for summary.json."""
        ...
