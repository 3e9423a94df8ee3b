"""Score a folder of dreams with a judge: the CSV + summary.json contract of DESIGN §4.

CSV columns `video_path,prompt,prediction,raw_reply`; `prediction` is `1`, `0` or `failed`. A row is
appended (and flushed to disk) after every video, so an interrupted run loses at most the video in
flight; re-running skips videos already scored and retries the failed ones. When a run completes, the
CSV is compacted to one row per video (the latest). Failed items are excluded from the mean and counted.
The summary sits beside the CSV as `<csv stem>.summary.json`.
"""

from __future__ import annotations

import csv
import logging
import os
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

from dreamgen.data.video import video_info
from dreamgen.errors import DreamgenError, VideoError
from dreamgen.io import atomic_write_json
from dreamgen.jobs import check_job
from dreamgen.naming import parse_dream_path
from dreamgenbench.judges.base import Judge, JudgeItemError
from dreamgenbench.prompts import PROMPT_VERSION, build_prompt, parse_reply

logger = logging.getLogger(__name__)

CSV_COLUMNS = ["video_path", "prompt", "prediction", "raw_reply"]
FAILED = "failed"
TASKS = ("if", "pa")


@dataclass
class Dream:
    path: Path
    index: int
    instruction: str


@dataclass
class ScoreRow:
    video_path: str
    prompt: str
    prediction: str  # "1", "0" or "failed"
    raw_reply: str

    @property
    def value(self) -> int | None:
        return int(self.prediction) if self.prediction in ("0", "1") else None


@dataclass
class ScoreSummary:
    task: str
    score: float | None  # mean of the successful predictions; None when nothing succeeded
    n: int  # videos scored successfully (the mean's denominator)
    n_failed: int
    n_yes: int
    ci95: list[float] | None  # Wilson score interval of `score`
    judge: str
    model: str
    prompt_version: str
    prompt_style: str
    zeroshot: bool
    video_dir: str
    csv: str
    judge_settings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def set_seed(seed: int) -> None:
    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    try:
        import torch

        torch.manual_seed(seed)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass


def wilson_interval(k: int, n: int) -> list[float] | None:
    """95% Wilson score interval of k passes out of n (None when nothing was scored)."""
    from dreamgen.intervals import wilson_interval as interval

    return None if n <= 0 else [round(x, 6) for x in interval(k, n)]


def list_dreams(video_dir: str | Path, recursive: bool = True) -> list[Dream]:
    """Every `<i>_<Instruction>.mp4` under `video_dir` (sorted), with its instruction (sidecar JSON wins).
    Any .mp4 whose name does not follow the contract is an error, listed by name."""
    root = Path(video_dir)
    if not root.is_dir():
        raise DreamgenError(f"{root}: video folder not found")
    paths = sorted(root.rglob("*.mp4") if recursive else root.glob("*.mp4"))
    paths = [p for p in paths if not p.name.startswith(".")]  # in-flight temp files of write_video
    if not paths:
        raise DreamgenError(f"{root}: no .mp4 videos found{' (searched sub-folders too)' if recursive else ''}")
    dreams, bad = [], []
    for p in paths:
        try:
            index, instruction = parse_dream_path(p)
        except DreamgenError as exc:
            bad.append(str(exc))
            continue
        dreams.append(Dream(p, index, instruction))
    if bad:
        more = f" (and {len(bad) - 3} more)" if len(bad) > 3 else ""
        raise DreamgenError(f"{len(bad)} video(s) not named '<i>_<Instruction>.mp4': "
                            + "; ".join(bad[:3]) + more)
    return dreams


def summary_path(output_csv: str | Path) -> Path:
    output_csv = Path(output_csv)
    return output_csv.with_name(output_csv.stem + ".summary.json")


