"""IDM v2: actions from states, the state IDM (learns, labels, writes observation.state), the cut vision trunk."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from dreamgen.embodiments import Embodiment
from dreamgen.embodiments.embodiment import ActionFromState
from dreamgen.errors import EmbodimentError
from dreamgen.idm.derive import actions_from_states, describe
from dreamgen.idm.train import IDMTrainConfig, train_idm
from tests.idm_fixture import moving_square_episodes

STATE_TINY = {"kind": "state", "cnn_channels": [8, 16, 16], "cnn_strides": [2, 2, 1], "num_keypoints": 8,
              "hidden_size": 32, "temporal_layers": 1, "temporal_kernel": 3, "clip_length": 8}


def test_toyworld_expert_actions_follow_from_its_states():
    from dreamgen.embodiments import get_embodiment
    from dreamgen.toyworld.env import ToyWorldEnv
    from dreamgen.toyworld.experts import run_expert_episode

    rules = get_embodiment("toyworld").action_from_state
    env = ToyWorldEnv("pick_place", image_size=16)
    try:
        for seed in (0, 1):
            _, states, actions, success, _ = run_expert_episode(env, seed)
            derived = actions_from_states(states, rules)  # row t: from states t and t+1
            assert success and derived.shape == (len(states), 4)
            assert np.allclose(derived[:-1, :3], actions[:, :3], atol=1e-5)
            assert np.array_equal(derived[:-1, 3], actions[:, 3])  # the gripper command, every step
            assert np.allclose(derived[-1, :3], 0) and derived[-1, 3] == derived[-2, 3]  # the last row holds still
    finally:
        env.close()
    assert "(s[t+1] - s[t]) * 20" in describe(rules) and "sign of the change" in describe(rules)


def test_action_from_state_rules_are_validated():
    with pytest.raises(EmbodimentError, match="kind must be one of"):
        ActionFromState(action=[0, 1], state=[0, 1], kind="integral")
    with pytest.raises(EmbodimentError, match="differ in width"):
        ActionFromState(action=[0, 2], state=[0, 1], kind="delta")
    with pytest.raises(EmbodimentError, match="outside the layout"):
        _square_embodiment(rules=[{"action": [0, 2], "state": [1, 3], "kind": "delta"}])
    noisy = np.array([[0.0], [0.05], [0.4], [0.7], [1.0], [0.96], [1.0], [0.6]])  # closure with +-0.05 noise
    grip = ActionFromState(action=[0, 1], state=[0, 1], kind="sign_of_change", threshold=0.5, deadband=0.15)
    assert actions_from_states(noisy, [grip])[:, 0].tolist() == [-1, 1, 1, 1, 1, 1, -1, -1]


def _square_embodiment(rules=None) -> Embodiment:
    stats = {"observation.state": {"mean": [16.0, 16.0], "std": [8.0, 8.0], "min": [0.0, 0.0], "max": [32.0, 32.0],
                                   "q01": [0.0, 0.0], "q99": [32.0, 32.0]}}
    stats["action"] = {"mean": [0.0, 0.0], "std": [1.0, 1.0], "min": [-1.5, -1.5], "max": [1.5, 1.5],
                       "q01": [-1.5, -1.5], "q99": [1.5, 1.5]}
    return Embodiment(
        name="square_state", robot_type="square_state", fps=10, video_keys=["observation.images.cam"],
        modality={"state": {"pos": {"start": 0, "end": 2}}, "action": {"delta": {"start": 0, "end": 2}},
                  "video": {"cam": {"original_key": "observation.images.cam"}}},
        stats=stats, idm_image_size=[32, 32], wm_resolution=[32, 32], wm_num_frames=17,
        action_from_state=rules if rules is not None else [{"action": [0, 2], "state": [0, 2], "kind": "delta"}])


def _with_state(episodes):
    """The square's visible position (its top-left pixel, x then y) as the state of every frame."""
    out = []
    for ep in episodes:
        pos = np.array([np.argwhere(f[..., 0] == 240).min(0)[::-1] for f in ep.frames], np.float32)
        act = np.concatenate([np.diff(pos, axis=0), np.zeros((1, 2), np.float32)])
        out.append(replace(ep, state=pos, action=act))
    return out


@pytest.fixture(scope="module")
def state_idm(tmp_path_factory):
    out = tmp_path_factory.mktemp("state_idm") / "run"
    eps = _with_state(moving_square_episodes(12, length=24, seed=0))
    ckpt = train_idm(IDMTrainConfig(output_dir=out, episodes=eps, embodiment_obj=_square_embodiment(),
                                    model_config=STATE_TINY, batch_size=16, max_steps=300, save_steps=300,
                                    log_steps=50, learning_rate=3e-3, warmup_ratio=0.02, device="cpu",
                                    stats="embodiment"))
    return ckpt


