"""A policy image trunk pretrained on labelled prior-arm ToyWorld frames (toyworld/keypoints.py, trunk.py)
and loaded into a diffusion policy (policy/vision.py `load_pretrained_trunk`)."""

import json

import numpy as np
import pytest
import torch

from dreamgen.errors import DreamgenError


def test_keypoints_sit_on_their_objects():
    from dreamgen.toyworld.keypoints import KEYPOINT_NAMES, KeypointJob, render_job

    frames, points = render_job(KeypointJob("floating", "pick_place", "default", 1, 7, 96, every=1))
    assert frames.shape[1:] == (96, 96, 3) and points.shape == (len(frames), len(KEYPOINT_NAMES), 2)
    assert ((points > 0) & (points < 96)).all()
    first = frames[0].astype(int)
    colour = {"red cube": 0, "green cube": 1, "blue cube": 2}
    for name, ch in colour.items():  # the labelled pixel shows that object's colour
        r, c = np.round(points[0, KEYPOINT_NAMES.index(name)]).astype(int)
        px = first[r, c]
        assert px[ch] > px[[i for i in range(3) if i != ch]].max() + 40, (name, px)
    grip = points[:, KEYPOINT_NAMES.index("gripper")]
    assert np.abs(grip[-1] - grip[0]).max() > 5  # the gripper keypoint follows the hand


def test_grid_coordinates_round_trip():
    from dreamgen.toyworld.trunk import grid_to_pixels, pixels_to_grid

    pts = np.array([[[3.5, 3.5], [86.5, 86.5], [40.0, 12.25]]], np.float32)
    grid = pixels_to_grid(pts, 90, 12)
    assert np.allclose(grid_to_pixels(grid, 90, 12), pts, atol=1e-4)
    assert np.allclose(pixels_to_grid(np.array([[[3.25, 85.75]]], np.float32), 90, 12), [[[1.0, -1.0]]], atol=1e-5)


def _train(tmp_path, name, steps, layers=2):
    from dreamgen.toyworld.trunk import TrunkConfig, train_trunk

    cfg = TrunkConfig(out=str(tmp_path / name), arm_styles=["floating"], behaviors=["pick_place"],
                      envs=["default", "checker"], episodes=6, held_out_episodes=1, image_size=48, crop=44,
                      layers=layers, steps=steps, batch_size=32, lr=3e-3, device="cpu")
    torch.manual_seed(0)
    return train_trunk(cfg, progress=False)


def test_pretrained_trunk_localises_and_a_policy_starts_from_it(tmp_path):
    from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy
    from safetensors.torch import load_file

    from dreamgen.policy.vision import VisionSpec, adapt_image_encoder, load_pretrained_trunk
    from tests.test_policy_vision import _config

    untrained, trained = _train(tmp_path, "t1", 1), _train(tmp_path, "t300", 300)
    err = lambda info: np.mean(list(info["held_out"]["median_px"].values()))  # noqa: E731
    assert err(trained) < 0.6 * err(untrained), (err(trained), err(untrained))
    assert json.loads((tmp_path / "t300" / "trunk.json").read_text())["recipe"]["arm_styles"] == ["floating"]

    policy = DiffusionPolicy(_config())
    adapt_image_encoder(policy, VisionSpec(2, instruction_film=True))
    prov = load_pretrained_trunk(policy, tmp_path / "t300")
    assert len(prov["sha256"]) == 16
    state = load_file(str(tmp_path / "t300" / "trunk.safetensors"))
    enc = policy.diffusion.rgb_encoder
    enc = enc[0] if isinstance(enc, torch.nn.ModuleList) else enc
    assert torch.equal(enc.backbone[0].weight, state["trunk.0.weight"])
    assert torch.equal(enc.pool.nets.weight[:7], state["head.weight"])  # keypoints seeded by the head

    _train(tmp_path, "l1", 1, layers=1)
    with pytest.raises(DreamgenError, match="does not fit the policy's image trunk"):
        load_pretrained_trunk(policy, tmp_path / "l1")
    with pytest.raises(DreamgenError, match="needs trunk.safetensors"):
        load_pretrained_trunk(policy, tmp_path / "nothing")


def test_pretrain_trunk_refuses_the_target_arm(tmp_path):
    from dreamgen.toyworld.trunk import TrunkConfig, train_trunk

    with pytest.raises(DreamgenError, match="target arm"):
        train_trunk(TrunkConfig(out=str(tmp_path / "x"), arm_styles=["default"]), progress=False)


