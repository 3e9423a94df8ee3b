"""DreamGenBench without any model: prompts, reply parsing, frame sampling, the CSV/summary contract,
resuming, failed items, and the nightmare filter (scores come from a Python-callable judge)."""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
import pytest

from dreamgen.data.video import write_video
from dreamgen.errors import DreamgenError, OutputExistsError
from dreamgenbench import filter_dreams, list_dreams, read_scores, score_videos
from dreamgenbench._entry import str2bool
from dreamgenbench.frames import even_indices, sample_clip, sample_frames
from dreamgenbench.judges import PythonCallableJudge
from dreamgenbench.prompts import PROMPT_VERSION, build_prompt, if_prompt, pa_prompt, parse_reply
from dreamgenbench.scoring import CSV_COLUMNS, summary_path, wilson_interval

INSTRUCTIONS = ["pick up the red cube", "open the drawer", "push the blue block left"]


def make_dreams(folder: Path, n: int = 3, frames: int = 10, size=(32, 40), fps: float = 8.0) -> list[Path]:
    """`<i>_<Instruction>.mp4` videos whose frame t has brightness 10*t (so sampling is checkable)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        video = np.zeros((frames, *size, 3), np.uint8)
        for t in range(frames):
            video[t] = min(250, 10 * t + 5)
        video[..., i % 3] = 200  # a different colour per video
        p = folder / f"{i}_{INSTRUCTIONS[i % len(INSTRUCTIONS)].replace(' ', '_')}.mp4"
        write_video(p, video, fps)
        paths.append(p)
    return paths


def test_parse_reply():
    assert parse_reply("1") == 1
    assert parse_reply(" 0") == 0
    assert parse_reply("Yes") == 1
    assert parse_reply("no.") == 0
    assert parse_reply("1.") == 1
    assert parse_reply("0\n") == 0
    for garbage in ["garbage", "", "   ", None, "10", "0.5", "2", "Not sure", "maybe 1"]:
        assert parse_reply(garbage) is None, garbage


def test_prompts_follow_the_reference_and_zeroshot_changes_them():
    normal = if_prompt("open the drawer", zeroshot=False, style="qwen")
    zs = if_prompt("open the drawer", zeroshot=True, style="qwen")
    assert "'open the drawer'" in normal and "'open the drawer'" in zs
    assert "HUMAN HANDS" in zs and "HUMAN HANDS" not in normal
    assert "multiview" in if_prompt("x", zeroshot=True, style="gpt4o")
    assert "multiview" not in zs
    assert if_prompt("x", style="gpt4o") != if_prompt("x", style="qwen")
    assert build_prompt("pa", "open the drawer") == pa_prompt()
    assert "open the drawer" not in pa_prompt() and "physics" in pa_prompt()
    with pytest.raises(ValueError):
        build_prompt("xx", "a")


def test_str2bool_false_means_false():
    assert str2bool("false") is False and str2bool("False") is False and str2bool("0") is False
    assert str2bool("true") is True and str2bool("1") is True
    with pytest.raises(argparse.ArgumentTypeError):
        str2bool("perhaps")


def test_wilson_interval():
    lo, hi = wilson_interval(25, 50)
    assert lo < 0.5 < hi and abs((0.5 - lo) - (hi - 0.5)) < 1e-6
    assert 0.36 < lo < 0.37  # textbook value for 25/50: [0.366, 0.634]
    lo, hi = wilson_interval(50, 50)
    assert hi == 1.0 and 0.92 < lo < 0.93
    assert wilson_interval(0, 0) is None


def test_frame_sampling(tmp_path):
    assert even_indices(100, 5) == [0, 24, 49, 74, 99]
    assert even_indices(3, 5) == [0, 1, 2]
    (p,) = make_dreams(tmp_path, n=1, frames=10, size=(40, 60))
    frames = sample_frames(p, 4, scale=0.5)
    assert len(frames) == 4 and frames[0].shape == (20, 30, 3)
    # brightness of channel 1 grows with the frame index: first and last frames picked
    assert frames[0][..., 1].mean() < 15 and frames[-1][..., 1].mean() > 85
    padded = sample_frames(p, 49, scale=0.3)  # reference: short clips padded with the last frame
    assert len(padded) == 49 and np.array_equal(padded[-1], padded[12])
    clip = sample_clip(p)  # 10 frames at 8 fps = 1.25 s -> at least 4 frames, an even count
    assert clip.frames.shape == (4, 40, 60, 3) and clip.indices == [0, 3, 6, 9]
    assert clip.sampled_fps == pytest.approx(4 / 10 * 8)


def test_list_dreams_bad_inputs(tmp_path):
    with pytest.raises(DreamgenError, match="not found"):
        list_dreams(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DreamgenError, match="no .mp4"):
        list_dreams(tmp_path / "empty")
    make_dreams(tmp_path / "bad", n=1)
    (tmp_path / "bad" / "no_index_here.mp4").write_bytes(b"x")
    with pytest.raises(DreamgenError, match="no_index_here.mp4"):
        list_dreams(tmp_path / "bad")
    paths = make_dreams(tmp_path / "ok", n=2)
    (tmp_path / "ok" / "1_open_the_drawer.json").write_text(json.dumps({"prompt": "Open the drawer, gently."}))
    dreams = list_dreams(tmp_path / "ok")
    assert [d.path for d in dreams] == paths
    assert dreams[1].instruction == "Open the drawer, gently."  # the sidecar wins


class Checker:
    """A 'simulator' verdict per instruction; records calls."""

    def __init__(self, verdicts):
        self.verdicts, self.calls = verdicts, []

    def __call__(self, video, instruction, task):
        self.calls.append((Path(video).name, instruction, task))
        v = self.verdicts[instruction]
        if isinstance(v, Exception):
            raise v
        return v


def test_score_videos_csv_summary_and_resume(tmp_path):
    paths = make_dreams(tmp_path / "dreams", n=3)
    (tmp_path / "dreams" / "2_push_the_blue_block_left.json").write_text(json.dumps({"prompt": "push it, left"}))
    checker = Checker({"pick up the red cube": True, "open the drawer": "garbage", "push it, left": 0})
    judge = PythonCallableJudge(checker, name="toy_checker")
    out = tmp_path / "res" / "if.csv"
    s = score_videos(tmp_path / "dreams", judge, "if", out, progress=False)
    assert (s.n, s.n_failed, s.n_yes, s.score) == (2, 1, 1, 0.5)
    assert s.judge == "python-callable" and s.model == "toy_checker" and s.prompt_version == PROMPT_VERSION
    with open(out, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == CSV_COLUMNS and len(rows) == 4
    assert rows[1] == [str(paths[0].resolve()), "pick up the red cube", "1", "1"]
    assert rows[2][2:] == ["failed", "garbage"]
    assert rows[3][1:3] == ["push it, left", "0"]  # prompt with a comma survives CSV quoting
    summary = json.loads(summary_path(out).read_text())
    assert summary["score"] == 0.5 and summary["n_failed"] == 1 and summary["ci95"] == wilson_interval(1, 2)

    # re-run: finished videos are skipped, the failed one is retried and replaced
    checker.verdicts["open the drawer"] = "Yes"
    checker.calls.clear()
    s2 = score_videos(tmp_path / "dreams", judge, "if", out, progress=False)
    assert [c[1] for c in checker.calls] == ["open the drawer"]
    assert (s2.n, s2.n_failed, s2.score) == (3, 0, pytest.approx(2 / 3))
    assert len(read_scores(out)) == 3 and len(out.read_text().strip().splitlines()) == 4


def test_interrupted_csv_resumes(tmp_path):
    paths = make_dreams(tmp_path / "dreams", n=3)
    out = tmp_path / "if.csv"
    # a run that died while writing its second row
    out.write_text(",".join(CSV_COLUMNS) + f"\n{paths[0].resolve()},pick up the red cube,1,1\n{paths[1]},open th")
    checker = Checker({"pick up the red cube": 0, "open the drawer": 0, "push the blue block left": 1})
    s = score_videos(tmp_path / "dreams", PythonCallableJudge(checker), "if", out, progress=False)
    assert [c[0] for c in checker.calls] == [paths[1].name, paths[2].name]
    assert (s.n, s.n_yes) == (3, 2)  # video 0 kept its earlier 1


def test_failed_items_are_recorded_not_scored_zero(tmp_path):
    paths = make_dreams(tmp_path / "dreams", n=2)
    paths[1].write_bytes(b"not a video")  # unreadable video
    checker = Checker({"pick up the red cube": RuntimeError("sim crashed"), "open the drawer": 1})
    judge = PythonCallableJudge(checker)
    out = tmp_path / "pa.csv"
    s = score_videos(tmp_path / "dreams", judge, "pa", out, progress=False)
    rows = read_scores(out)
    assert s.score is None and s.n == 0 and s.n_failed == 2 and s.ci95 is None
    assert rows[str(paths[0].resolve())].raw_reply.startswith("ERROR: ") and "sim crashed" in rows[str(paths[0].resolve())].raw_reply
    assert rows[str(paths[1].resolve())].prediction == "failed"


def test_filter_dreams(tmp_path):
    paths = make_dreams(tmp_path / "dreams", n=3)
    (tmp_path / "dreams" / "0_pick_up_the_red_cube.json").write_text(json.dumps({"prompt": "pick up the red cube"}))
    if_judge = PythonCallableJudge(Checker({"pick up the red cube": 1, "open the drawer": 1,
                                            "push the blue block left": 0}))
    pa1 = PythonCallableJudge(Checker({"pick up the red cube": 1, "open the drawer": 0,
                                       "push the blue block left": 1}))
    pa2 = PythonCallableJudge(Checker({"pick up the red cube": 1, "open the drawer": 1,
                                       "push the blue block left": "??"}))
    score_videos(tmp_path / "dreams", if_judge, "if", tmp_path / "s" / "if.csv", progress=False)
    score_videos(tmp_path / "dreams", pa1, "pa", tmp_path / "s" / "pa1.csv", progress=False)
    score_videos(tmp_path / "dreams", pa2, "pa", tmp_path / "s" / "pa2.csv", progress=False)

    r = filter_dreams(tmp_path / "s" / "if.csv", tmp_path / "kept_if", min_if=1)
    assert sorted(r.kept) == [paths[0].name, paths[1].name] and r.n_rejected == 1
    assert (tmp_path / "kept_if" / "0_pick_up_the_red_cube.json").is_file()  # sidecar travels along
    assert (tmp_path / "kept_if" / paths[1].name).read_bytes() == paths[1].read_bytes()

    # PA CSVs recognised from their summary.json; PA = mean of the two judges; failed = unscored
    r = filter_dreams([tmp_path / "s" / f for f in ("if.csv", "pa1.csv", "pa2.csv")], tmp_path / "kept_both",
                      min_if=1, min_pa=1, mode="symlink")
    assert r.kept == [paths[0].name] and (r.n_rejected, r.n_unscored) == (1, 1)
    assert (tmp_path / "kept_both" / paths[0].name).is_symlink()
    manifest = json.loads((tmp_path / "kept_both" / "manifest.json").read_text())
    by_name = {Path(v["video_path"]).name: v for v in manifest["videos"]}
    assert by_name[paths[1].name]["pa"] == 0.5 and by_name[paths[1].name]["decision"] == "rejected"
    assert by_name[paths[2].name]["decision"] == "unscored"

    r = filter_dreams([], tmp_path / "kept_pa", min_if=None, min_pa=0.5,
                      pa_scores=[tmp_path / "s" / "pa1.csv", tmp_path / "s" / "pa2.csv"], mode="hardlink")
    assert sorted(r.kept) == [paths[0].name, paths[1].name]

    with pytest.raises(OutputExistsError):
        filter_dreams(tmp_path / "s" / "if.csv", tmp_path / "kept_if", min_if=1)
    with pytest.raises(DreamgenError, match="PA score CSV"):
        filter_dreams(tmp_path / "s" / "if.csv", tmp_path / "x", min_if=1, min_pa=1)
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DreamgenError, match="not a DreamGenBench score CSV"):
        filter_dreams(tmp_path / "bad.csv", tmp_path / "y", min_if=1)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