def test_state_idm_learns_positions_and_derives_actions(state_idm):
    from dreamgen.idm.checkpoint import load_idm
    from dreamgen.idm.extract import label_video

    model, emb, _ = load_idm(state_idm)
    assert model.config.kind == "state" and model.config.state_dim == 2
    held = _with_state(moving_square_episodes(4, length=24, seed=7))
    err, base = [], []
    for ep in held:
        actions, states = label_video(model, emb, ep.frames)
        assert actions.shape == (24, 2) and states.shape == (24, 2)
        err.append(np.abs(states - ep.state).mean())
        base.append(np.abs(ep.state - ep.state.mean(0)).mean())
        assert np.allclose(actions[:-1], np.diff(states, axis=0), atol=1e-5)  # actions are state differences
    assert np.mean(err) < 0.35 * np.mean(base), (np.mean(err), np.mean(base))


def test_state_idm_extract_writes_state_and_says_how(state_idm, tmp_path):
    from dreamgen.data import write_video
    from dreamgen.idm.extract import ExtractConfig, extract_actions

    videos = tmp_path / "videos"
    for i, ep in enumerate(_with_state(moving_square_episodes(2, length=20, seed=3))):
        write_video(videos / "Move_the_square" / f"{i}.mp4", ep.frames, fps=10)
    out = tmp_path / "neural"
    res = extract_actions(ExtractConfig(state_idm, videos, out, device="cpu"))
    assert res.out == out and not res.failed

    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    ds = LeRobotDataset("local/neural", root=out)
    item = ds[5]
    assert ds.num_frames == 40 and item["observation.state"].shape == (2,) and item["action"].shape == (2,)
    states = np.stack([ds[i]["observation.state"].numpy() for i in range(20)])
    assert states.std(0).min() > 0.5  # a real, moving state, not zeros
    labels = json.loads((out / "meta" / "dreamgen_provenance.json").read_text())["labels"]
    assert labels["observation.state"].startswith("IDM state head")
    assert "derived from the estimated states" in labels["action"]


def test_vision_trunk_cut_keeps_a_finer_map_and_round_trips(tmp_path):
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.diffusion.configuration_diffusion import DiffusionConfig
    from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy
    from safetensors.torch import save_file

    from dreamgen.policy.vision import VisionSpec, build_adapted, truncate_vision_trunk

    cfg = DiffusionConfig(down_dims=[16, 32], crop_shape=(48, 48), pretrained_backbone_weights=None,
                          use_group_norm=True, n_obs_steps=2, horizon=8, n_action_steps=4, device="cpu",
                          input_features={"observation.images.front": PolicyFeature(FeatureType.VISUAL, (3, 48, 48)),
                                          "observation.state": PolicyFeature(FeatureType.STATE, (4,))},
                          output_features={"action": PolicyFeature(FeatureType.ACTION, (4,))})
    full = DiffusionPolicy(cfg)
    n_full = sum(p.numel() for p in full.parameters())
    assert _encoder(full).backbone(torch.zeros(1, 3, 48, 48)).shape[1:] == (512, 2, 2)  # LeRobot's: stride 32
    cut = DiffusionPolicy(cfg)
    truncate_vision_trunk(cut, 2)
    enc = _encoder(cut)
    fmap = enc.backbone(torch.zeros(1, 3, 48, 48)).shape
    assert fmap[1:] == (128, 6, 6)  # stride 8 instead of 32
    assert sum(p.numel() for p in cut.parameters()) < n_full - 10_000_000
    folder = tmp_path / "pm"
    folder.mkdir()
    save_file({k: v.half() for k, v in cut.state_dict().items()}, str(folder / "model.safetensors"))
    again = build_adapted(DiffusionPolicy, cfg, folder, VisionSpec(2))
    x = torch.rand(2, 3, 48, 48)
    with torch.no_grad():
        assert torch.allclose(enc.eval()(x), _encoder(again).eval()(x), atol=1e-2)


def _encoder(policy):
    enc = policy.diffusion.rgb_encoder
    return enc[0] if isinstance(enc, torch.nn.ModuleList) else enc


