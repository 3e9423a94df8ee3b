"""DreamGenBench: score dreamed robot videos for instruction following (IF) and physics alignment (PA)
with a VLM judge, and filter out the failures ("nightmares").

Python API used by other stages:
    score_videos(video_dir, judge, task="if"|"pa", output_csv) -> ScoreSummary
    filter_dreams(scores_csv, out, min_if=1, min_pa=None, pa_scores=None) -> FilterResult
    make_judge("qwen"|"openai", model, **options), PythonCallableJudge(fn)
Heavy libraries (torch, transformers, openai) are imported only when a judge is built.
"""

from __future__ import annotations

from dreamgenbench.filtering import FilterResult, filter_dreams
from dreamgenbench.prompts import PROMPT_VERSION, build_prompt, parse_reply
from dreamgenbench.scoring import ScoreSummary, list_dreams, read_scores, score_videos

__all__ = [
    "PROMPT_VERSION", "FilterResult", "ScoreSummary", "build_prompt", "filter_dreams", "list_dreams",
    "make_judge", "parse_reply", "read_scores", "score_videos",
]


def make_judge(kind: str, model: str | None = None, **options):
    from dreamgenbench.judges import make_judge as _make

    return _make(kind, model, **options)
