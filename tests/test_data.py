"""Data layer: video I/O, LeRobot v3 write/read, GR00T v2.0 read + convert, stats, bad inputs."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from dreamgen.data import (
    DatasetWriter,
    compute_stats,
    convert_v2_to_v3,
    open_dataset,
    read_video,
    video_info,
    write_video,
)
from dreamgen.embodiments import get_embodiment
from dreamgen.errors import DatasetError, EmbodimentError, OutputExistsError, VideoError

H, W = 48, 64


def moving_square(n, seed=0):
    """Frames with a bright square sliding right: easy to check after lossy coding."""
    frames = np.full((n, H, W, 3), 30, np.uint8)
    for i in range(n):
        x = (4 * i + 8 * seed) % (W - 12)
        frames[i, 10:22, x : x + 12] = (230, 60 + 40 * seed, 20)
    return frames


def test_video_round_trip_and_seek(tmp_path):
    frames = moving_square(40)
    p = write_video(tmp_path / "v.mp4", frames, fps=10)
    info = video_info(p)
    assert (info.num_frames, info.height, info.width) == (40, H, W)
    assert info.fps == pytest.approx(10)
    back = read_video(p)
    assert back.shape == frames.shape
    assert np.abs(back.astype(int) - frames).mean() < 3
    picked = read_video(p, [30, 2, 30])  # seek path, any order, repeats
    assert np.array_equal(picked[0], back[30]) and np.array_equal(picked[1], back[2])
    assert not list(tmp_path.glob(".*partial*"))


def test_video_errors(tmp_path):
    p = write_video(tmp_path / "v.mp4", moving_square(20), fps=10)
    with pytest.raises(VideoError, match="past the end"):
        read_video(p, [25])
    trunc = tmp_path / "trunc.mp4"
    trunc.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 3])
    with pytest.raises(VideoError, match="trunc.mp4"):
        read_video(trunc)
    with pytest.raises(VideoError, match="not found"):
        read_video(tmp_path / "nope.mp4")
    with pytest.raises(VideoError, match="uint8"):
        write_video(tmp_path / "f.mp4", np.zeros((3, 8, 8, 3), np.float32), fps=10)


@pytest.fixture(scope="module")
def v3_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("v3") / "ds"
    emb = get_embodiment("so100")
    rng = np.random.default_rng(0)
    episodes = []
    with DatasetWriter(root, emb, provenance={"source": "test"}) as w:
        for e in range(3):
            n = 20 + 3 * e
            frames, action, state = moving_square(n, e), rng.normal(size=(n, 6)).astype(np.float32), \
                rng.normal(size=(n, 6)).astype(np.float32)
            w.add_episode(frames, action, f"task number {e}", state=state)
            episodes.append((frames, action, state))
    return root, episodes


def test_v3_round_trip(v3_dataset):
    root, episodes = v3_dataset
    ds = open_dataset(root)
    assert ds.version.startswith("v3") and ds.num_episodes == 3 and ds.num_frames == 20 + 23 + 26
    assert (ds.state_dim, ds.action_dim, ds.fps) == (6, 6, 30)
    for i, (frames, action, state) in enumerate(episodes):
        ep = ds.episode(i)
        assert ep.task == f"task number {i}"
        assert np.array_equal(ep.action, action)  # actions exact
        assert np.array_equal(ep.state, state)
        got = ep.frames()
        assert got.shape == frames.shape
        assert np.abs(got.astype(int) - frames).mean() < 4  # codec tolerance
    modality = json.loads((root / "meta" / "modality.json").read_text())
    assert modality["action"]["main_gripper"] == {"start": 5, "end": 6, "absolute": False}
    assert modality["video"] == {"webcam": {"original_key": "observation.images.webcam"}}
    prov = json.loads((root / "meta" / "dreamgen_provenance.json").read_text())
    assert prov["source"] == "test" and prov["embodiment"] == "so100"


def test_v3_loads_with_lerobot_itself(v3_dataset):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    root, episodes = v3_dataset
    ds = LeRobotDataset("local/ds", root=root, video_backend="pyav")
    assert len(ds) == 69 and ds.meta.total_episodes == 3
    item = ds[20]  # first frame of episode 1
    assert item["task"] == "task number 1"
    assert np.allclose(item["action"].numpy(), episodes[1][1][0])
    assert tuple(item["observation.images.webcam"].shape) == (3, H, W)


def test_windows(v3_dataset):
    root, episodes = v3_dataset
    ds = open_dataset(root)
    wins = ds.windows([0, 8], 8)
    assert len(wins) == sum(n - 8 for n in (20, 23, 26))
    ep = ds.episode(1)
    frames, chunk = ds.window(ep, 5, [0, 8], 8)
    assert frames.shape == (2, H, W, 3)
    assert np.array_equal(chunk, episodes[1][1][5:13])


def test_stats(v3_dataset):
    root, episodes = v3_dataset
    stats = compute_stats(open_dataset(root))
    allact = np.concatenate([a for _, a, _ in episodes])
    assert np.allclose(stats["action"]["mean"], allact.mean(0), atol=1e-6)
    assert np.allclose(stats["action"]["q99"], np.quantile(allact, 0.99, axis=0), atol=1e-6)
    assert np.allclose(stats["observation.state"]["min"], np.concatenate([s for *_, s in episodes]).min(0))


def test_writer_refuses_existing_and_cleans_up_on_failure(tmp_path, v3_dataset):
    emb = get_embodiment("so100")
    with pytest.raises(OutputExistsError):
        DatasetWriter(v3_dataset[0], emb)
    out = tmp_path / "never"
    with pytest.raises(EmbodimentError, match="action width 5"):
        with DatasetWriter(out, emb) as w:
            w.add_episode(moving_square(10), np.zeros((10, 6), np.float32), "ok")
            w.add_episode(moving_square(10), np.zeros((10, 5), np.float32), "bad")
    assert not out.exists() and not list(tmp_path.glob(".never*"))
    with pytest.raises(DatasetError, match="NaN"):
        with DatasetWriter(out, emb) as w:
            w.add_episode(moving_square(4), np.full((4, 6), np.nan, np.float32), "bad")
    assert not out.exists()


# ----- GR00T-flavoured v2.0, built by hand in its exact on-disk form (not via lerobot) -------------
def make_groot_v2(root, n_episodes=2, with_ghost_camera=True):
    emb = get_embodiment("so100")
    (root / "meta").mkdir(parents=True)
    features = {
        "observation.images.webcam": {"dtype": "video", "shape": [H, W, 3], "names": ["height", "width", "channel"],
                                      "video_info": {"video.fps": 30.0, "video.codec": "h264"}},
        "observation.state": {"dtype": "float32", "shape": [6], "names": None},
        "action": {"dtype": "float32", "shape": [6], "names": None},
        "timestamp": {"dtype": "float32", "shape": [1]},
        "episode_index": {"dtype": "int64", "shape": [1]},
        "frame_index": {"dtype": "int64", "shape": [1]},
        "index": {"dtype": "int64", "shape": [1]},
        "task_index": {"dtype": "int64", "shape": [1]},
        "annotation.human.task_description": {"dtype": "int64", "shape": [1]},
    }
    if with_ghost_camera:  # listed in info.json but never exported (seen in real GR00T v2.0 data)
        features["observation.images.wrist"] = {"dtype": "video", "shape": [H, W, 3]}
    lengths = [15 + 2 * e for e in range(n_episodes)]
    info = {
        "codebase_version": "v2.0", "robot_type": "so100", "total_episodes": n_episodes,
        "total_frames": sum(lengths), "total_tasks": n_episodes, "chunks_size": 1000, "fps": 30,
        "splits": {"train": f"0:{n_episodes}"},
        "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
        "video_path": "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4",
        "features": features,
    }
    (root / "meta" / "info.json").write_text(json.dumps(info, indent=4))
    (root / "meta" / "episodes.jsonl").write_text("".join(
        json.dumps({"episode_index": e, "tasks": [f"fold the towel {e}"], "length": n}) + "\n"
        for e, n in enumerate(lengths)))
    (root / "meta" / "tasks.jsonl").write_text("".join(
        json.dumps({"task_index": e, "task": f"fold the towel {e}"}) + "\n" for e in range(n_episodes)))
    (root / "meta" / "modality.json").write_text(json.dumps(emb.modality))
    rng = np.random.default_rng(1)
    data = []
    start = 0
    for e, n in enumerate(lengths):
        action = rng.normal(size=(n, 6)).astype(np.float32)
        state = rng.normal(size=(n, 6)).astype(np.float32)
        df = pd.DataFrame({
            "observation.state": list(state), "action": list(action),
            "timestamp": np.arange(n, dtype=np.float32) / 30, "episode_index": e, "frame_index": np.arange(n),
            "index": start + np.arange(n), "task_index": e, "annotation.human.task_description": e,
        })
        p = root / "data" / "chunk-000" / f"episode_{e:06d}.parquet"
        p.parent.mkdir(parents=True, exist_ok=True)
        df.to_parquet(p)
        frames = moving_square(n, e)
        write_video(root / "videos" / "chunk-000" / "observation.images.webcam" / f"episode_{e:06d}.mp4", frames, 30)
        data.append((frames, action, state))
        start += n
    return data


def test_read_groot_v20(tmp_path):
    data = make_groot_v2(tmp_path / "g")
    ds = open_dataset(tmp_path / "g")
    assert ds.version == "v2.0" and ds.num_episodes == 2
    assert ds.video_keys == ["observation.images.webcam"]  # the ghost camera is dropped
    ep = ds.episode(1)
    assert ep.task == "fold the towel 1" and ep.length == 17
    assert np.array_equal(ep.action, data[1][1]) and np.array_equal(ep.state, data[1][2])
    assert np.abs(ep.frames([0, 16]).astype(int) - data[1][0][[0, 16]]).mean() < 4
    assert ds.modality["state"]["main_gripper"]["end"] == 6


def test_convert_v2_to_v3_keeps_modality(tmp_path):
    data = make_groot_v2(tmp_path / "g")
    out = convert_v2_to_v3(tmp_path / "g", tmp_path / "v3")
    ds = open_dataset(out)
    assert ds.version.startswith("v3") and ds.num_episodes == 2 and ds.num_frames == 15 + 17
    assert json.loads((out / "meta" / "modality.json").read_text()) == \
        json.loads((tmp_path / "g" / "meta" / "modality.json").read_text())
    assert np.array_equal(ds.episode(0).action, data[0][1])
    assert ds.episode(1).task == "fold the towel 1"
    with pytest.raises(OutputExistsError):
        convert_v2_to_v3(tmp_path / "g", out)


def test_bad_datasets_name_file_and_problem(tmp_path):
    with pytest.raises(DatasetError, match="info.json: missing"):
        open_dataset(tmp_path)
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta" / "info.json").write_text("{oops")
    with pytest.raises(DatasetError, match="info.json: invalid JSON"):
        open_dataset(tmp_path)
    (tmp_path / "meta" / "info.json").write_text(json.dumps({"fps": 30, "features": {}}))
    with pytest.raises(DatasetError, match="no 'codebase_version'"):
        open_dataset(tmp_path)
    g = tmp_path / "g"
    make_groot_v2(g, n_episodes=1)
    (g / "meta" / "modality.json").write_text("[1, 2]")
    with pytest.raises(DatasetError, match="modality.json: invalid modality.json"):
        open_dataset(g)
    g2 = tmp_path / "g2"
    make_groot_v2(g2, n_episodes=1)
    with pytest.raises(DatasetError, match="action width 6 disagrees with embodiment 'gr1'"):
        convert_v2_to_v3(g2, tmp_path / "out", embodiment="gr1")
    assert not (tmp_path / "out").exists()


def test_cli_info_convert_and_truncated_video(tmp_path):
    make_groot_v2(tmp_path / "g")
    run = lambda *a: subprocess.run([sys.executable, "-m", "dreamgen.cli", *map(str, a)],  # noqa: E731
                                    capture_output=True, text=True)
    r = run("dataset", "info", tmp_path / "g", "--check-videos")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["episodes"] == 2
    vid = tmp_path / "g" / "videos" / "chunk-000" / "observation.images.webcam" / "episode_000001.mp4"
    vid.write_bytes(vid.read_bytes()[:200])
    r = run("dataset", "info", tmp_path / "g", "--check-videos")
    assert r.returncode == 2 and "episode_000001.mp4" in r.stderr
    r = run("dataset", "convert", tmp_path / "g", tmp_path / "g")
    assert r.returncode == 2 and "already exists" in r.stderr
    r = run("embodiments", "stats", "--dataset", tmp_path / "g", "--embodiment", "so100", "--out", tmp_path / "s.json")
    assert r.returncode == 0, r.stderr
    stats = json.loads((tmp_path / "s.json").read_text())
    assert len(stats["action"]["q01"]) == 6 and len(stats["observation.state"]["std"]) == 6
