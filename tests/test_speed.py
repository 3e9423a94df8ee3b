"""Speed levers (dreamgen/worldmodel/speed.py) and their quality gates (gates.py) at toy size on CPU."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from dreamgen.errors import DreamgenError
from dreamgen.worldmodel import speed
from dreamgen.worldmodel.cosmos2 import Cosmos2Backbone
from dreamgen.worldmodel.gates import dream_gate, latent_rel_error, numerics_gate, run_dream_gate, with_speed
from dreamgen.worldmodel.speed import SpeedSettings, settings_from_flags
from tests.test_worldmodel import TINY, moving_square, tiny_preset

torch.set_num_threads(1)
STEPS = 8
KW = dict(negative_prompt="", height=16, width=16, num_frames=9, num_inference_steps=STEPS, guidance_scale=3.0,
          fps=24, max_sequence_length=16, output_type="latent")


@pytest.fixture(scope="module")
def base():
    torch.manual_seed(0)  # 3 blocks: the first-block cache needs a head, a middle and a tail block
    bb = Cosmos2Backbone.build(tiny_preset(transformer={**TINY["transformer"], "num_layers": 3}))
    bb.pipe.set_progress_bar_config(disable=True)
    return bb


def latents(bb, fused: bool = True) -> torch.Tensor:
    img = Image.fromarray(moving_square(0)[0])
    return bb.pipe.generate_video(img, "move the red cube", generator=torch.Generator().manual_seed(1),
                                  fused_cfg=fused, **KW)


def count_block_calls(bb, index: int) -> list[int]:
    calls = [0]
    bb.transformer.transformer_blocks[index].ff.register_forward_hook(lambda *a: calls.__setitem__(0, calls[0] + 1))
    return calls


@pytest.fixture(scope="module")
def stock_latents(base):
    return latents(base)


def test_settings_flags_and_one_line_errors():
    assert settings_from_flags() == SpeedSettings() and SpeedSettings().is_stock
    fast = settings_from_flags(fast=True)
    assert fast == speed.FAST and fast.compile and fast.cache == "fbc" and fast.fp8
    s = settings_from_flags(fast=True, cache="none", fp8=False, compile="none")
    assert s.is_stock
    s = settings_from_flags(cache="taylorseer:4", window="1,2,2", compile=True)
    assert (s.cache, s.threshold, s.window, s.compile) == ("taylorseer", 4, (1, 2, 2), "default")
    assert settings_from_flags(cache="fbc").threshold == speed.CACHE_DEFAULTS["fbc"]
    rec = json.loads(json.dumps(s.record()))  # the sidecar's record is plain JSON
    assert rec["cache_threshold"] == 4 and rec["window"] == [1, 2, 2]
    assert speed.approximating_levers(s) == {"cache": "taylorseer", "cache_threshold": 4, "window": [1, 2, 2]}
    for bad, match in [(dict(cache="lru"), "--cache must be one of"), (dict(cache="fbc:x"), "must be a number"),
                       (dict(cache="fbc:-1"), "positive"), (dict(cache="faster:1.5"), "whole number"),
                       (dict(window="1,2"), "T,H,W"), (dict(compile="turbo"), "--compile-mode must be")]:
        with pytest.raises(DreamgenError, match=match) as e:
            settings_from_flags(**bad)
        assert "\n" not in str(e.value)


def test_compile_is_numerics_only(base, stock_latents):
    # aot_eager: dynamo + AOT autograd tracing, no C++ toolchain; inductor is exercised on the GPU bench
    bb, record = with_speed(base, SpeedSettings(compile="default", compile_backend="aot_eager"))
    assert record["settings"]["compile"] == "default" and not record["skipped"]
    assert bb.transformer is not base.transformer
    gate = numerics_gate(latents(bb), stock_latents)
    assert gate.passed and gate.figures["rel_error"] < 1e-5, gate
    assert numerics_gate(stock_latents + 0.05 * stock_latents.norm() / stock_latents.numel() ** 0.5 * torch.randn_like(
        stock_latents), stock_latents).passed is False


@pytest.mark.parametrize("fused", [True, False])
def test_first_block_cache_skips_blocks_and_stays_close(base, stock_latents, fused):
    ref = stock_latents if fused else latents(base, fused=False)
    results = {}
    for thr in (0.05, 0.5):
        bb, _ = with_speed(base, SpeedSettings(cache="fbc", cache_threshold=thr))
        calls = count_block_calls(bb, 1)
        out = latents(bb, fused)
        results[thr] = (calls[0], latent_rel_error(out, ref))
    passes = STEPS * (1 if fused else 2)
    # a higher threshold skips more of the middle block's calls and moves further from the stock latents
    assert results[0.5][0] < results[0.05][0] < passes, results
    assert 0 < results[0.05][1] < results[0.5][1] < 0.2, results
    again, _ = with_speed(base, SpeedSettings(cache="fbc", cache_threshold=0.05))
    torch.testing.assert_close(latents(again, fused), latents(again, fused))  # state resets between videos


def test_taylorseer_and_fastercache(base, stock_latents):
    bb, _ = with_speed(base, SpeedSettings(cache="taylorseer", cache_threshold=3))
    err_t = latent_rel_error(latents(bb), stock_latents)
    assert 0 < err_t < 0.2
    bb, _ = with_speed(base, SpeedSettings(cache="faster", cache_threshold=3))
    batches = []
    bb.transformer.transformer_blocks[0].register_forward_pre_hook(lambda m, a: batches.append(a[0].shape[0]))
    err_f = latent_rel_error(latents(bb), stock_latents)
    assert 0 < err_f < 0.2
    assert batches.count(1) > 0 and batches.count(2) > 0, batches  # the uncond half is skipped on some steps
    with pytest.raises(DreamgenError, match="--fused-cfg"):
        latents(bb, fused=False)


def test_mag_cache_calibrates_then_skips(base, stock_latents):
    bb, _ = with_speed(base, SpeedSettings())
    ratios = speed.calibrate_mag_ratios(lambda: latents(bb), bb.transformer, STEPS)
    assert len(ratios) == STEPS and all(r > 0 for r in ratios)
    assert latent_rel_error(latents(bb), stock_latents) < 1e-6  # calibration hook removed: exact again
    with pytest.raises(DreamgenError, match="magnitude ratios"):
        with_speed(base, SpeedSettings(cache="mag"))
    bb, _ = with_speed(base, SpeedSettings(cache="mag", cache_threshold=0.5, mag_ratios=tuple(ratios)), STEPS)
    calls = count_block_calls(bb, 1)
    err = latent_rel_error(latents(bb), stock_latents)
    assert calls[0] < STEPS and 0 < err < 0.3, (calls, err)


def test_window_attention(base, stock_latents):
    from dreamgen.worldmodel.speed_attention import window_density

    # a window covering the whole 3x4x4 token grid is exactly full attention
    bb, _ = with_speed(base, SpeedSettings(window=(8, 8, 8)))
    assert latent_rel_error(latents(bb), stock_latents) < 1e-5
    bb, _ = with_speed(base, SpeedSettings(window=(0, 1, 1)))
    assert latent_rel_error(latents(bb), stock_latents) > 1e-4
    assert window_density((12, 16, 16), (1, 4, 4)) < 0.5  # 3k tokens, 128-token blocks: most are skipped


def test_fp8_path(base):
    s = SpeedSettings(fp8=True)
    if not torch.cuda.is_available():
        reason = speed.fp8_unavailable_reason("cpu")
        print(f"fp8 not run: {reason}")
        bb, record = with_speed(base, s)
        assert record["skipped"] == {"fp8": reason} and not any(
            "float8" in str(p.dtype) for p in bb.transformer.parameters())
        return
    pytest.skip("FP8 linears are measured by benchmarks/bench_generate.py on the GPU")  # pragma: no cover


def test_dream_gate_verdicts():
    rng = np.random.default_rng(0)
    vids = [rng.integers(0, 255, (3, 8, 8, 3), dtype=np.uint8) for _ in range(40)]
    near = [np.clip(v.astype(int) + rng.integers(-2, 3, v.shape), 0, 255).astype(np.uint8) for v in vids]
    far = [rng.integers(0, 255, v.shape, dtype=np.uint8) for v in vids]
    ins = ["x"] * 40
    half = iter([True, False] * 80)
    ok = dream_gate(vids, near, ins, judge=lambda v, i: next(half))
    assert ok.passed and ok.figures["psnr_mean"] > 40 and ok.figures["stock_pass_rate"] == 0.5
    assert "PSNR" in dream_gate(vids, far, ins, judge=lambda v, i: True).reason
    judged = dream_gate(vids, near, ins, judge=lambda v, i: v is not None and any(v is s for s in vids))
    assert not judged.passed and "outside" in judged.reason  # stock all pass, fast none
    assert "needs >= 32" in dream_gate(vids[:4], near[:4], ins[:4], judge=lambda v, i: True).reason


def test_run_dream_gate_on_toy_model(base):
    items = [(moving_square(k % 2)[0], "pick up the red cube and place it on the plate") for k in range(2)]
    exact = run_dream_gate(base, SpeedSettings(), items, steps=2, num_frames=5, min_videos=2)
    assert exact.passed and exact.figures["psnr_mean"] == 100.0
    cached = run_dream_gate(base, SpeedSettings(cache="fbc", cache_threshold=5.0), items, steps=4,
                            num_frames=5, min_videos=2)
    assert cached.figures["psnr_mean"] < 100.0 and cached.figures["levers"]["settings"]["cache"] == "fbc"


def test_generate_fast_records_levers_and_cli(tmp_path):
    from typer.testing import CliRunner

    from dreamgen.cli import app
    from dreamgen.jobs import ResumeMismatchError
    from dreamgen.worldmodel.generate import GenerateConfig, generate_videos

    torch.manual_seed(0)
    Cosmos2Backbone.build(tiny_preset(transformer={**TINY["transformer"], "num_layers": 3})).save(tmp_path / "m")
    (tmp_path / "in").mkdir()
    Image.fromarray(moving_square(0)[0]).save(tmp_path / "in" / "f.png")
    (tmp_path / "in" / "f.txt").write_text("move the red cube")
    base = dict(model=str(tmp_path / "m"), inputs=str(tmp_path / "in"), num_steps=2, num_frames=5)
    # --fast minus compile (the CPU has no time for inductor here): first-block cache on, FP8 skipped on CPU
    out = generate_videos(GenerateConfig(output_dir=str(tmp_path / "d"), fast=True, compile_mode="none", **base))
    side = json.loads(out[0].with_suffix(".json").read_text())["speed"]
    assert side["settings"]["cache"] == "fbc" and side["settings"]["fp8"] and side["settings"]["compile"] is None
    assert "fp8" in side["skipped"] and side["fused_cfg"] is True
    # approximating levers are part of the job: a stock rerun into the same folder is refused
    with pytest.raises(ResumeMismatchError, match="approximating_levers"):
        generate_videos(GenerateConfig(output_dir=str(tmp_path / "d"), **base))
    stock = generate_videos(GenerateConfig(output_dir=str(tmp_path / "s"), **base))
    rec = json.loads(stock[0].with_suffix(".json").read_text())["speed"]["settings"]
    assert rec == SpeedSettings().record()
    res = CliRunner().invoke(app, ["generate", "--help"], terminal_width=200)
    assert "--fast" in res.output and "--cache" in res.output and "--fp8" in res.output
    res = CliRunner().invoke(app, ["generate", base["model"], base["inputs"], str(tmp_path / "c"), "--cache", "lru"])
    assert isinstance(res.exception, DreamgenError) and "--cache must be one of" in str(res.exception)
    assert "\n" not in str(res.exception) and not (tmp_path / "c").exists()  # refused before any model loads


def test_wan_i2v_bench_runs_at_toy_size():
    import benchmarks.bench_wan as bench_wan

    rows = bench_wan.main(["--tiny", "--device", "cpu", "--timed-steps", "3", "--steps", "4",
                           "--compile-backend", "aot_eager"])
    assert [r["variant"] for r in rows] == ["stock", "ours+compile", "ours+compile+fp8"]
    assert all(r["s_per_video"] > 0 for r in rows) and rows[0]["rel_error"] == 0.0
    assert all(r["rel_error"] < 1e-2 for r in rows)  # compile passes the numerics gate on Wan too
    assert "fp8" in rows[2]["skipped"] or torch.cuda.is_available()


def test_bench_generate_lever_variants_at_toy_size(tmp_path, capsys):
    import benchmarks.bench_generate as bench

    bench.main(["--preset", "toy", "--device", "cpu", "--height", "16", "--width", "16", "--frames", "5",
                "--steps", "2", "--repeats", "1", "--compile-backend", "aot_eager",
                "--variants", "stock,ours,ours+compile,ours+fbc,ours+faster,ours+fp8,ours+fast"])
    table = capsys.readouterr().out
    for v in ("stock", "ours+compile", "ours+fbc", "ours+faster", "ours+fp8", "ours+fast"):
        assert f"| {v} |" in table
    assert "FP8 linears need" in table or torch.cuda.is_available()


def test_wan_backbone_samples_a_video_from_a_prompt():
    # the stock WanImageToVideoPipeline cleans prompts with ftfy (a NameError when it is missing)
    import benchmarks.bench_wan as bench_wan

    bb = bench_wan.build(True, "cpu", torch.float32)
    image = np.random.default_rng(0).integers(0, 255, (16, 16, 3), dtype=np.uint8)
    video = bb.sample(image, "pick up the red cube", negative_prompt="", num_frames=5, num_inference_steps=2,
                      guidance_scale=1.0, seed=0, fps=10, height=16, width=16)
    assert video.shape == (5, 16, 16, 3) and video.dtype == np.uint8
