"""`dataset convert` v2.x -> v3 copies the source video streams (no re-encoding) where LeRobot can use them,
and keeps next.reward, next.done and the annotation columns modality.json names (issue #17, item 5)."""

import json

import av
import numpy as np
import pandas as pd
import pytest

from dreamgen.data import convert_v2_to_v3, open_dataset, write_video
from tests.test_data import make_groot_v2, moving_square

CAM = "observation.images.webcam"


def _add_columns(root):
    """GR00T's extra columns: a reward, a done flag and an annotation pointing into tasks.jsonl."""
    info = json.loads((root / "meta" / "info.json").read_text())
    info["features"].update({"next.reward": {"dtype": "float32", "shape": [1]},
                             "next.done": {"dtype": "bool", "shape": [1]},
                             "annotation.human.validity": {"dtype": "int64", "shape": [1]}})
    (root / "meta" / "info.json").write_text(json.dumps(info))
    modality = json.loads((root / "meta" / "modality.json").read_text())
    modality["annotation"] = {"human.task_description": {"original_key": "task_index"}, "human.validity": {}}
    (root / "meta" / "modality.json").write_text(json.dumps(modality))
    with (root / "meta" / "tasks.jsonl").open("a") as f:
        f.write(json.dumps({"task_index": 2, "task": "valid"}) + "\n")
    for p in sorted((root / "data" / "chunk-000").glob("*.parquet")):
        df = pd.read_parquet(p)
        n = len(df)
        df["next.reward"] = np.linspace(0, 1, n, dtype=np.float32)
        df["next.done"] = np.arange(n) == n - 1
        df["annotation.human.validity"] = 2
        df.to_parquet(p)


def _packets(path):
    with av.open(str(path)) as c:
        return [bytes(p) for p in c.demux(c.streams.video[0]) if p.size]


def _mp4s(root):
    return sorted((root / "videos").rglob("*.mp4"))


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    root = tmp_path_factory.mktemp("conv") / "g"
    make_groot_v2(root, n_episodes=3)
    _add_columns(root)
    return root


def test_convert_copies_video_streams_and_keeps_extra_columns(source, tmp_path):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    out = convert_v2_to_v3(source, tmp_path / "v3")
    # the same compressed packets, one after another: nothing was decoded and encoded again (joining the
    # episodes' files only repeats the stream headers in each episode's first packet)
    copied, original = _packets(_mp4s(out)[0]), [p for f in _mp4s(source) for p in _packets(f)]
    assert len(copied) == len(original)
    same = [a == b for a, b in zip(copied, original, strict=True)]
    assert sum(same) == len(original) - 3
    assert all(len(b) < len(a) < len(b) + 64 for a, b, s in zip(copied, original, same, strict=True) if not s)
    src_bytes = sum(f.stat().st_size for f in _mp4s(source))
    assert sum(f.stat().st_size for f in _mp4s(out)) < 1.1 * src_bytes
    prov = json.loads((out / "meta" / "dreamgen_provenance.json").read_text())
    assert prov["videos"] == "copied from the source"
    assert "video.crf" not in json.loads((out / "meta" / "info.json").read_text())["features"][CAM]["info"]

    # LeRobot itself reads the copied videos frame-exactly, with the kept columns
    ds = LeRobotDataset("local/v3", root=out, video_backend="pyav")
    src = open_dataset(source)
    ep1 = src.episode(1)
    first = ds[int(ds.meta.episodes["dataset_from_index"][1])]
    assert np.array_equal((first[CAM].numpy().transpose(1, 2, 0) * 255).round().astype(np.uint8),
                          ep1.frames([0])[0])
    last = ds[int(ds.meta.episodes["dataset_to_index"][1]) - 1]
    assert bool(last["next.done"]) and float(last["next.reward"]) == pytest.approx(1.0)
    # annotation indices still point at the source's task texts
    tasks = ds.meta.tasks
    assert tasks.index[tasks["task_index"] == int(last["annotation.human.validity"])][0] == "valid"
    assert last["task"] == "fold the towel 1"
    assert src.episode(2).extras["next.reward"].shape == (19, 1)


def test_convert_reencodes_when_streams_cannot_be_copied(source, tmp_path):
    odd = tmp_path / "odd"
    import shutil

    shutil.copytree(source, odd)
    # episode 1's video at another frame rate: LeRobot could not join it with the others as it is
    write_video(odd / "videos" / "chunk-000" / CAM / "episode_000001.mp4", moving_square(17, 1), 15)
    out = convert_v2_to_v3(odd, tmp_path / "v3")
    assert "encoded" in json.loads((out / "meta" / "dreamgen_provenance.json").read_text())["videos"]
    assert open_dataset(out).num_frames == 15 + 17 + 19
    forced = convert_v2_to_v3(source, tmp_path / "forced", reencode=True)
    reencoded, original = _packets(_mp4s(forced)[0]), [p for f in _mp4s(source) for p in _packets(f)]
    assert sum(a == b for a, b in zip(reencoded, original, strict=False)) < len(original) // 2