def test_flow_labels_are_the_same_alone_or_batched_across_videos():
    from dreamgen.idm.configuration_idm import IDMConfig
    from dreamgen.idm.labelling import label_frames, label_many
    from dreamgen.idm.modeling_idm import IDM
    from tests.idm_fixture import synthetic_embodiment

    torch.manual_seed(0)
    model = IDM(IDMConfig(action_dim=2, action_horizon=4, observation_offsets=[0, 4], image_size=[32, 32],
                          encoder={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                                   "num_attention_heads": 2, "patch_size": 8},
                          hidden_size=32, vl_layers=1, dit_layers=1, num_heads=2, num_inference_steps=3)).eval()
    emb = synthetic_embodiment()
    episodes = moving_square_episodes(3, length=24, seed=1)
    videos = [ep.frames[:n] for ep, n in zip(episodes, (24, 13, 7), strict=True)]  # three lengths
    alone = [label_frames(model, emb, v, batch_size=5, seed=3) for v in videos]
    together = label_many(model, emb, videos, batch_size=16, seed=3)
    for a, b in zip(alone, together, strict=True):
        assert a.shape == b.shape and np.abs(a - b).max() < 1e-4
    assert not np.allclose(alone[0][:7], alone[2])  # different videos, different labels


def _tiny_flow_idm():
    from dreamgen.idm.configuration_idm import IDMConfig
    from dreamgen.idm.modeling_idm import IDM

    torch.manual_seed(0)
    return IDM(IDMConfig(action_dim=2, action_horizon=4, observation_offsets=[0, 4], image_size=[32, 32],
                         encoder={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                                  "num_attention_heads": 2, "patch_size": 8},
                         hidden_size=32, vl_layers=1, dit_layers=1, num_heads=2, num_inference_steps=3)).eval()


def test_stride_covers_every_frame_with_fewer_windows_and_is_bounded():
    from dreamgen.errors import BadFlagError
    from dreamgen.idm.labelling import ensemble_chunks, label_many
    from tests.idm_fixture import synthetic_embodiment

    # hand-computed: chunks starting at 0 and 2 of horizon 3 over 5 frames
    chunks = np.array([[[1.0], [1.0], [1.0]], [[3.0], [3.0], [3.0]]])
    assert ensemble_chunks(chunks, 5, np.array([0, 2])).ravel().tolist() == [1.0, 1.0, 2.0, 3.0, 3.0]
    model, emb = _tiny_flow_idm(), synthetic_embodiment()
    calls = []
    sample = model.sample
    model.sample = lambda **kw: calls.append(len(kw["context"])) or sample(**kw)
    videos = [ep.frames[:n] for ep, n in zip(moving_square_episodes(2, length=24, seed=1), (24, 13), strict=True)]
    full = label_many(model, emb, videos, batch_size=64, seed=3, stride=1)
    n_full = sum(calls)
    calls.clear()
    sparse = label_many(model, emb, videos, batch_size=64, seed=3, stride=4)
    assert sum(calls) == 6 + 4 and n_full == 24 + 13  # ceil(T / stride) windows per video
    for a, b in zip(full, sparse, strict=True):
        assert a.shape == b.shape and np.isfinite(b).all()
    assert not np.allclose(full[0], sparse[0])  # other windows, other ensemble
    for bad in (0, 5):  # beyond the horizon some frames would be covered by no chunk
        with pytest.raises(BadFlagError, match="--stride must be between 1 and"):
            label_many(model, emb, videos, stride=bad)


def test_compiled_labelling_pads_batches_and_gives_the_eager_labels():
    from dreamgen.idm.labelling import compile_for_labelling, label_many
    from tests.idm_fixture import synthetic_embodiment

    emb = synthetic_embodiment()
    videos = [ep.frames[:n] for ep, n in zip(moving_square_episodes(2, length=24, seed=1), (24, 13), strict=True)]
    eager = label_many(_tiny_flow_idm(), emb, videos, batch_size=8, seed=3, stride=2)
    model = _tiny_flow_idm()
    keys = list(model.state_dict())
    compile_for_labelling(model, backend="eager")  # dynamo tracing on CPU in seconds; GPUs use inductor
    assert list(model.state_dict()) == keys  # compiled methods on the instance: no _orig_mod in checkpoint keys
    shapes = []
    encode = model.encode_frames
    model.encode_frames = lambda x: shapes.append(len(x)) or encode(x)
    fast = label_many(model, emb, videos, batch_size=8, seed=3, stride=2)
    assert set(shapes) == {8}  # 37 frames -> 5 full batches, the last one padded: one graph for all
    for a, b in zip(eager, fast, strict=True):
        assert a.shape == b.shape and np.abs(a - b).max() < 1e-4