def test_a_pretrained_trunk_means_groupnorm_and_no_torchvision_weights():
    from types import SimpleNamespace

    from dreamgen.policy.train_setup import _trunk_backbone

    cfg = SimpleNamespace(pretrained_backbone_weights="ResNet18_Weights.IMAGENET1K_V1", use_group_norm=False)
    _trunk_backbone(cfg, ["--policy.horizon=16"])
    assert cfg.pretrained_backbone_weights is None and cfg.use_group_norm is True
    with pytest.raises(DreamgenError, match="drop --policy.pretrained_backbone_weights"):
        _trunk_backbone(cfg, ["--policy.use_group_norm=false"])
    with pytest.raises(DreamgenError, match="applies to the diffusion policy"):
        _trunk_backbone(SimpleNamespace(pretrained_backbone_weights=None), [])


def test_committed_trunk_localises_and_resolves_from_any_directory(tmp_path, monkeypatch):
    """checkpoints/toyworld_trunk (fp16), the toyworld_diffusion preset's trunk: found from another working
    directory, and its keypoints land on the objects of a fresh target-arm frame (held-out: seed 4242)."""
    from safetensors.torch import load_file

    from dreamgen.policy.vision import resolve_trunk_folder, trunk_keypoint_names
    from dreamgen.toyworld.env import ToyWorldEnv
    from dreamgen.toyworld.keypoints import KEYPOINT_NAMES, scene_keypoints
    from dreamgen.toyworld.trunk import _KeypointNet, grid_to_pixels

    monkeypatch.chdir(tmp_path)
    folder = resolve_trunk_folder("checkpoints/toyworld_trunk")
    assert folder.is_absolute() and trunk_keypoint_names("checkpoints/toyworld_trunk") == KEYPOINT_NAMES
    info = json.loads((folder / "trunk.json").read_text())
    net, shape = _KeypointNet.build(info["recipe"]["layers"], 90, len(KEYPOINT_NAMES))
    state = load_file(str(folder / "trunk.safetensors"))
    net[0].load_state_dict({k[6:]: v.float() for k, v in state.items() if k.startswith("trunk.")})
    net[1].nets.load_state_dict({k[5:]: v.float() for k, v in state.items() if k.startswith("head.")})
    env = ToyWorldEnv("pick_place", "default")
    try:
        obs, _ = env.reset(seed=4242)
        truth = scene_keypoints(env, 96, 96)
    finally:
        env.close()
    mean = torch.tensor(info["image_mean"]).view(1, 3, 1, 1)
    std = torch.tensor(info["image_std"]).view(1, 3, 1, 1)
    x = (torch.from_numpy(obs["image"][3:93, 3:93]).permute(2, 0, 1)[None].float() / 255.0 - mean) / std
    with torch.no_grad():
        pix = grid_to_pixels(net.eval()(x)[0].numpy(), 90, shape[1]) + 3
    err = np.linalg.norm(pix - truth, axis=-1)
    assert (err[:4] < 3).all() and err[4] < 3, err  # the four objects and the plate within the 3-px grasp radius


def test_committed_low_data_policy_loads_and_follows_the_instruction():
    """checkpoints/toyworld_policy_n50 (fp16, the experiment's real-only baseline) loads on a CPU with its adapted
    encoder rebuilt from dreamgen_policy.json, and its first action depends on which object the instruction names."""
    from pathlib import Path

    from dreamgen.policy.eval import LeRobotToyWorldPolicy
    from dreamgen.toyworld.env import ToyWorldEnv
    from dreamgen.toyworld.keypoints import KEYPOINT_NAMES

    folder = Path(__file__).resolve().parents[1] / "checkpoints" / "toyworld_policy_n50"
    info = json.loads((folder / "dreamgen_policy.json").read_text())
    assert info["vision_grounded_names"] == list(KEYPOINT_NAMES) and info["vision_freeze_trunk"] is True
    policy = LeRobotToyWorldPolicy.from_checkpoint(str(folder), device="cpu")
    env = ToyWorldEnv("pick_place", "default")
    try:
        obs, _ = env.reset(seed=4242)
    finally:
        env.close()
    actions = {}
    for obj in ("red cube", "blue cube"):
        torch.manual_seed(0)
        policy.reset()
        actions[obj] = policy.act({"image": obs["image"], "state": obs["state"],
                                   "instruction": f"pick up the {obj} and place it on the plate"})
        assert actions[obj].shape == (4,) and np.isfinite(actions[obj]).all()
    assert np.abs(actions["red cube"][:3] - actions["blue cube"][:3]).max() > 0.05
