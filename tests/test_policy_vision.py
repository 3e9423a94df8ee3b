"""Instruction FiLM on the diffusion policy's image trunk (dreamgen/policy/vision.py)."""

import numpy as np
import pytest
import torch

from dreamgen.errors import DreamgenError


def _config(env_state: bool = True, cams: int = 1, separate: bool = True):
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.diffusion.configuration_diffusion import DiffusionConfig

    feats = {f"observation.images.c{i}": PolicyFeature(FeatureType.VISUAL, (3, 48, 48)) for i in range(cams)}
    feats["observation.state"] = PolicyFeature(FeatureType.STATE, (4,))
    if env_state:
        feats["observation.environment_state"] = PolicyFeature(FeatureType.ENV, (16,))
    return DiffusionConfig(down_dims=[16, 32], crop_shape=(48, 48), pretrained_backbone_weights=None,
                           use_group_norm=True, use_separate_rgb_encoder_per_camera=separate, n_obs_steps=2, horizon=8, n_action_steps=4, device="cpu",
                           input_features=feats, output_features={"action": PolicyFeature(FeatureType.ACTION, (4,))})


def _batch(instr: torch.Tensor, cams: int = 1) -> dict:
    g = torch.Generator().manual_seed(0)
    b = instr.shape[0]
    images = torch.rand(b, 2, cams, 3, 48, 48, generator=g)
    return {"observation.images": images, **{f"observation.images.c{i}": images[:, :, i] for i in range(cams)},
            "observation.state": torch.rand(b, 2, 4, generator=g),
            "observation.environment_state": instr[:, None].expand(b, 2, -1)}


def _films(policy):
    enc = policy.diffusion.rgb_encoder
    return [e.backbone[-1] for e in (enc if isinstance(enc, torch.nn.ModuleList) else [enc])]


def _cond(policy, batch):
    with torch.no_grad():
        return policy.diffusion._prepare_global_conditioning(batch)


@pytest.mark.parametrize("cams,separate", [(1, True), (2, True), (2, False)])
def test_film_starts_as_identity_then_makes_keypoints_depend_on_the_instruction(cams, separate):
    from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy

    from dreamgen.policy.vision import VisionSpec, adapt_image_encoder

    torch.manual_seed(0)
    plain = DiffusionPolicy(_config(cams=cams, separate=separate))
    adapt_image_encoder(plain, VisionSpec(2))
    film = DiffusionPolicy(_config(cams=cams, separate=separate))
    adapt_image_encoder(film, VisionSpec(2, instruction_film=True))
    missing = film.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert missing and all(".proj." in k for k in missing)  # only the FiLM projection is new
    instr = torch.eye(16)[:3]
    batch = _batch(instr, cams)
    plain.eval(), film.eval()
    assert torch.allclose(_cond(plain, batch), _cond(film, batch), atol=1e-6)  # zero-initialised: identity
    for m in _films(film):
        torch.nn.init.normal_(m.proj.weight, std=1.0)
    same_images = {**batch, "observation.images": batch["observation.images"][:1].expand(3, -1, -1, -1, -1, -1)}
    cond = _cond(film, same_images)
    assert not torch.allclose(cond[0], cond[1], atol=1e-3)  # same frames, other instruction -> other features
    assert all(m.instruction is None for m in _films(film))  # cleared after the call


def test_film_trains_saves_and_reloads(tmp_path):
    from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy
    from safetensors.torch import save_file

    from dreamgen.policy.vision import VisionSpec, adapt_image_encoder, build_adapted

    torch.manual_seed(0)
    spec = VisionSpec(2, instruction_film=True)
    policy = DiffusionPolicy(_config())
    adapt_image_encoder(policy, spec)
    batch = {**_batch(torch.rand(4, 16)), "action": torch.rand(4, 8, 4), "action_is_pad": torch.zeros(4, 8, dtype=bool)}
    loss, _ = policy(batch)
    loss.backward()
    proj = _films(policy)[0].proj
    assert proj.weight.grad is not None and proj.weight.grad.abs().sum() > 0  # the instruction path learns
    with torch.no_grad():
        proj.weight.normal_()
    folder = tmp_path / "pm"
    folder.mkdir()
    save_file(policy.state_dict(), str(folder / "model.safetensors"))
    again = build_adapted(DiffusionPolicy, _config(), folder, spec)
    policy.eval(), again.eval()
    assert torch.allclose(_cond(policy, batch), _cond(again, batch), atol=1e-5)
    with pytest.raises(DreamgenError, match="image encoder"):
        build_adapted(DiffusionPolicy, _config(), folder, VisionSpec(2))  # FiLM weights, plain spec: refused


def test_film_needs_the_instruction_feature_and_spec_from_info():
    from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy

    from dreamgen.policy.vision import VisionSpec, adapt_image_encoder

    with pytest.raises(DreamgenError, match="task_conditioning bow"):
        adapt_image_encoder(DiffusionPolicy(_config(env_state=False)), VisionSpec(2, instruction_film=True))
    assert VisionSpec.from_info({}).is_stock
    assert VisionSpec.from_info({"vision_trunk_layers": 2, "vision_instruction_film": True}) == VisionSpec(2, True)
    with pytest.raises(DreamgenError, match="vision_trunk_layers"):
        VisionSpec(7)


