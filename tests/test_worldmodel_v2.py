"""World model v2 (issue #15) on CPU: the foreground-weighted autoencoder loss, precomputed latents, the
toy_v2 preset, time budgets, several training sources and the per-frame / foreground metrics."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from dreamgen.data.video import write_video
from dreamgen.worldmodel.config import load_preset
from dreamgen.worldmodel.cosmos2 import Cosmos2Backbone
from dreamgen.worldmodel.data import ConcatClips, WorldModelClips
from dreamgen.worldmodel.evaluate import evaluate_continuations, vae_roundtrip
from dreamgen.worldmodel.foreground import (
    foreground_mask,
    foreground_mask_uint8,
    masked_psnr,
    weighted_recon_loss,
)
from dreamgen.worldmodel.latents import LatentBank
from tests.test_worldmodel import TINY, ft, moving_square, tiny_preset

torch.set_num_threads(1)


def _x(video: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(video).permute(3, 0, 1, 2)[None].float() / 127.5 - 1.0


def test_foreground_mask_is_the_moving_square():
    video = moving_square(0)  # grey background, a 4x4 square moving right one pixel per frame
    mask = foreground_mask_uint8(video)
    want = np.zeros(mask.shape, bool)  # no pixel is covered in 5 of 9 frames: the median frame is the background
    for t in range(len(video)):
        want[t, 6:10, t:t + 4] = True  # where the square is (differs from the median) ...
        want[t, 6:10, 0:4] = True  # ... and where it started (differs from frame 0)
    assert (mask == want).all()
    assert mask[:, :6].sum() == 0 and mask[:, 10:].sum() == 0  # rows without the square: background
    assert foreground_mask(_x(video)).shape == (1, 1, len(video), 16, 16)


def test_weighted_loss_makes_a_vanished_object_expensive():
    video = moving_square(0)
    x = _x(video)
    assert torch.allclose(weighted_recon_loss(x + 0.1, x, 0.0), torch.tensor(0.1 + 0.01))
    # an even error everywhere costs the same with or without weights (normalised by the weight sum)
    assert torch.allclose(weighted_recon_loss(x + 0.1, x, 10.0), torch.tensor(0.1 + 0.01), atol=1e-6)
    vanished = video.copy()
    for t in range(len(video)):
        vanished[t, 6:10, t:t + 4] = 40  # the square drawn as background
    blurred = np.clip(video.astype(int) + np.where(foreground_mask_uint8(video)[..., None], 0, 30), 0, 255)
    v_plain, b_plain = (float(weighted_recon_loss(_x(r.astype(np.uint8)), x, 0.0)) for r in (vanished, blurred))
    v_fg, b_fg = (float(weighted_recon_loss(_x(r.astype(np.uint8)), x, 10.0)) for r in (vanished, blurred))
    assert v_plain < b_plain  # unweighted, losing the object is the cheaper mistake ...
    assert v_fg > b_fg  # ... weighted, it is the expensive one
    mask = foreground_mask_uint8(video)
    assert masked_psnr(vanished, video, mask) < 10 < 100 == masked_psnr(vanished, video, ~mask)
    assert masked_psnr(video, video, np.zeros_like(mask)) is None


def test_toy_v2_preset_fits_toyworld_v2():
    from dreamgen.embodiments import get_embodiment
    from dreamgen.toyworld.env import IMAGE_SIZE

    p = load_preset("toy_v2")
    t, tr = p.transformer, p.train
    assert p.resolution == [IMAGE_SIZE, IMAGE_SIZE] and p.num_frames == get_embodiment("toyworld").wm_num_frames
    assert (p.num_frames - 1) // 4 + 1 == 10  # latent frames
    spatial = 2 ** (len(p.vae["dim_mult"]) - 1) * t["patch_size"][1]
    assert all(r % spatial == 0 for r in p.resolution)  # 96 / (4 x 2) = 12 tokens a side
    assert t["in_channels"] == p.vae["z_dim"] + 1 and t["out_channels"] == p.vae["z_dim"]
    assert tr.vae_clip_frames is None and tr.cond_latent_frames == [1] and not tr.sigma_scale_by_frames
    assert tr.precompute_latents and tr.gradient_checkpointing is False and tr.vae_fg_weight > 0
    from diffusers import CosmosTransformer3DModel

    from dreamgen.worldmodel.cosmos2 import _tuples

    n = sum(q.numel() for q in CosmosTransformer3DModel(**_tuples(t)).parameters())
    assert 8e6 < n < 11e6


@pytest.fixture(scope="module")
def two_sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("wm2")
    for name, colours in (("a", [0, 1]), ("b", [2])):
        (root / name).mkdir()
        for k, c in enumerate(colours):
            write_video(root / name / f"v{k}.mp4", moving_square(c), 10)
            (root / name / f"v{k}.txt").write_text(f"move cube {name}{k}")
    return root


def test_concat_clips_and_precomputed_latents_equal_in_loop_encoding(two_sources):
    parts = [WorldModelClips(two_sources / n, 5, 16, 16) for n in ("a", "b")]
    clips = ConcatClips(parts)
    assert len(clips) == 3 and clips.prompt(2) == "move cube b0"
    assert np.array_equal(clips.clip(2, 1), parts[1].clip(0, 1))
    torch.manual_seed(0)
    backbone = Cosmos2Backbone.build(tiny_preset())
    bank = LatentBank.encode(backbone, clips, batch_size=2)  # two encode batches
    with torch.no_grad():
        for i in range(3):
            direct = backbone.encode_video(torch.from_numpy(clips.clip(i, 0))[None])
            assert torch.allclose(bank.latents[i:i + 1], direct, atol=1e-5)
    lat, prompts = bank.sample(np.random.default_rng(0), 4)
    assert lat.shape == (4, *bank.latents.shape[1:]) and set(prompts) <= {clips.prompt(i) for i in range(3)}


def test_precomputed_training_never_encodes_in_the_loop_and_time_budget(two_sources, monkeypatch, tmp_path):
    calls = []
    real_encode = Cosmos2Backbone.encode_video
    monkeypatch.setattr(Cosmos2Backbone, "encode_video", lambda self, v: calls.append(len(v)) or real_encode(self, v))
    train = {**TINY["train"], "precompute_latents": True, "gradient_checkpointing": False, "cond_latent_frames": [1],
             "sigma_scale_by_frames": False, "vae_fg_weight": 5.0}
    work = two_sources
    out = ft(work, "pre", data=str(work / "a"), extra_data=[str(work / "b")], output_dir=str(tmp_path / "pre"),
             mode="full", init="scratch", steps=3, vae_steps=1, preset_overrides={**TINY, "train": train})
    assert calls == [3]  # one batch: every clip once, none per step
    meta = json.loads((out / "dreamgen_wm.json").read_text())
    assert meta["steps"] == 3 and meta["preset"]["train"]["precompute_latents"]
    calls.clear()
    out = ft(work, "budget", data=str(work / "a"), output_dir=str(tmp_path / "budget"), mode="full", init="scratch", steps=50,
             vae_steps=50, vae_minutes=1e-9, minutes=1e-9, preset_overrides={**TINY, "train": train})
    rows = [r.split(",") for r in (out / "loss.csv").read_text().splitlines()[1:]]
    assert [(r[0], r[1]) for r in rows] == [("1", "vae"), ("1", "transformer")]  # each phase stopped after a step
    assert json.loads((out / "dreamgen_wm.json").read_text())["steps"] == 1


def test_continuation_and_roundtrip_report_foreground_and_frame_index(two_sources, tmp_path):
    real = moving_square(1)
    copy = np.repeat(real[:1], len(real), axis=0)
    s = evaluate_continuations([real.copy(), copy], [real, real])
    assert len(s["per_frame_psnr"]) == len(real) - 1 and s["per_frame_baseline_psnr"][0] < 100
    assert s["per_video"][0]["fg_psnr"] == 100.0 and s["per_video"][1]["fg_psnr"] < s["per_video"][1]["psnr"]
    assert s["per_video"][1]["fg_psnr"] == pytest.approx(s["per_video"][1]["baseline_fg_psnr"])
    torch.manual_seed(0)
    Cosmos2Backbone.build(tiny_preset()).save(tmp_path / "m")
    r = vae_roundtrip(str(tmp_path / "m"), str(two_sources / "a"), num=2, device="cpu")
    assert r["num_frames"] == 5 and len(r["per_frame_psnr"]) == 5  # the model's clip length, not 9
    assert r["min_frame_psnr"] == min(r["per_frame_psnr"]) and math.isfinite(r["fg_psnr"])