def read_scores(csv_path: str | Path) -> dict[str, ScoreRow]:
    """Rows of a score CSV keyed by video path, the latest row per video winning. A last line cut off
    by a crash is ignored."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise DreamgenError(f"{csv_path}: score CSV not found")
    text = csv_path.read_text(encoding="utf-8")
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]  # drop a half-written last row
    reader = csv.reader(text.splitlines(keepends=True))
    header = next(reader, None)
    if header is None:
        return {}
    if header[: len(CSV_COLUMNS)] != CSV_COLUMNS:
        raise DreamgenError(f"{csv_path}: not a DreamGenBench score CSV (header {header}, "
                            f"expected {CSV_COLUMNS})")
    rows: dict[str, ScoreRow] = {}
    for line_no, rec in enumerate(reader, start=2):
        if len(rec) < 4:
            raise DreamgenError(f"{csv_path}:{line_no}: expected 4 columns, got {len(rec)}")
        row = ScoreRow(*rec[:4])
        if row.prediction not in ("0", "1", FAILED):
            raise DreamgenError(f"{csv_path}:{line_no}: prediction {row.prediction!r} is not 0, 1 or failed")
        rows[row.video_path] = row
    return rows


def _write_rows_atomic(csv_path: Path, rows: list[ScoreRow]) -> None:
    tmp = csv_path.with_name(f".{csv_path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(CSV_COLUMNS)
        for r in rows:
            w.writerow([r.video_path, r.prompt, r.prediction, r.raw_reply])
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(csv_path)


def _write_json_atomic(path: Path, data: dict) -> None:
    atomic_write_json(path, data)


def check_score_job(output_csv: Path, judge: Judge, task: str, zeroshot: bool, video_dir: str | Path,
                    overwrite: bool = False) -> None:
    """The resume rule for a score CSV: its rows are reused only for the same judge, model, prompt and
    folder; otherwise refuse naming the setting, or start the CSV afresh with `overwrite`."""
    settings = {"task": task, "judge": judge.kind, "model": judge.model, "prompt_version": PROMPT_VERSION,
                "prompt_style": judge.prompt_style, "zeroshot": bool(zeroshot and task == "if"),
                "video_dir": str(Path(video_dir).resolve())}

    def clear() -> None:
        output_csv.unlink(missing_ok=True)
        summary_path(output_csv).unlink(missing_ok=True)

    # a CSV without a record (written by hand or by an older version) is resumed as before
    check_job(output_csv.parent, "bench", settings, overwrite=overwrite, clear=clear,
              name=f".{output_csv.name}.job.json")


def check_judgeable(path: Path) -> None:
    """A video the judge can see as a video: at least 2 frames (a still image is never a success)."""
    n = video_info(path).num_frames
    if n < 2:
        raise VideoError(f"{path}: {n} frame(s); a dream needs at least 2 frames to be judged")


def summarize(rows: list[ScoreRow] | dict[str, ScoreRow]) -> tuple[float | None, int, int, int]:
    """(score, n_ok, n_failed, n_yes) of score rows."""
    values = [r.value for r in (rows.values() if isinstance(rows, dict) else rows)]
    ok = [v for v in values if v is not None]
    n_yes = sum(ok)
    return (n_yes / len(ok) if ok else None), len(ok), len(values) - len(ok), n_yes


def score_videos(
    video_dir: str | Path,
    judge: Judge,
    task: str = "if",
    output_csv: str | Path = "eval_results.csv",
    zeroshot: bool = False,
    recursive: bool = True,
    limit: int | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> ScoreSummary:
    """Ask `judge` the IF or PA question about every dream in `video_dir`; append rows to `output_csv`
    (resuming it if present) and write `<csv stem>.summary.json`. Returns the summary."""
    from tqdm import tqdm

    if task not in TASKS:
        raise DreamgenError(f"unknown task {task!r}; expected one of {TASKS}")
    output_csv = Path(output_csv)
    dreams = list_dreams(video_dir, recursive=recursive)
    if limit is not None:
        dreams = dreams[:limit]
    output_csv.parent.mkdir(parents=True, exist_ok=True)
    check_score_job(output_csv, judge, task, zeroshot, video_dir, overwrite)

    done: dict[str, ScoreRow] = read_scores(output_csv) if output_csv.exists() else {}
    if output_csv.exists():
        # normalise (drops a half-written last row) before appending to it
        _write_rows_atomic(output_csv, list(done.values()))
    todo = [d for d in dreams if (k := str(d.path.resolve())) not in done or done[k].value is None]
    if done:
        logger.info("%s: %d video(s) already scored, %d to go", output_csv, len(dreams) - len(todo), len(todo))

    new_file = not output_csv.exists()
    with open(output_csv, "a", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        if new_file:
            writer.writerow(CSV_COLUMNS)
        for dream in tqdm(todo, desc=f"{task.upper()} {judge.kind}", unit="video", disable=not progress):
            question = build_prompt(task, dream.instruction, zeroshot=zeroshot, style=judge.prompt_style)
            try:
                check_judgeable(dream.path)  # an unreadable or 1-frame file fails here for every judge
                raw = judge.ask(dream.path, question, task, dream.instruction)
                value = parse_reply(raw)
                prediction = FAILED if value is None else str(value)
                if value is None:
                    logger.warning("%s: unreadable reply %r: counted as failed", dream.path.name, raw[:80])
            except (JudgeItemError, VideoError) as exc:
                raw, prediction = f"ERROR: {exc}", FAILED
                logger.warning("%s: %s", dream.path.name, exc)
            row = ScoreRow(str(dream.path.resolve()), dream.instruction, prediction, raw)
            writer.writerow([row.video_path, row.prompt, row.prediction, row.raw_reply])
            f.flush()
            os.fsync(f.fileno())
            done[row.video_path] = row

    # compact: one row per video, in folder order, then rows of videos no longer in the folder
    wanted = [str(d.path.resolve()) for d in dreams]
    ordered = [done[k] for k in wanted if k in done] + [r for k, r in done.items() if k not in set(wanted)]
    _write_rows_atomic(output_csv, ordered)

    these = [done[k] for k in wanted if k in done]
    score, n_ok, n_failed, n_yes = summarize(these)
    summary = ScoreSummary(
        task=task, score=None if score is None else round(score, 6), n=n_ok, n_failed=n_failed,
        n_yes=n_yes, ci95=wilson_interval(n_yes, n_ok), judge=judge.kind, model=judge.model,
        prompt_version=PROMPT_VERSION, prompt_style=judge.prompt_style, zeroshot=bool(zeroshot and task == "if"),
        video_dir=str(Path(video_dir).resolve()), csv=str(output_csv.resolve()), judge_settings=judge.describe(),
    )
    _write_json_atomic(summary_path(output_csv), summary.to_dict())
    return summary


def format_summary(s: ScoreSummary) -> str:
    if s.score is None:
        return f"{s.task.upper()}: no video scored ({s.n_failed} failed)"
    lo, hi = s.ci95
    return (f"Average prediction (1=Yes rate): {s.score:.4f} ({s.n_yes}/{s.n}); 95% CI [{lo:.3f}, {hi:.3f}]; "
            f"{s.n_failed} failed (excluded)")