def test_attended_keypoints_start_as_means_and_follow_the_instruction():
    from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy

    from dreamgen.policy.vision import VisionSpec, adapt_image_encoder, freeze_trunk

    torch.manual_seed(0)
    policy = DiffusionPolicy(_config())
    adapt_image_encoder(policy, VisionSpec(2, instruction_film=True, attended_keypoints=2))
    enc = policy.diffusion.rgb_encoder[0]
    feats = torch.randn(3, enc.pool.pool._in_c, enc.pool.pool._in_h, enc.pool.pool._in_w)
    enc.pool.instruction = torch.eye(16)[:3]
    kp = enc.pool(feats)
    plain = enc.pool.pool(feats)
    assert kp.shape == plain.shape
    assert torch.allclose(kp[:, :-2], plain[:, :-2])
    assert torch.allclose(kp[:, -2:], plain.mean(1, keepdim=True).expand(-1, 2, -1), atol=1e-6)  # zero init
    with torch.no_grad():  # instruction i picks keypoint i in both slots
        w = enc.pool.attend.weight.view(2, plain.shape[1], 16)
        for i in range(3):
            w[:, i, i] = 50.0
    kp = enc.pool(feats)
    assert torch.allclose(kp[:, -1], plain[torch.arange(3), torch.arange(3)], atol=1e-4)
    enc.pool.instruction = None
    with pytest.raises(DreamgenError, match="without an instruction"):
        enc.pool(feats)

    policy.eval()  # the conditioning feeds the instruction to the FiLM and the attended pool alike
    cond = _cond(policy, _batch(torch.eye(16)[:3]))
    assert cond.shape[0] == 3 and torch.isfinite(cond).all()

    frozen = freeze_trunk(policy)
    assert frozen == sum(p.numel() for m in list(enc.backbone)[:-1] for p in m.parameters())
    assert all(p.requires_grad for p in enc.backbone[-1].parameters())  # the FiLM still trains
    assert VisionSpec.from_info({"vision_trunk_layers": 2, "vision_attended_keypoints": 2}).attended_keypoints == 2
    with pytest.raises(DreamgenError, match="0-8"):
        VisionSpec(2, attended_keypoints=9)


def test_freezing_needs_a_pretrained_trunk(tmp_path):
    from dreamgen.policy.config import PolicyTrainConfig

    with pytest.raises(DreamgenError, match="vision_freeze_trunk needs vision_pretrained_trunk"):
        PolicyTrainConfig(policy="diffusion", datasets=[tmp_path], output_dir=tmp_path / "o", vision_freeze_trunk=True)


def test_grounded_slot_is_the_keypoint_the_instruction_names():
    from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy

    from dreamgen.policy.task_encoding import bow_feature
    from dreamgen.policy.vision import VisionSpec, adapt_image_encoder

    names = ("red cube", "green cube", "blue cube", "yellow cylinder", "plate", "bin", "gripper")
    from lerobot.configs.types import FeatureType, PolicyFeature

    torch.manual_seed(0)
    cfg = _config()  # the instruction feature at its real width (16 buckets would collide)
    cfg.input_features["observation.environment_state"] = PolicyFeature(FeatureType.ENV, (128,))
    policy = DiffusionPolicy(cfg)
    adapt_image_encoder(policy, VisionSpec(2, True, attended_keypoints=2, grounded_names=names))
    pool = policy.diffusion.rgb_encoder[0].pool
    feats = torch.randn(4, pool.pool._in_c, pool.pool._in_h, pool.pool._in_w)
    texts = ["pick up the green cube and place it on the plate", "put the blue cube in the bin",
             "pick up the yellow cylinder and place it on the plate", "push the red cube to the left"]
    pool.instruction = torch.from_numpy(np.stack([bow_feature(t, 128) for t in texts]))
    kp, plain = pool(feats), pool.pool(feats)
    named = [1, 2, 3, 0]
    assert torch.allclose(kp[:, -2], plain[torch.arange(4), named], atol=0.05)  # the first attended slot
    assert torch.allclose(kp[:, -1], plain.mean(1), atol=1e-5)  # the learned slot starts as the mean
    assert VisionSpec.from_info({"vision_attended_keypoints": 2, "vision_grounded_names": list(names)}) == \
        VisionSpec(None, False, 2, names)
    with pytest.raises(DreamgenError, match="needs vision_attended_keypoints"):
        VisionSpec(2, grounded_names=names)


def test_grounding_needs_a_pretrained_trunk(tmp_path):
    from dreamgen.policy.config import PolicyTrainConfig

    with pytest.raises(DreamgenError, match="vision_grounded_keypoints needs vision_pretrained_trunk"):
        PolicyTrainConfig(policy="diffusion", datasets=[tmp_path], output_dir=tmp_path / "o",
                          vision_grounded_keypoints=True)
