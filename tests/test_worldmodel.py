"""World-model stage on CPU with a tiny Cosmos2 architecture (16x16 pixels, 5 frames, 1 block)."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from dreamgen.data.video import read_video, write_video
from dreamgen.errors import DreamgenError, OutputExistsError
from dreamgen.worldmodel.config import list_presets, load_preset
from dreamgen.worldmodel.cosmos2 import Cosmos2Backbone, make_guardrail, stock_pipeline
from dreamgen.worldmodel.evaluate import evaluate_continuations, psnr, ssim
from dreamgen.worldmodel.finetune import FinetuneConfig, finetune_world_model
from dreamgen.worldmodel.generate import GenerateConfig, generate_videos
from dreamgen.worldmodel.loading import load_world_model

torch.set_num_threads(1)

TINY = dict(
    resolution=[16, 16], num_frames=5, max_sequence_length=16, num_inference_steps=2,
    transformer={"in_channels": 9, "out_channels": 8, "num_layers": 1, "num_attention_heads": 2,
                 "attention_head_dim": 16, "text_embed_dim": 32, "adaln_lora_dim": 8, "max_size": [4, 8, 8],
                 "patch_size": [1, 2, 2], "rope_scale": [1, 1, 1], "concat_padding_mask": True,
                 "extra_pos_embed_type": None},
    vae={"base_dim": 8, "z_dim": 8, "dim_mult": [1, 2, 2], "num_res_blocks": 1, "temperal_downsample": [True, True]},
    text_encoder={"d_model": 32, "d_kv": 8, "d_ff": 32, "num_layers": 1, "num_heads": 2,
                  "relative_attention_num_buckets": 8, "feed_forward_proj": "gated-gelu", "dense_act_fn": "gelu_new",
                  "is_gated_act": True},
    train={"vae_stats_clips": 2, "text_dropout": 0.0, "warmup_steps": 0},
    lora={"rank": 4, "alpha": 4},
)


def tiny_preset(**changes):
    p = load_preset("toy")
    return p.replace(**{**TINY, "train": {**asdict(p.train), **TINY["train"]}, "lora": {**asdict(p.lora), **TINY["lora"]},
                        **changes})


def moving_square(color: int, n: int = 9) -> np.ndarray:
    f = np.full((n, 16, 16, 3), 40, np.uint8)
    for t in range(n):
        f[t, 6:10, t:t + 4, color] = 255
    return f


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("wm")
    vids = root / "vids"
    vids.mkdir()
    for k, name in enumerate(["red", "green"]):
        write_video(vids / f"v{k}.mp4", moving_square(k), 10)
        (vids / f"v{k}.txt").write_text(f"move the {name} cube")
    return one_clip_base(root, "fixed")  # fixed/: every training step sees the same batch


def one_clip_base(root: Path, clips: str = "vids") -> Path:
    """`root/<clips>/`: one 5-frame clip of the red cube and its prompt; `root/base`: a random tiny Cosmos2
    (seed 0). Returns `root`."""
    (root / clips).mkdir()
    write_video(root / clips / "v.mp4", moving_square(0, n=5), 10)
    (root / clips / "v.txt").write_text("move the red cube")
    torch.manual_seed(0)
    Cosmos2Backbone.build(tiny_preset()).save(root / "base")
    return root


def ft(work: Path, out: str, **kw) -> Path:
    cfg = dict(data=str(work / "vids"), output_dir=str(work / out), preset="toy", batch_size=1, save_every=0,
               preset_overrides={k: v for k, v in TINY.items()}, seed=0)
    cfg.update(kw)
    return finetune_world_model(FinetuneConfig(**cfg))


def sample(backbone, seed: int = 3) -> np.ndarray:
    img = moving_square(0)[0]
    return backbone.sample(img, "move the red cube", negative_prompt="", num_frames=5, num_inference_steps=2,
                           guidance_scale=2.0, seed=seed, fps=10)


def fixed_batch_loss(backbone, video: torch.Tensor) -> float:
    with torch.no_grad():
        lat = backbone.encode_video(video)
        emb = backbone.encode_prompts(["move the red cube"])
        losses = [float(backbone.training_loss(lat, emb, generator=torch.Generator().manual_seed(s)))
                  for s in range(8)]
    return float(np.mean(losses))


def test_presets_load():
    assert {"toy", "cosmos_predict2_2b", "cosmos_predict2_14b", "wan2_1_i2v_14b"} <= set(list_presets())
    p = load_preset("cosmos_predict2_2b")
    assert p.backbone == "cosmos2" and p.resolution == [432, 768] and p.num_frames == 93
    assert load_preset("wan2_1_i2v_14b").backbone == "wan_i2v"
    with pytest.raises(DreamgenError, match="unknown world-model preset"):
        load_preset("no_such_preset")
    with pytest.raises(DreamgenError, match="4k\\+1"):
        tiny_preset(num_frames=6)


def test_our_sampler_matches_stock_pipeline(work):
    from PIL import Image

    bb = load_world_model(work / "base")
    img = moving_square(0)[0]
    kw = dict(negative_prompt="", height=16, width=16, num_frames=5, num_inference_steps=3, guidance_scale=3.0,
              fps=24, max_sequence_length=16, output_type="latent")
    stock = stock_pipeline(bb)(image=Image.fromarray(img), prompt="move", generator=torch.Generator().manual_seed(1),
                               **kw).frames
    fused = bb.pipe.generate_video(Image.fromarray(img), "move", generator=torch.Generator().manual_seed(1), **kw)
    plain = bb.pipe.generate_video(Image.fromarray(img), "move", generator=torch.Generator().manual_seed(1),
                                   fused_cfg=False, **kw)
    torch.testing.assert_close(fused.float(), stock.float(), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(plain.float(), stock.float(), atol=1e-4, rtol=1e-4)


def test_lora_lowers_loss_and_reloads_exactly(work):
    video = torch.from_numpy(read_video(work / "fixed" / "v.mp4")[None])
    base = load_world_model(work / "base")
    before = fixed_batch_loss(base, video)
    out = ft(work, "lora", mode="lora", pretrained=str(work / "base"), steps=25, lr=3e-2, data=str(work / "fixed"))
    assert (out / "pytorch_lora_weights.safetensors").is_file()
    assert (out / "loss.csv").is_file() and (out / "loss.png").is_file() and (out / "command.txt").is_file()

    reloaded = load_world_model(out)  # fresh pipeline + pipe.load_lora_weights (diffusers format)
    after = fixed_batch_loss(reloaded, video)
    assert after < 0.9 * before, (before, after)

    # the trained weights themselves (peft names, saved by the final checkpoint) give the same output
    from peft import LoraConfig

    trained = load_world_model(work / "base")
    trained.transformer.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=trained.lora_targets()))
    ckpt = sorted((out / "checkpoints").glob("step_*"))[-1]
    params = dict(trained.transformer.named_parameters())
    for name, value in load_file(str(ckpt / "trainable.safetensors")).items():
        params[name].data.copy_(value)
    np.testing.assert_array_equal(sample(reloaded), sample(trained))
    assert not np.array_equal(sample(reloaded), sample(base))

    # the LoRA loads into the stock-class pipeline with the mixin by its diffusers API too
    fresh = load_world_model(work / "base")
    fresh.pipe.load_lora_weights(str(out))
    np.testing.assert_array_equal(sample(fresh), sample(reloaded))


def test_full_finetune_save_load_and_resume(work):
    out = ft(work, "full", mode="full", pretrained=str(work / "base"), steps=2, save_every=1, lr=1e-3)
    model = load_world_model(out)
    ckpt = sorted((out / "checkpoints").glob("step_*"))[-1]
    saved = load_file(str(ckpt / "trainable.safetensors"))
    state = model.transformer.state_dict()
    assert saved and all(torch.equal(state[k], v) for k, v in saved.items())
    base = load_world_model(work / "base")
    assert not torch.equal(base.transformer.state_dict()["proj_out.weight"], state["proj_out.weight"])

    with pytest.raises(OutputExistsError):
        ft(work, "full", mode="full", pretrained=str(work / "base"), steps=2)
    with pytest.raises(OutputExistsError):  # finished runs are not resumed
        ft(work, "full", mode="full", pretrained=str(work / "base"), steps=3, resume=True)
    # a run that died before its final save continues from its last checkpoint
    (out / "dreamgen_wm.json").unlink()
    shutil.rmtree(out / "model")
    with pytest.raises(DreamgenError, match="train.lr"):  # the resume rule: other settings refuse, named
        ft(work, "full", mode="full", pretrained=str(work / "base"), steps=3, save_every=1, resume=True)
    ft(work, "full", mode="full", pretrained=str(work / "base"), steps=3, save_every=1, lr=1e-3, resume=True)
    rows = (out / "loss.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == [1, 2, 3]
    assert (out / "model" / "model_index.json").is_file()


def test_scratch_toy_end_to_end_and_cli_generate(work):
    from typer.testing import CliRunner

    from dreamgen.cli import app

    out = ft(work, "scratch", mode="full", init="scratch", steps=2, vae_steps=2)
    meta = json.loads((out / "dreamgen_wm.json").read_text())
    assert meta["init"] == "scratch" and meta["backbone"] == "cosmos2"
    stages = {r.split(",")[1] for r in (out / "loss.csv").read_text().splitlines()[1:]}
    assert stages == {"vae", "transformer"}
    vae_cfg = json.loads((out / "model" / "vae" / "config.json").read_text())
    assert vae_cfg["latents_std"] != [1.0] * 8  # statistics measured on the data after stage 1
    assert (out / "model" / "tokenizer").is_dir()  # the in-code tokenizer travels with the model

    inputs = work / "inputs"
    inputs.mkdir()
    Image = pytest.importorskip("PIL.Image")
    Image.fromarray(np.zeros((32, 48, 3), np.uint8)).save(inputs / "a.png")  # wrong size: cropped + resized
    (inputs / "a.txt").write_text("push the cube")
    res = CliRunner().invoke(app, ["generate", str(out), str(inputs), str(work / "dreams_cli"), "--sampling-steps", "2"])
    assert res.exit_code == 0, res.output
    frames = read_video(work / "dreams_cli" / "0_push_the_cube.mp4")
    assert frames.shape == (5, 16, 16, 3)


def test_scratch_needs_full_mode(work):
    with pytest.raises(DreamgenError, match="--mode full"):
        ft(work, "bad", mode="lora", init="scratch")


def test_generate_naming_sidecars_resume_and_sharding(work, caplog):
    bb = load_world_model(work / "base")
    img = work / "frame.png"
    from PIL import Image

    Image.fromarray(moving_square(1)[0]).save(img)
    items = [{"image": str(img), "prompt": "Pick the red cube."},
             {"image": "frame.png", "instruction": "put it ../../in the bowl"},
             {"image": str(work / "vids" / "v0.mp4"), "prompt": "open  drawer"}]
    (work / "list.json").write_text(json.dumps(items))
    base = dict(model=str(work / "base"), inputs=str(work / "list.json"), num_steps=1, videos_per_prompt=2, seed=7)
    a = generate_videos(GenerateConfig(output_dir=str(work / "d"), shard="0/2", **base), backbone=bb)
    b = generate_videos(GenerateConfig(output_dir=str(work / "d"), shard="1/2", **base), backbone=bb)
    names = sorted(p.name for p in a + b)
    assert len(a) == 3 and len(b) == 3 and len(set(names)) == 6
    assert {p.name for p in a}.isdisjoint({p.name for p in b})
    assert "2_put_it_in_the_bowl.mp4" in names and "4_open_drawer.mp4" in names
    assert "0_Pick_the_red_cube.mp4" in names
    assert all(p.resolve().parent == (work / "d").resolve() for p in a + b)
    side = json.loads((work / "d" / "3_put_it_in_the_bowl.json").read_text())
    assert side["instruction"] == "put it ../../in the bowl" and side["seed"] == 10
    for key in ("prompt", "image", "seed", "model", "lora", "steps", "guidance", "fps"):
        assert key in side
    assert side["steps"] == 1
    # resumable: nothing left to do; a lost sidecar means the job is redone
    assert generate_videos(GenerateConfig(output_dir=str(work / "d"), **base), backbone=bb) == []
    (work / "d" / "5_open_drawer.json").unlink()
    again = generate_videos(GenerateConfig(output_dir=str(work / "d"), **base), backbone=bb)
    assert [p.name for p in again] == ["5_open_drawer.mp4"]
    assert not list((work / "d").glob(".*partial*"))
    # same seed -> same video regardless of shard
    one = generate_videos(GenerateConfig(output_dir=str(work / "d1"), limit=2, **base), backbone=bb)
    np.testing.assert_array_equal(read_video(one[1]), read_video(work / "d" / one[1].name))


def test_generate_bad_inputs(work):
    bb = load_world_model(work / "base")
    folder = work / "bad_in"
    folder.mkdir()
    write_video(folder / "x.mp4", moving_square(0), 10)
    with pytest.raises(DreamgenError, match="no prompt file"):
        generate_videos(GenerateConfig(model="toy", inputs=str(folder), output_dir=str(work / "o")), backbone=bb)
    (folder / "x.txt").write_text("   ")
    with pytest.raises(DreamgenError, match="empty instruction"):
        generate_videos(GenerateConfig(model="toy", inputs=str(folder), output_dir=str(work / "o")), backbone=bb)
    (work / "l.json").write_text(json.dumps([{"image": "missing.png", "prompt": "x"}]))
    with pytest.raises(DreamgenError, match="not found"):
        generate_videos(GenerateConfig(model="toy", inputs=str(work / "l.json"), output_dir=str(work / "o")))
    with pytest.raises(DreamgenError, match="has no weights"):
        load_world_model("toy")
    with pytest.raises(DreamgenError, match="shard"):
        generate_videos(GenerateConfig(model="toy", inputs=str(work / "vids"), output_dir=str(work / "o"),
                                       shard="2/2"), backbone=bb)


def test_bad_checkpoints_and_foreign_lora(work, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(work / "base", broken)
    shutil.rmtree(broken / "vae")
    with pytest.raises(DreamgenError, match="missing components \\['vae'\\]"):
        load_world_model(broken)
    # a LoRA for a wider transformer does not load into this one
    other = tiny_preset(transformer={**TINY["transformer"], "attention_head_dim": 24})
    Cosmos2Backbone.build(other).save(tmp_path / "other")
    lora = ft(work, "lora_other", mode="lora", pretrained=str(tmp_path / "other"), steps=1, max_videos=1,
              preset_overrides={**TINY, "transformer": other.transformer})
    with pytest.raises(DreamgenError, match="LoRA layer"):
        load_world_model(work / "base", lora=lora)
    meta = json.loads((lora / "dreamgen_wm.json").read_text())
    meta["backbone"] = "wan_i2v"
    (lora / "dreamgen_wm.json").write_text(json.dumps(meta))
    with pytest.raises(DreamgenError, match="wan_i2v"):
        load_world_model(work / "base", lora=lora)


def test_guardrail_needs_explicit_opt_out():
    assert make_guardrail(False) is None
    try:
        import cosmos_guardrail  # noqa: F401
    except ImportError:
        with pytest.raises(DreamgenError, match="--disable-guardrail"):
            make_guardrail(True)


def test_psnr_ssim_and_baseline():
    rng = np.random.default_rng(0)
    real = moving_square(2)
    assert psnr(real, real) == 100.0 and ssim(real, real) == pytest.approx(1.0)
    noisy = np.clip(real.astype(int) + rng.integers(-20, 21, real.shape), 0, 255).astype(np.uint8)
    assert 20 < psnr(noisy, real) < 40 and ssim(noisy, real) < 0.99
    s = evaluate_continuations([real.copy()], [real])
    assert s["psnr"] == 100.0 and s["baseline_psnr"] < 30 and s["baseline_ssim"] < s["ssim"]


def test_vae_roundtrip_scores_the_autoencoder(work):
    from dreamgen.worldmodel.evaluate import vae_roundtrip

    s = vae_roundtrip(str(work / "base"), str(work / "vids"), num=2, num_frames=5, device="cpu",
                      sheet=work / "rt.png")
    from PIL import Image

    assert Image.open(work / "rt.png").size == (4 * 16 * 2, 2 * 16 * 2)  # 2 clips x (in|out, first|last)
    assert s["num_clips"] == 2 and len(s["per_clip"]) == 2
    assert 0 < s["psnr"] < 100 and -1 <= s["ssim"] <= 1  # an untrained autoencoder: a real, imperfect round trip
    with pytest.raises(DreamgenError, match="1 \\+ 4k"):
        vae_roundtrip(str(work / "base"), str(work / "vids"), num=2, num_frames=6, device="cpu")
