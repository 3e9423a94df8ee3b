"""Every text DreamGenBench sends to a judge, and how a judge's reply becomes 0 / 1 / failed.

The wording is NVIDIA's DreamGenBench reference (GR00T-Dreams `dreamgenbench/`), kept verbatim so
scores stay comparable with the paper: the reference has two instruction-following (IF) families
(one used with Qwen-VL, one with GPT-4o), each with a normal and a zero-shot variant, and one
physics-alignment (PA) prompt. Change a prompt only together with `PROMPT_VERSION`: the version is
written into every `summary.json`, so numbers from different prompt sets are never mixed silently.
"""

from __future__ import annotations

import re

PROMPT_VERSION = "dreamgenbench-ref-1"

# prompt family per judge kind: the reference pairs the "qwen" IF wording with Qwen2.5-VL and the
# "gpt4o" wording (which also covers multi-view 2x2 grids in zero-shot mode) with GPT-4o
PROMPT_STYLES = ("qwen", "gpt4o")


def if_prompt(instruction: str, zeroshot: bool = False, style: str = "qwen") -> str:
    """Instruction-following question about `instruction`; answer 0 or 1."""
    if style not in PROMPT_STYLES:
        raise ValueError(f"unknown prompt style {style!r}; expected one of {PROMPT_STYLES}")
    if zeroshot:
        lines = [
            f"You are evaluating if a robot arm correctly follows this instruction: '{instruction}'\n\n",
            "CRITICAL EVALUATION PROCESS:\n",
            "1. FIRST CHECK: If you see HUMAN HANDS instead of robot arms, IMMEDIATELY ANSWER 0.\n",
            "2. SECOND CHECK: Only if robot arms confirmed, verify if the instruction is followed exactly.\n\n",
        ]
        if style == "gpt4o":
            lines.append(
                "3. For videos with multiview clip (4 grids), verify if the instruction is followed exactly "
                "in each view. Only if all the view is following instruction, answer 1, otherwise, answer 0.\n\n"
            )
        lines.append("Remember: human hands = automatic failure (0). Be extremely strict in your judgment.\n")
        if style == "gpt4o":
            lines.append(
                "For videos with multiview clip (4 grids), check if the human arm is present in any view, "
                "if so, make sure to answer 0.\n\n"
            )
        lines.append("Reply ONLY with a single digit: 0 for failure or 1 for success.")
        return "".join(lines)
    if style == "gpt4o":
        return (
            "The video shows a robot arm completing a specific task. "
            f"Please evaluate: if the video follows the instruction to finish the task '{instruction}', "
            "give a positive score. "
            "Reply only '0' for No or '1' for Yes."
        )
    return (
        "The video shows a robot arm completing a specific task. "
        f"Does the video follow the instruction to finish the task: '{instruction}'? If it fails to follow "
        "the instruction (e.g. miss the object, action or do some other actions), please answer 0. "
        "Answer 0 for No or 1 for Yes. Reply only 0 or 1."
    )


def pa_prompt() -> str:
    """Physics-alignment question (the instruction is deliberately not shown, as in the reference)."""
    return (
        "The video shows a robot arm completing a specific task. "
        "Does the video show good physics dynamics and showcase a good alignment with the physical world? "
        "Please be a strict judge. If it breaks the laws of physics, please answer 0. "
        "Answer 0 for No or 1 for Yes. Reply only 0 or 1."
    )


def build_prompt(task: str, instruction: str, zeroshot: bool = False, style: str = "qwen") -> str:
    if task == "if":
        return if_prompt(instruction, zeroshot=zeroshot, style=style)
    if task == "pa":
        return pa_prompt()
    raise ValueError(f"unknown task {task!r}; expected 'if' or 'pa'")


_WORD = re.compile(r"[a-z]+")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")


def parse_reply(reply: str | None) -> int | None:
    """'1' / ' 0' / 'Yes' / 'no.' -> 1 / 0 / 1 / 0; anything else -> None (the item counts as failed).

    A reply that starts with a digit is read from that digit, as the reference does (it asked for
    one digit and kept 4 new tokens, so '1.' or '1\\n' occur). Unlike the reference, an unreadable
    reply is not scored 0: it is a failed item, excluded from the mean and counted.
    """
    if reply is None:
        return None
    text = reply.strip().lstrip("'\"`*([").strip()
    if not text:
        return None
    if text[0] in "01":
        # '10' or '0.5' are numbers, not answers to a 0/1 question
        if _NUMBER.match(text).group(0) not in ("0", "1"):
            return None
        return int(text[0])
    m = _WORD.match(text.lower())
    if m and m.group(0) in ("yes", "true"):
        return 1
    if m and m.group(0) in ("no", "false"):
        return 0
    return None
