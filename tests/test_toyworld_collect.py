"""`toyworld collect` -> LeRobot v3 round trip, replayed in the simulator; the embodiment's layout and stats."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dreamgen.embodiments import get_embodiment
from dreamgen.errors import DreamgenError, OutputExistsError
from dreamgen.toyworld.collect import CollectConfig, collect
from dreamgen.toyworld.env import ToyWorldEnv


def test_collect_round_trip_and_replay(tmp_path):
    from dreamgen.data import open_dataset

    out = tmp_path / "ds"
    summary = collect(CollectConfig(out=str(out), behaviors=["pick_place", "push"], envs=["checker"], episodes=2,
                                    seed=3, image_size=32), progress=False)
    assert summary["episodes"] == 2 and summary["per_pair"] == {"pick_place/checker": 1, "push/checker": 1}

    ds = open_dataset(out)
    assert ds.num_episodes == 2 and ds.fps == 10
    assert ds.video_keys == ["observation.images.front"] and ds.state_dim == 4 and ds.action_dim == 4
    meta = out / "meta"
    assert json.loads((meta / "modality.json").read_text())["action"]["ee_delta"] == {
        "start": 0, "end": 3, "absolute": False}
    episodes = json.loads((meta / "dreamgen_provenance.json").read_text())["episodes"]

    env = ToyWorldEnv(image_size=32)
    try:
        for i, rec in enumerate(episodes):
            ep = ds.episode(i)
            assert ep.task == rec["instruction"]
            frames = ep.frames()
            assert frames.shape == (ep.length, 32, 32, 3) and frames.dtype == np.uint8
            assert ep.state.shape == (ep.length, 4) and ep.action.shape == (ep.length, 4)
            assert np.all(ep.action[-1, :3] == 0)  # the final frame's stand-still row
            # replaying the recorded actions from the recorded seed reproduces states and (lossy) frames
            obs, info = env.reset(seed=rec["seed"], options={"behavior": rec["behavior"], "env": rec["env"]})
            assert info["instruction"] == ep.task
            states, images, success = [obs["state"]], [obs["image"]], False
            for a in ep.action[:-1]:
                obs, _, _, _, info = env.step(a)
                states.append(obs["state"])
                images.append(obs["image"])
                success = info["success"]
            assert success
            np.testing.assert_allclose(np.stack(states), ep.state, atol=1e-5)
            err = np.abs(np.stack(images).astype(float) - frames.astype(float)).mean()
            assert err < 6.0, err  # h264 at crf 15 on 32x32 frames
    finally:
        env.close()

    with pytest.raises(OutputExistsError):
        collect(CollectConfig(out=str(out), episodes=1, image_size=32), progress=False)
    with pytest.raises(DreamgenError, match="valid:"):
        collect(CollectConfig(out=str(tmp_path / "x"), behaviors=["dance"], episodes=1), progress=False)
    with pytest.raises(DreamgenError, match="--action-noise must be in"):
        collect(CollectConfig(out=str(tmp_path / "y"), episodes=1, action_noise=1.5), progress=False)
    assert not (tmp_path / "y").exists()


def test_toyworld_embodiment():
    emb = get_embodiment("toyworld")
    assert emb.fps == 10 and emb.video_key == "observation.images.front"
    assert emb.state_dim == 4 and emb.action_dim == 4
    assert emb.wm_resolution == [64, 64] and emb.idm_image_size == [96, 96]
    assert emb.idm.observation_offsets == [0, 8] and emb.idm.action_horizon == 8
    # statistics come from expert data: actions span [-1, 1]; the gripper state spans open..closed
    for key in ("observation.state", "action"):
        assert set(emb.stats[key]) >= {"mean", "std", "min", "max", "q01", "q99"}
        assert len(emb.stats[key]["mean"]) == 4
    assert emb.stats["action"]["min"][3] == -1.0 and emb.stats["action"]["max"][3] == 1.0
    assert emb.stats["observation.state"]["min"][3] == 0.0 and emb.stats["observation.state"]["max"][3] == 1.0
    a = np.array([[0.5, -1.0, 0.0, 1.0]], np.float32)
    np.testing.assert_allclose(emb.unnormalize_action(emb.normalize_action(a)), a, atol=1e-5)
