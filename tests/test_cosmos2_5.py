"""Cosmos-Predict2.5 backbone on CPU at toy size (16x16 pixels, 5 frames, one block, a 2-layer Qwen2.5-VL):
the sampler against the stock pipeline, the training objective against the scheduler's parameterisation,
LoRA on ToyWorld demos (alpha kept, resume) and the CLI on a diffusers-layout folder."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from benchmarks.bench_generate_cosmos2_5 import TINY as BENCH_TINY
from dreamgen.errors import DreamgenError
from dreamgen.worldmodel.config import load_preset
from dreamgen.worldmodel.cosmos2 import GuardrailDisabled
from dreamgen.worldmodel.cosmos2_5 import Cosmos25Backbone, stock_pipeline
from dreamgen.worldmodel.finetune import FinetuneConfig, finetune_world_model
from dreamgen.worldmodel.loading import LORA_FILE, load_world_model

TOYWORLD = Path(__file__).resolve().parents[1] / "demo_data" / "toyworld_pick_place"
# the benchmark's toy size (one block, a 2-layer Qwen2.5-VL), trained here too
TINY = dict(
    BENCH_TINY,
    train={"vae_stats_clips": 2, "text_dropout": 0.0, "warmup_steps": 0, "cond_latent_frames": [1, 2]},
    lora={"rank": 4, "alpha": 8},  # alpha != rank: a reload at the wrong scale would show
)


def tiny_preset(**changes):
    p = load_preset("cosmos_predict2_5_toy")
    return p.replace(**{**TINY, "train": {**asdict(p.train), **TINY["train"]},
                        "lora": {**asdict(p.lora), **TINY["lora"]}, **changes})


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("wm25")
    torch.manual_seed(0)
    Cosmos25Backbone.build(tiny_preset()).save(root / "base")  # a diffusers-layout folder, as released
    return root


def ft(work: Path, out: str, **kw) -> Path:
    cfg = dict(data=str(TOYWORLD), output_dir=str(work / out), preset="cosmos_predict2_5_toy", batch_size=1,
               save_every=0, preset_overrides=dict(TINY), seed=0, max_videos=2, pretrained=str(work / "base"),
               log_every=1)
    cfg.update(kw)
    return finetune_world_model(FinetuneConfig(**cfg))


def sample(backbone, seed: int = 3) -> np.ndarray:
    image = np.zeros((16, 16, 3), np.uint8)
    image[4:10, 3:9, 0] = 255
    return backbone.sample(image, "pick up the red cube", negative_prompt="", num_frames=5, num_inference_steps=2,
                           guidance_scale=2.0, seed=seed, fps=10)


def test_presets_and_offline_build():
    for name, layers in (("cosmos_predict2_5_2b", 28), ("cosmos_predict2_5_14b", 36)):
        p = load_preset(name)
        text = p.text_encoder["text"]
        assert p.backbone == "cosmos_predict2_5" and p.transformer["num_layers"] == layers
        assert p.transformer["crossattn_proj_in_channels"] == text["num_hidden_layers"] * text["hidden_size"] == 100352
        with pytest.raises(DreamgenError, match="cannot be built offline") as err:
            Cosmos25Backbone.build(p)
        assert "\n" not in str(err.value)
    bad = tiny_preset(transformer={**TINY["transformer"], "crossattn_proj_in_channels": 48})
    with pytest.raises(DreamgenError, match="= 32, got 48"):
        Cosmos25Backbone.build(bad)


def test_sampler_matches_stock_pipeline(work):
    from PIL import Image

    bb = load_world_model(work / "base")
    stock = stock_pipeline(bb)
    frames = [Image.fromarray(np.random.default_rng(k).integers(0, 255, (16, 16, 3), dtype=np.uint8)) for k in range(7)]
    kw = dict(negative_prompt="", height=16, width=16, num_frames=9, num_inference_steps=3, guidance_scale=3.0,
              max_sequence_length=32, output_type="latent")
    for cond in (dict(image=frames[0]), dict(video=frames, num_latent_conditional_frames=2), {}):
        ref = stock(prompt="move", generator=torch.Generator().manual_seed(1), **cond, **kw).frames
        for fused in (True, False):
            ours = bb.pipe.generate_video("move", generator=torch.Generator().manual_seed(1), fused_cfg=fused,
                                          **cond, **kw)
            torch.testing.assert_close(ours, ref, atol=1e-4, rtol=1e-4)
    video = bb.pipe.generate_video("move", image=frames[0], generator=torch.Generator().manual_seed(1),
                                   **{**kw, "output_type": "np"})
    assert video.shape == (9, 16, 16, 3) and video.dtype == np.uint8


def test_training_loss_is_the_schedulers_flow_objective(work):
    bb = load_world_model(work / "base")
    x0 = torch.randn(2, 8, 3, 4, 4)
    seen = {}

    def fake_transformer(**kw):
        seen.update(kw)
        return (torch.full_like(kw["hidden_states"], 0.5),)

    loss = bb.training_loss(x0, torch.zeros(2, 7, 32), generator=torch.Generator().manual_seed(5), model=fake_transformer)
    # the same draws, by hand: number of clean frames, logit-normal level shifted by 5, noise
    g = torch.Generator().manual_seed(5)
    n_cond = [1, 2][int(torch.randint(2, (1,), generator=g))]
    s = torch.sigmoid(torch.randn(2, generator=g))
    sigma = (5 * s / (1 + 4 * s)).view(2, 1, 1, 1, 1)
    eps = torch.randn(x0.shape, generator=g)
    x_t = (1 - sigma) * x0 + sigma * eps
    torch.testing.assert_close(seen["hidden_states"][:, :, n_cond:], x_t[:, :, n_cond:])
    torch.testing.assert_close(seen["hidden_states"][:, :, :n_cond], x0[:, :, :n_cond])  # clean conditioning
    t = seen["timestep"].flatten(1)
    assert torch.allclose(t[:, :n_cond], torch.tensor(1e-4)) and torch.allclose(t[:, n_cond:], sigma.view(2, 1))
    assert seen["condition_mask"][:, 0, :n_cond].eq(1).all() and seen["condition_mask"][:, 0, n_cond:].eq(0).all()
    expected = ((0.5 - (eps - x0))[:, :, n_cond:] ** 2).sum() / x0.numel()
    torch.testing.assert_close(loss, expected)

    # the target eps - x0 is what the pipeline's scheduler turns back into x0 at that noise level
    sched = bb.pipe.scheduler
    sched.set_timesteps(6)
    sched._step_index = 2
    level = sched.sigmas[2]
    x_lvl = (1 - level) * x0 + level * eps
    torch.testing.assert_close(sched.convert_model_output(eps - x0, sample=x_lvl), x0, atol=1e-5, rtol=1e-5)
    assert torch.equal(bb.dropped_text(), torch.zeros_like(bb.encode_prompts([""])))


def test_toyworld_lora_keeps_alpha_reloads_and_resumes(work):
    from peft import LoraConfig

    out = ft(work, "lora", mode="lora", steps=3, lr=3e-2, save_every=1)
    lora = out / LORA_FILE
    with safe_open(str(lora), "pt") as f:
        header = json.loads(f.metadata()["lora_adapter_metadata"])
    assert header["transformer.r"] == 4 and header["transformer.lora_alpha"] == 8
    meta = json.loads((out / "dreamgen_wm.json").read_text())
    assert meta["backbone"] == "cosmos_predict2_5" and meta["mode"] == "lora"

    base = load_world_model(work / "base")
    clip = torch.from_numpy(np.stack([base_clip(k) for k in range(2)]))
    assert base.encode_video(clip).shape == (2, 8, 2, 4, 4)  # 5 frames -> 2 latent frames, 16 px -> 4

    reloaded = load_world_model(out)  # base + pipe.load_lora_weights (diffusers format, alpha from the header)
    ref = load_world_model(work / "base")  # the trained adapter set in memory, never saved in diffusers form
    ref.transformer.add_adapter(LoraConfig(r=4, lora_alpha=8, target_modules=ref.lora_targets()))
    params = dict(ref.transformer.named_parameters())
    ckpt = sorted((out / "checkpoints").glob("step_*"))[-1]
    for name, value in load_file(str(ckpt / "trainable.safetensors")).items():
        params[name].data.copy_(value)
    np.testing.assert_array_equal(sample(reloaded), sample(ref))
    assert not np.array_equal(sample(reloaded), sample(base))
    stock_loaded = load_world_model(work / "base")
    stock_loaded.pipe.load_lora_weights(str(out))  # the stock pipeline's own LoRA API
    np.testing.assert_array_equal(sample(stock_loaded), sample(reloaded))

    # a run that died before its final save continues from its last checkpoint
    (out / "dreamgen_wm.json").unlink()
    lora.unlink()
    ft(work, "lora", mode="lora", steps=4, lr=3e-2, save_every=1, resume=True)
    rows = (out / "loss.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == [1, 2, 3, 4]
    assert lora.is_file()


def base_clip(k: int) -> np.ndarray:
    from dreamgen.worldmodel.data import WorldModelClips

    return WorldModelClips(TOYWORLD, 5, 16, 16, max_items=2).clip(k)


def test_full_finetune_saves_a_loadable_pipeline(work):
    out = ft(work, "full", mode="full", steps=1, lr=1e-3)
    model = load_world_model(out)
    saved = load_file(str(sorted((out / "checkpoints").glob("step_*"))[-1] / "trainable.safetensors"))
    state = model.transformer.state_dict()
    assert saved and all(torch.equal(state[k], v) for k, v in saved.items())
    assert json.loads((out / "model" / "model_index.json").read_text())["_class_name"] == "Cosmos2_5_PredictBasePipeline"  # stock diffusers opens it


def test_cli_finetune_and_generate_on_a_diffusers_folder(work, tmp_path):
    from typer.testing import CliRunner

    from dreamgen.cli import app
    from dreamgen.data.video import read_video

    runner = CliRunner()
    out = tmp_path / "wm"
    res = runner.invoke(app, ["finetune-wm", str(TOYWORLD), str(out), "--preset", "cosmos_predict2_5_2b",
                              "--pretrained", str(work / "base"), "--resolution", "16x16", "--num-frames", "5",
                              "--steps", "2", "--embodiment", "toyworld", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    from PIL import Image

    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(inputs / "a.png")
    (inputs / "a.txt").write_text("pick up the cube")
    res = runner.invoke(app, ["generate", str(out), str(inputs), str(tmp_path / "dreams"), "--num-steps", "2",
                              "--disable-guardrail"])
    assert res.exit_code == 0, res.output
    assert read_video(tmp_path / "dreams" / "0_pick_up_the_cube.mp4").shape == (5, 16, 16, 3)
    sidecar = json.loads((tmp_path / "dreams" / "0_pick_up_the_cube.json").read_text())
    assert sidecar["backbone"] == "cosmos_predict2_5" and sidecar["preset"] == "cosmos_predict2_5_2b"

    # a released-style folder (no dreamgen_wm.json) is recognised by its pipeline class, and its preset
    # wants NVIDIA's guardrail unless the user opts out
    released = tmp_path / "released"
    shutil.copytree(work / "base", released, ignore=shutil.ignore_patterns("dreamgen_wm.json"))
    bare = ["generate", str(released), str(inputs), str(tmp_path / "bare"), "--num-steps", "1",
            "--resolution", "16x16", "--num-frames", "5"]
    res = runner.invoke(app, bare)
    assert isinstance(res.exception, DreamgenError)  # dreamgen.cli.main prints it as one line, exit code 2
    assert "--disable-guardrail" in str(res.exception) and "\n" not in str(res.exception)
    res = runner.invoke(app, [*bare, "--disable-guardrail"])
    assert res.exit_code == 0, res.output
    assert read_video(tmp_path / "bare" / "0_pick_up_the_cube.mp4").shape == (5, 16, 16, 3)
    assert json.loads((tmp_path / "bare" / "0_pick_up_the_cube.json").read_text())["preset"] == "cosmos_predict2_5_2b"


def test_bad_checkpoint_folder_is_one_line(tmp_path):
    (tmp_path / "model_index.json").write_text("{}")
    with pytest.raises(DreamgenError, match="missing components"):
        Cosmos25Backbone.load(tmp_path, tiny_preset(), guardrail=GuardrailDisabled())


def _bench_module():
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_generate_cosmos2_5.py"
    spec = importlib.util.spec_from_file_location("bench_generate_cosmos2_5", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_code_path_at_tiny_size_and_real_shapes_on_meta():
    from diffusers import CosmosTransformer3DModel

    from dreamgen.worldmodel.cosmos2 import _tuples
    from dreamgen.worldmodel.cosmos2_5 import build_text_encoder

    bench = _bench_module()
    results = bench.main(["--tiny", "--repeats", "1", "--variants", "stock,ours-unfused,ours"])
    rows = results[(16, 16)]
    assert set(rows) == {"stock", "ours-unfused", "ours"} and all(sec > 0 for sec, _ in rows.values())
    # the GPU run's model: the released 2B transformer, fed the released text width (built without memory)
    with torch.device("meta"):
        transformer = CosmosTransformer3DModel(**_tuples(load_preset("cosmos_predict2_5_2b").transformer))
        text = build_text_encoder(bench.BENCH_TEXT_ENCODER, 400).config.text_config
    assert 1.8e9 < sum(p.numel() for p in transformer.parameters()) < 2.2e9
    assert text.num_hidden_layers * text.hidden_size == transformer.config.crossattn_proj_in_channels == 100352


def test_scratch_toy_trains_autoencoder_then_transformer(work):
    out = ft(work, "scratch", mode="full", init="scratch", steps=1, vae_steps=1, pretrained=None)
    stages = {r.split(",")[1] for r in (out / "loss.csv").read_text().splitlines()[1:]}
    assert stages == {"vae", "transformer"}
    vae_cfg = json.loads((out / "model" / "vae" / "config.json").read_text())
    assert vae_cfg["latents_std"] != [1.0] * 8  # measured on the data after stage 1
    assert (out / "model" / "tokenizer" / "chat_template.jinja").is_file()  # the in-code template travels
    assert load_world_model(out).encode_prompts(["pick"]).shape == (1, 32, 32)


def test_scheduler_tables_stay_on_the_cpu_inside_a_device_context():
    """bench_generate_cosmos2_5 builds the backbone under `with torch.device("cuda")`; UniPC's set_timesteps
    reads alphas_cumprod with numpy, which failed on the H200 (2026-11-29) when the table was a CUDA tensor."""
    import torch

    from dreamgen.worldmodel.cosmos2_5 import flow_scheduler

    with torch.device("meta"):
        sched = flow_scheduler()
    assert sched.alphas_cumprod.device.type == "cpu"
    sched.set_timesteps(4)
    assert len(sched.timesteps) == 4
