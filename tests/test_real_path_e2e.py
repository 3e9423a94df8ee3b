"""The real-robot path end to end on a GR1-shaped GR00T v2.0 fixture (44-d state/action, the shipped gr1
modality): dataset convert -> idm-train (a state IDM) -> convert -> preprocess -> idm-extract ->
finetune-policy on real + neural, for diffusion and act. Every step through the CLI, at toy sizes."""

import json

import numpy as np
import pandas as pd
import pytest

from dreamgen.data import write_video
from dreamgen.embodiments import get_embodiment
from tests.test_bad_inputs import run_cli

H = W = 48
STATE_IDM = {"kind": "state", "cnn_channels": [8, 16], "cnn_strides": [2, 2], "num_keypoints": 4,
             "hidden_size": 32, "temporal_layers": 1, "temporal_kernel": 3, "clip_length": 6,
             "image_size": [H, W]}


def _frames(n: int, seed: int, h: int = H, w: int = W) -> np.ndarray:
    rng = np.random.default_rng(seed)
    frames = np.full((n, h, w, 3), 30, np.uint8)
    for t in range(n):
        y, x = (np.array([h, w]) * (0.2 + 0.6 * ((t / n + rng.uniform(0, 0.05)) % 1))).astype(int)
        frames[t, y:y + h // 8, x:x + w // 8] = (220, 180, 60)
    return frames


def make_gr1_v2(root, episodes: int = 3, length: int = 16) -> None:
    """A GR00T-flavoured v2.0 dataset in gr1's layout, written in its on-disk form (not via LeRobot)."""
    emb = get_embodiment("gr1")
    cam, d = emb.video_key, emb.action_dim
    (root / "meta").mkdir(parents=True)
    features = {
        cam: {"dtype": "video", "shape": [H, W, 3], "names": ["height", "width", "channel"],
              "video_info": {"video.fps": float(emb.fps), "video.codec": "h264"}},
        "observation.state": {"dtype": "float32", "shape": [emb.state_dim], "names": None},
        "action": {"dtype": "float32", "shape": [d], "names": None},
        "timestamp": {"dtype": "float32", "shape": [1]}, "episode_index": {"dtype": "int64", "shape": [1]},
        "frame_index": {"dtype": "int64", "shape": [1]}, "index": {"dtype": "int64", "shape": [1]},
        "task_index": {"dtype": "int64", "shape": [1]},
    }
    info = {"codebase_version": "v2.0", "robot_type": "fourier_gr1_arms_only", "total_episodes": episodes,
            "total_frames": episodes * length, "total_tasks": 1, "chunks_size": 1000, "fps": int(emb.fps),
            "splits": {"train": f"0:{episodes}"},
            "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
            "video_path": "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4",
            "features": features}
    (root / "meta" / "info.json").write_text(json.dumps(info))
    (root / "meta" / "episodes.jsonl").write_text("".join(
        json.dumps({"episode_index": e, "tasks": ["pick up the apple"], "length": length}) + "\n"
        for e in range(episodes)))
    (root / "meta" / "tasks.jsonl").write_text(json.dumps({"task_index": 0, "task": "pick up the apple"}) + "\n")
    (root / "meta" / "modality.json").write_text(json.dumps(emb.modality))
    rng = np.random.default_rng(0)
    for e in range(episodes):
        state = np.cumsum(rng.normal(scale=0.05, size=(length, emb.state_dim)), 0).astype(np.float32)
        action = np.concatenate([state[1:], state[-1:]])[:, :d].astype(np.float32)
        df = pd.DataFrame({"observation.state": list(state), "action": list(action),
                           "timestamp": np.arange(length, dtype=np.float32) / emb.fps, "episode_index": e,
                           "frame_index": np.arange(length), "index": e * length + np.arange(length),
                           "task_index": 0})
        p = root / "data" / "chunk-000" / f"episode_{e:06d}.parquet"
        p.parent.mkdir(parents=True, exist_ok=True)
        df.to_parquet(p)
        write_video(root / "videos" / "chunk-000" / cam / f"episode_{e:06d}.mp4", _frames(length, e), emb.fps)


@pytest.fixture(scope="module")
def neural(tmp_path_factory):
    """Real (converted v3) and neural (labelled dreams) GR1 datasets, made by the CLI steps."""
    root = tmp_path_factory.mktemp("gr1")
    make_gr1_v2(root / "gr1_v2")
    assert run_cli("dataset", "convert", root / "gr1_v2", root / "real")[0] == 0  # no -e: layout from meta/
    (root / "idm.yaml").write_text(json.dumps(STATE_IDM))
    code, _, err = run_cli("idm-train", "--dataset-path", root / "real", "--out", root / "idm", "-e", "gr1",
                           "--model-config", root / "idm.yaml", "--batch-size", "4", "--steps", "3",
                           "--save-every", "3", "--device", "cpu")
    assert code == 0, err
    dreams = root / "dreams"
    for i in range(2):  # Cosmos-style dreams: 8 fps, 832x480, with sidecars
        write_video(dreams / f"{i}_pick_up_the_apple.mp4", _frames(17, 10 + i, 480, 832), 8)
        (dreams / f"{i}_pick_up_the_apple.json").write_text(json.dumps({"prompt": "pick up the apple", "fps": 8}))
    assert run_cli("convert", dreams, root / "by_instruction")[0] == 0
    code, _, err = run_cli("preprocess", root / "by_instruction", root / "pre", "-e", "gr1", "--size", f"{H}x{W}")
    assert code == 0, err
    code, _, err = run_cli("idm-extract", "--checkpoint", root / "idm", "--videos", root / "pre", "--out",
                           root / "neural", "--device", "cpu", "--embodiment", "gr1")
    assert code == 0, err
    return root


def test_neural_gr1_dataset_has_estimated_state_at_the_robots_fps(neural):
    from dreamgen.data import open_dataset

    ds = open_dataset(neural / "neural")
    info = json.loads((neural / "neural" / "meta" / "info.json").read_text())
    assert info["fps"] == get_embodiment("gr1").fps  # resampled from the dreams' 8 fps, never stamped
    ep = ds.episode(0)
    gr1 = get_embodiment("gr1")
    assert ep.state is not None and ep.state.shape[1] == gr1.state_dim == 44 and ep.action.shape[1] == gr1.action_dim
    assert np.abs(ep.state).sum() > 0  # an estimate, not zeros
    labels = json.loads((neural / "neural" / "meta" / "dreamgen_provenance.json").read_text())["labels"]
    assert labels["observation.state"].startswith("IDM state head")


@pytest.mark.parametrize("policy", ["diffusion", "act"])
def test_policy_trains_on_real_plus_neural(neural, policy):
    extra = ["--policy.crop_shape=[40,40]", "--policy.down_dims=[16,32]", "--policy.horizon=8",
             "--policy.n_action_steps=4"] if policy == "diffusion" else ["--policy.chunk_size=4",
                                                                        "--policy.n_action_steps=4",
                                                                        "--policy.dim_model=32",
                                                                        "--policy.dim_feedforward=64"]
    out = neural / f"pol_{policy}"
    code, stdout, err = run_cli("finetune-policy", "--policy", policy, "-d", neural / "real",
                                "-d", f"{neural / 'neural'}:1.0", "-o", out, "--steps", "2", "--batch-size", "2",
                                "--device", "cpu", "--num-workers", "0", *extra)
    assert code == 0, err[-2000:]
    info = json.loads(next(out.glob("checkpoints/*/pretrained_model/dreamgen_policy.json")).read_text())
    assert info["use_state"] is True and len(info["datasets"]) == 2
