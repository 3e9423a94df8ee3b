"""convert (generate layout -> <Instruction>/<k>.mp4) and preprocess."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dreamgen.errors import DreamgenError, OutputExistsError
from dreamgen.idm.convert import convert_dreams

ROOT = Path(__file__).resolve().parents[1]


def _dreams(folder: Path) -> Path:
    folder.mkdir()
    (folder / "0_Pick_the_cup.mp4").write_bytes(b"video-0")
    (folder / "1_Pick_the_cup.mp4").write_bytes(b"video-1")
    (folder / "2_Open_the_box.mp4").write_bytes(b"video-2")
    (folder / "2_Open_the_box.json").write_text(json.dumps({"prompt": "Open the box.", "seed": 3}))
    # sidecar wins over the file name: the real text has punctuation the name lost
    (folder / "10_Close_it.mp4").write_bytes(b"video-10")
    (folder / "10_Close_it.json").write_text(json.dumps({"instruction": "Pick the cup"}))
    return folder


def test_convert_collisions_and_sidecars(tmp_path):
    src = _dreams(tmp_path / "gen")
    dst = tmp_path / "step3"
    plan = convert_dreams(src, dst)
    assert len(plan) == 4
    cup = dst / "Pick_the_cup"
    # three dreams of one instruction all survive, in source-index order, never overwriting
    assert sorted(p.name for p in cup.iterdir()) == ["0.mp4", "1.mp4", "2.json", "2.mp4"]
    assert (cup / "0.mp4").read_bytes() == b"video-0"
    assert (cup / "1.mp4").read_bytes() == b"video-1"
    assert (cup / "2.mp4").read_bytes() == b"video-10"
    assert json.loads((cup / "2.json").read_text())["instruction"] == "Pick the cup"
    assert json.loads((dst / "Open_the_box" / "0.json").read_text())["seed"] == 3
    assert not list(tmp_path.glob(".step3*"))  # no temporary left behind


def test_convert_dry_run_and_refusals(tmp_path):
    src = _dreams(tmp_path / "gen")
    dst = tmp_path / "out"
    plan = convert_dreams(src, dst, dry_run=True)
    assert [str(p.dst) for p in plan][:2] == ["Pick_the_cup/0.mp4", "Pick_the_cup/1.mp4"]
    assert not dst.exists()
    dst.mkdir()
    with pytest.raises(OutputExistsError):
        convert_dreams(src, dst)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DreamgenError, match="no .mp4"):
        convert_dreams(empty, tmp_path / "x")
    (empty / "not_numbered.mp4").write_bytes(b"")
    with pytest.raises(DreamgenError, match="<i>_<Instruction>"):
        convert_dreams(empty, tmp_path / "y")


def test_instruction_cannot_escape_output(tmp_path):
    src = tmp_path / "gen"
    src.mkdir()
    (src / "0_x.mp4").write_bytes(b"v")
    (src / "0_x.json").write_text(json.dumps({"prompt": "../../etc/evil"}))
    dst = tmp_path / "out"
    convert_dreams(src, dst)
    files = [p for p in tmp_path.rglob("*.mp4") if p.is_relative_to(dst)]
    assert len(files) == 1 and files[0].parent.parent == dst


def test_convert_directory_script(tmp_path):
    src = _dreams(tmp_path / "gen")
    dst = tmp_path / "step3"
    r = subprocess.run([sys.executable, str(ROOT / "IDM_dump/convert_directory.py"), "--input_dir", str(src),
                        "--output_dir", str(dst)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "Found 4 mp4 files" in r.stdout
    assert (dst / "Pick_the_cup" / "1.mp4").is_file()
    r = subprocess.run([sys.executable, str(ROOT / "IDM_dump/convert_directory.py"), "--input_dir", str(src),
                        "--output_dir", str(dst)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "already exists" in r.stderr


def test_preprocess_resample_crop_split(tmp_path):
    from dreamgen.data import read_video, video_info, write_video
    from dreamgen.idm.preprocess import (
        PreprocessConfig,
        preprocess_videos,
        resample_indices,
        transform_frames,
    )

    assert resample_indices(5, 10, 5).tolist() == [0, 2, 4]
    assert resample_indices(3, 10, 10).tolist() == [0, 1, 2]
    frames = np.zeros((2, 40, 80, 3), np.uint8)
    frames[:, :, :] = 200
    padded = transform_frames(frames, "pad", (32, 32))
    assert padded.shape == (2, 32, 32, 3)
    assert padded[0, 0, 16].max() == 0 and padded[0, 16, 16].min() > 150  # letterbox bars top/bottom
    assert transform_frames(frames, "quad-tl", (16, 16)).shape == (2, 16, 16, 3)
    assert transform_frames(frames, "gr1", (24, 24)).shape == (2, 24, 24, 3)

    src = tmp_path / "src" / "Pick_the_cup"
    write_video(src / "0.mp4", np.random.default_rng(0).integers(0, 255, (40, 48, 64, 3), dtype=np.uint8), 40)
    (src / "0.json").write_text(json.dumps({"prompt": "Pick the cup"}))
    (src / "1.mp4").write_bytes(b"garbage")
    res = preprocess_videos(PreprocessConfig(tmp_path / "src", tmp_path / "dst", "so100", size=(32, 32),
                                             fps=20, max_frames=8))
    # 40 frames at 40 fps -> 20 frames at 20 fps -> parts of 8, 8, 4
    assert sorted(res["written"]) == [f"Pick_the_cup/0-{p}.mp4" for p in range(3)]
    assert len(res["failed"]) == 1 and "1.mp4" in res["failed"][0]
    info = video_info(tmp_path / "dst" / "Pick_the_cup" / "0-2.mp4")
    assert (info.num_frames, info.height, info.width, round(info.fps)) == (4, 32, 32, 20)
    assert read_video(tmp_path / "dst" / "Pick_the_cup" / "0-0.mp4").shape == (8, 32, 32, 3)
    meta = json.loads((tmp_path / "dst" / "Pick_the_cup" / "0-1.json").read_text())
    assert meta["prompt"] == "Pick the cup" and meta["part"] == 1 and meta["fps"] == 20
    with pytest.raises(OutputExistsError):
        preprocess_videos(PreprocessConfig(tmp_path / "src", tmp_path / "dst", "so100"))
