"""Bad inputs and faults across every subcommand: each ends in one `error:` line naming the flag or file,
exit code 2, no traceback, and nothing that looks like a finished result.

The classes (issue "no wrong result ever looks finished"): 1 resume with other settings, 2 NaN/inf,
3 numbers at the boundary, 4 no traceback for user errors, 5 safe offline loading, 6 layouts,
7 nothing left behind, 8 readiness. The CLI runs in-process (`dreamgen.cli.main`), so the table is fast.
"""

import io
import json
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import numpy as np
import pandas as pd
import pytest
import torch

from dreamgen.data import convert_v2_to_v3, write_video
from tests.test_data import make_groot_v2, moving_square
from tests.test_idm import TINY


def run_cli(*args) -> tuple[int, str, str]:
    from dreamgen.cli import main

    out, err = io.StringIO(), io.StringIO()
    with mock.patch.object(sys, "argv", ["dreamgen", *map(str, args)]), redirect_stdout(out), redirect_stderr(err):
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return code, out.getvalue(), err.getvalue()


class FakeJudge:
    kind, prompt_style = "openai", "gpt4o"

    def __init__(self, model="gpt-4o", answer="Yes"):
        self.model, self.answer = model, answer

    def describe(self):
        return {}

    def ask(self, video_path, question, task, instruction=""):
        return self.answer


def fake_backbone():
    preset = SimpleNamespace(resolution=[32, 32], num_frames=5, fps=10, num_inference_steps=2, guidance_scale=1.0,
                             negative_prompt="", name="fake", guardrail=False)
    sample = lambda image, prompt, num_frames, height, width, **kw: np.zeros((num_frames, height, width, 3),  # noqa: E731
                                                                              np.uint8)
    return SimpleNamespace(preset=preset, kind="fake", sample=sample, transformer=torch.nn.Linear(1, 1),
                           pipe=SimpleNamespace(set_progress_bar_config=lambda **kw: None),
                           stock_call=lambda *a, **kw: None)


def tiny_idm(folder, seed, step=None, max_steps=None, action_dim=2, emb=None, dataset=None):
    from dreamgen.idm.checkpoint import save_checkpoint
    from dreamgen.idm.configuration_idm import IDMConfig
    from dreamgen.idm.modeling_idm import IDM
    from tests.idm_fixture import synthetic_embodiment

    torch.manual_seed(seed)
    cfg = IDMConfig.from_dict({**TINY, "action_dim": action_dim, "action_horizon": 4, "observation_offsets": [0, 4],
                               "image_size": [32, 32]})
    state = {} if step is None else {"step": step, "train_config": {"max_steps": max_steps, "dataset_path": dataset}}
    training = None if step is None else {"optimizer": {}, "scheduler": {}, "step": step}
    return save_checkpoint(folder, IDM(cfg), emb or synthetic_embodiment(), state, training)


@pytest.fixture(scope="module")
def w(tmp_path_factory):
    """Shared, read-only inputs: datasets, dreams, IDM checkpoints, a generate input list, job records."""
    from dreamgen.worldmodel.generate import GenerateConfig, generate_videos
    from dreamgenbench.bench import run_bench

    root = tmp_path_factory.mktemp("w")
    make_groot_v2(root / "g", n_episodes=2)
    v3 = convert_v2_to_v3(root / "g", root / "v3")
    dreams = root / "dreams"
    for i, text in enumerate(["pick the cube", "open the drawer"]):
        write_video(dreams / f"{i}_{text.replace(' ', '_')}.mp4", moving_square(12, i), fps=10)
    from PIL import Image

    Image.fromarray(moving_square(1)[0]).save(root / "first.png")
    (root / "inputs.json").write_text(json.dumps([{"image": "first.png", "prompt": "pick the cube"}]))
    generate_videos(GenerateConfig(model="fake-model", inputs=str(root / "inputs.json"), output_dir=str(root / "gen")),
                    backbone=fake_backbone())
    run_bench([dreams], root / "bench", FakeJudge())
    ckpt_a, ckpt_b = tiny_idm(root / "idm_a", 0), tiny_idm(root / "idm_b", 1)
    from dreamgen.idm.extract import ExtractConfig, extract_actions

    extract_actions(ExtractConfig(ckpt_a, dreams, root / "neural", device="cpu", shard=(0, 2)))  # interrupted
    return SimpleNamespace(root=root, g=root / "g", v3=v3, dreams=dreams, ckpt_a=ckpt_a, ckpt_b=ckpt_b,
                           inputs=root / "inputs.json", gen=root / "gen", bench=root / "bench")


# ----- builders of damaged inputs (each writes into the case's own tmp folder) ---------------------------------
def poison(parquet: Path, row: int, value: float) -> None:
    df = pd.read_parquet(parquet)
    col = [np.asarray(v, np.float32) for v in df["action"]]
    col[row] = np.array([value, 0, 0, 0, 0, 0], np.float32)
    df["action"] = col
    df.to_parquet(parquet)


def nan_v2(t: Path) -> Path:
    make_groot_v2(t / "nan", n_episodes=1)
    poison(t / "nan" / "data" / "chunk-000" / "episode_000000.parquet", 3, np.nan)
    return t / "nan"


def nan_v3(t: Path, w) -> Path:
    import shutil

    shutil.copytree(w.v3, t / "nan3")
    poison(next((t / "nan3" / "data").rglob("*.parquet")), 5, np.inf)
    return t / "nan3"


def v3_missing(t: Path, w, what: str) -> Path:
    import shutil

    shutil.copytree(w.v3, t / "m3")
    next((t / "m3" / what).rglob("*.mp4" if what == "videos" else "*.parquet")).unlink()
    return t / "m3"


def modality(t: Path, groups: dict) -> Path:
    make_groot_v2(t / "lay", n_episodes=1)
    m = json.loads((t / "lay" / "meta" / "modality.json").read_text())
    m["action"] = groups
    (t / "lay" / "meta" / "modality.json").write_text(json.dumps(m))
    return t / "lay"


def empty_v2(t: Path) -> Path:
    make_groot_v2(t / "empty", n_episodes=1)
    (t / "empty" / "meta" / "episodes.jsonl").write_text("")
    return t / "empty"


def pickle_ckpt(t: Path, w) -> Path:
    import shutil

    shutil.copytree(w.ckpt_a, t / "ck")
    torch.save({"w": torch.zeros(2)}, t / "ck" / "model.safetensors")  # a pickle wearing a safetensors name
    return t / "ck"


def bin_world_model(t: Path) -> Path:
    (t / "wm" / "transformer").mkdir(parents=True)
    (t / "wm" / "model_index.json").write_text(json.dumps({"_class_name": "WanImageToVideoPipeline"}))
    torch.save({"w": torch.zeros(2)}, t / "wm" / "transformer" / "diffusion_pytorch_model.bin")
    return t / "wm"


def resumable_idm_run(t: Path, w, dataset: Path, malicious: bool = False, record: bool = True,
                      legacy: bool = False) -> Path:
    """An idm-train output folder as a first run on `dataset` would leave it."""
    from dreamgen.embodiments import get_embodiment
    from dreamgen.jobs import check_job

    out = t / "run"
    emb = get_embodiment("so100")
    emb = emb.with_stats({**emb.stats, "action": {k: [0.0 if k != "q99" else 1.0] * 6 for k in
                                                  ("mean", "std", "min", "max", "q01", "q99")}})
    tiny_idm(out / "checkpoint-2", 0, step=2, max_steps=4, action_dim=6, emb=emb, dataset=str(dataset) if legacy else None)
    if malicious:
        import os

        (out / "checkpoint-2" / "training_state.pt").unlink()
        torch.save({"step": 2, "payload": SimpleNamespace(run=os.system)}, out / "checkpoint-2" / "training_state.pt")
    if record:
        check_job(out, "idm-train", {"dataset_path": str(dataset.resolve()), "embodiment": "new_embodiment",
                                     "model_config": None, "data_config": None, "val_fraction": 0.1})
    return out


def ro_parent(t: Path):
    """Pretend `t/ro` is read-only (tests run as root, where chmod does not bite)."""
    import os

    (t / "ro").mkdir()
    real = os.access
    return mock.patch("dreamgen.io.os.access", lambda p, m: False if Path(p) == t / "ro" else real(p, m))


def nonfinite_gen(t, w):
    return ["generate", "fake-model", w.inputs, t / "o", "--fps", "inf"]


# (case id, class, args builder (tmp, w) -> argv, expected code, text the error line must contain)
CASES = [
    # 3: numbers at the boundary
    ("gen-steps-0", 3, lambda t, w: ["generate", "m", w.inputs, t / "o", "--sampling-steps", "0"], "--sampling-steps must be >= 1"),
    ("gen-res-0x0", 3, lambda t, w: ["generate", "m", w.inputs, t / "o", "--resolution", "0x0"], "--resolution"),
    ("gen-fps-neg", 3, lambda t, w: ["generate", "m", w.inputs, t / "o", "--fps", "-5"], "--fps must be in (0, 1000]"),
    ("gen-vpp-0", 3, lambda t, w: ["generate", "m", w.inputs, t / "o", "--videos-per-prompt", "0"], "--videos-per-prompt"),
    ("gen-shard", 3, lambda t, w: ["generate", "m", w.inputs, t / "o", "--shard", "3/2"], "--shard"),
    ("gen-limit-0", 3, lambda t, w: ["generate", "m", w.inputs, t / "o", "--limit", "0"], "--limit must be >= 1"),
    ("wm-steps-0", 3, lambda t, w: ["finetune-wm", w.v3, t / "o", "--steps", "0"], "--steps must be >= 1"),
    ("wm-batch-0", 3, lambda t, w: ["finetune-wm", w.v3, t / "o", "--batch-size", "0"], "--batch-size"),
    ("wm-res", 3, lambda t, w: ["finetune-wm", w.v3, t / "o", "--resolution", "-16x32"], "--resolution"),
    ("train-batch-0", 3, lambda t, w: ["idm-train", "--dataset", w.v3, "--out", t / "o", "--batch-size", "0"], "--batch-size"),
    ("train-steps-neg", 3, lambda t, w: ["idm-train", "--dataset", w.v3, "--out", t / "o", "--steps", "-1"], "--steps must be >= 1"),
    ("train-val-1", 3, lambda t, w: ["idm-train", "--dataset", w.v3, "--out", t / "o", "--val-fraction", "1"],
     "--val-fraction must be in [0, 1)"),
    ("extract-steps-0", 3, lambda t, w: ["idm-extract", "--checkpoint", w.ckpt_a, "--videos", w.dreams, "--out",
                                         t / "o", "--sampling-steps", "0"], "--sampling-steps must be >= 1"),
    ("extract-batch-0", 3, lambda t, w: ["idm-extract", "--checkpoint", w.ckpt_a, "--videos", w.dreams, "--out",
                                         t / "o", "--batch-size", "0"], "--batch-size"),
    ("bench-timeout-0", 3, lambda t, w: ["bench", w.dreams, "--out", t / "o", "--timeout", "0"], "--timeout"),
    ("bench-retries-neg", 3, lambda t, w: ["bench", w.dreams, "--out", t / "o", "--max-retries", "-1"], "--max-retries"),
    ("policy-batch-0", 3, lambda t, w: ["finetune-policy", "--dataset", w.v3, "--out", t / "o", "--policy", "act",
                                        "--batch-size", "0"], "--batch-size must be >= 1"),
    ("collect-episodes-0", 3, lambda t, w: ["toyworld", "collect", "--out", t / "o", "--episodes", "0"], "--episodes"),
    ("preprocess-max-frames", 3, lambda t, w: ["preprocess", w.dreams, t / "o", "--max-frames", "1"], "--max-frames"),
    ("eval-policy-episodes", 3, lambda t, w: ["eval-policy", t / "nope", "--episodes", "0"], "--episodes"),
    # 2: NaN / inf never passes
    ("gen-guidance-nan", 2, lambda t, w: ["generate", "m", w.inputs, t / "o", "--guidance", "nan"], "--guidance"),
    ("gen-fps-inf", 2, nonfinite_gen, "--fps"),
    ("filter-min-if-nan", 2, lambda t, w: ["filter", "--scores", w.bench / "x.csv", "--out", t / "o", "--min-if", "nan"],
     "--min-if"),
    ("train-lr-inf", 2, lambda t, w: ["idm-train", "--dataset", w.v3, "--out", t / "o", "--lr", "inf"], "--learning-rate"),
    ("stats-nan-v2", 2, lambda t, w: ["embodiments", "stats", "--dataset", nan_v2(t), "--embodiment", "so100", "--out",
                                      t / "o.json"], "episode_000000.parquet: episode 0: column 'action' has NaN/inf"),
    ("train-nan-v2", 2, lambda t, w: ["idm-train", "--dataset", nan_v2(t), "--out", t / "o"], "column 'action'"),
    ("policy-nan-v3", 2, lambda t, w: ["finetune-policy", "--dataset", nan_v3(t, w), "--out", t / "o", "--policy", "act"],
     "episode 0, column 'action' has NaN/inf"),
    ("convert-nan-v2", 2, lambda t, w: ["dataset", "convert", nan_v2(t), t / "o"], "column 'action'"),
    # 4: user errors are one line, never a traceback
    ("train-zero-episodes", 4, lambda t, w: ["idm-train", "--dataset", empty_v2(t), "--out", t / "o"], "no episodes"),
    ("stats-zero-episodes", 4, lambda t, w: ["embodiments", "stats", "--dataset", empty_v2(t), "--embodiment", "so100",
                                             "--out", t / "o.json"], "no episodes"),
    ("extract-pickle-safetensors", 4, lambda t, w: ["idm-extract", "--checkpoint", pickle_ckpt(t, w), "--videos",
                                                    w.dreams, "--out", t / "o"], "not a safetensors file"),
    ("train-resume-malicious-state", 4, lambda t, w: ["idm-train", "--dataset", w.v3, "--out",
                                                      resumable_idm_run(t, w, w.v3, malicious=True), "--resume",
                                                      "--steps", "4", "--device", "cpu"],
     "training_state.pt: not a loadable training-state file"),
    ("convert-ro-parent", 4, lambda t, w: ["dataset", "convert", w.g, t / "ro" / "o"], "not writable"),
    ("idm-eval-episodes-text", 4, lambda t, w: ["idm-eval", "--checkpoint", w.ckpt_a, "--episodes", "0,x"],
     "--episodes must be comma-separated"),
    ("dataset-missing", 4, lambda t, w: ["dataset", "info", t / "nope"], "dataset folder not found"),
    # 5: loading is safe and offline
    ("gen-bin-weights", 5, lambda t, w: ["generate", bin_world_model(t), w.inputs, t / "o"],
     "diffusion_pytorch_model.bin: pickle-format weights are never loaded"),
    ("v3-missing-data-file", 5, lambda t, w: ["dataset", "info", v3_missing(t, w, "data")], "missing"),
    ("v3-missing-video-file", 5, lambda t, w: ["dataset", "info", v3_missing(t, w, "videos")], ".mp4: missing"),
    # 6: layouts are checked; an output never lies inside its input
    ("modality-overlap", 6, lambda t, w: ["dataset", "info", modality(t, {"a": {"start": 0, "end": 4},
                                                                          "b": {"start": 3, "end": 6}})], "overlap"),
    ("modality-out-of-range", 6, lambda t, w: ["dataset", "info", modality(t, {"a": {"start": 0, "end": 9}})],
     "indexes 0..9 but action has width 6"),
    ("convert-out-inside-in", 6, lambda t, w: ["convert", w.dreams, w.dreams / "sub"], "inside the input"),
    ("extract-out-inside-videos", 6, lambda t, w: ["idm-extract", "--checkpoint", w.ckpt_a, "--videos", w.dreams,
                                                   "--out", w.dreams / "ds"], "inside the input --videos"),
    ("dataset-convert-inside", 6, lambda t, w: ["dataset", "convert", w.g, w.g / "v3"], "inside the input"),
    # 1: resume never reuses results made with other settings
    ("gen-rerun-seed", 1, lambda t, w: ["generate", "fake-model", w.inputs, w.gen, "--seed", "7"], "seed=0"),
    ("gen-rerun-steps", 1, lambda t, w: ["generate", "fake-model", w.inputs, w.gen, "--sampling-steps", "9"], "num_steps="),
    ("gen-rerun-guidance", 1, lambda t, w: ["generate", "fake-model", w.inputs, w.gen, "--guidance", "3"], "guidance="),
    ("bench-rerun-model", 1, lambda t, w: ["bench", w.dreams, "--if", "--judge", "openai", "--model", "gpt-4o-mini",
                                           "--api-key", "sk-test", "--out", w.bench], "model=\"gpt-4o\""),
    ("bench-rerun-zeroshot", 1, lambda t, w: ["bench", w.dreams, "--if", "--judge", "openai", "--model", "gpt-4o",
                                              "--api-key", "sk-test", "--zeroshot", "--out", w.bench], "zeroshot="),
    ("extract-rerun-checkpoint", 1, lambda t, w: ["idm-extract", "--checkpoint", w.ckpt_b, "--videos", w.dreams,
                                                  "--out", w.root / "neural", "--device", "cpu"], "checkpoint="),
    ("extract-rerun-steps", 1, lambda t, w: ["idm-extract", "--checkpoint", w.ckpt_a, "--videos", w.dreams,
                                             "--out", w.root / "neural", "--sampling-steps", "2"], "steps=null"),
    ("train-resume-other-data", 1, lambda t, w: ["idm-train", "--dataset", w.v3, "--out",
                                                 resumable_idm_run(t, w, w.g), "--resume"], "dataset_path="),
    ("train-resume-no-record", 1, lambda t, w: ["idm-train", "--dataset", w.v3, "--out",
                                                resumable_idm_run(t, w, w.v3, record=False), "--resume"],
     "no record of the settings"),
    ("train-resume-legacy-other-data", 1, lambda t, w: ["idm-train", "--dataset", w.v3, "--out", resumable_idm_run(
        t, w, w.g, record=False, legacy=True), "--resume"], "/g\", this run has dataset_path="),
    ("dataset-convert-rerun-other", 1, lambda t, w: ["dataset", "convert", w.g, w.v3, "--embodiment", "so100"],
     "embodiment=null"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case, w, tmp_path):
    name, _, build, expected = case
    with ro_parent(tmp_path):
        code, out, err = run_cli(*build(tmp_path, w))
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert code == 2, (name, code, err[-2000:])
    assert len(errors) == 1 and expected in errors[0], err[-2000:]
    assert "Traceback" not in err
    assert not (tmp_path / "o").exists() and not (tmp_path / "o.json").exists()
    assert len(list(w.gen.glob("*.mp4"))) == 1  # the first run's dream, untouched
    assert not (w.root / "neural").exists()  # the interrupted extraction was never assembled


def test_table_covers_every_class():
    assert len(CASES) >= 40
    assert {c[1] for c in CASES} >= set(range(1, 7))  # 7 and 8 have their own tests below


# ----- 1 / 7: resume continues with equal settings; --overwrite and interrupted writers start clean --------------
def test_same_settings_continue_and_overwrite_starts_fresh(w, tmp_path):
    import shutil

    from dreamgen.worldmodel.generate import GenerateConfig, generate_videos

    code, _, err = run_cli("generate", "fake-model", w.inputs, w.gen)  # all done: nothing to load, nothing to do
    assert code == 0, err
    out = tmp_path / "gen"
    shutil.copytree(w.gen, out)
    next(out.glob("0_*.mp4")).unlink()  # as if killed while writing it: a rerun finishes it, cleaning up
    (out / ".0_pick_the_cube.999999.partial.mp4").write_bytes(b"half")
    cfg = GenerateConfig(model="fake-model", inputs=str(w.inputs), output_dir=str(out))
    assert len(generate_videos(cfg, backbone=fake_backbone())) == 1
    assert not list(out.glob(".*partial*"))
    cfg = GenerateConfig(model="fake-model", inputs=str(w.inputs), output_dir=str(out), seed=5, overwrite=True)
    assert len(generate_videos(cfg, backbone=fake_backbone())) == 1
    assert json.loads(next(out.glob("0_*.json")).read_text())["seed"] == 5


def test_interrupted_writer_partial_is_removed_and_convert_restarts(w, tmp_path):
    stale = tmp_path / ".v3.partial-999999"
    (stale / "meta").mkdir(parents=True)
    (stale / "meta" / "info.json").write_text("{}")
    code, _, err = run_cli("dataset", "convert", w.g, tmp_path / "v3")
    assert code == 0, err
    assert not stale.exists() and (tmp_path / "v3" / "meta" / "modality.json").is_file()
    code, _, err = run_cli("dataset", "convert", w.g, tmp_path / "v3")  # finished: refused, not redone
    assert code == 2 and "already converted" in err


# ----- 2: training stops on a non-finite loss without saving -----------------------------------------------------
def test_idm_training_aborts_on_nan_loss_without_checkpoint(tmp_path):
    from dreamgen.errors import TrainingError
    from dreamgen.idm.train import IDMTrainConfig, train_idm
    from tests.idm_fixture import moving_square_episodes, synthetic_embodiment

    eps = moving_square_episodes(2, length=12)
    for e in eps:
        e.action[:] = np.nan
    emb = synthetic_embodiment()
    cfg = IDMTrainConfig(output_dir=tmp_path / "run", episodes=eps, embodiment_obj=emb, stats="embodiment",
                         model_config=TINY, batch_size=4, max_steps=3, save_steps=1,
                         log_steps=1, val_fraction=0.0, device="cpu", augment=False)
    with pytest.raises(TrainingError, match="loss is nan at step 1"):
        train_idm(cfg)
    assert not list((tmp_path / "run").glob("checkpoint-*"))


def test_json_never_holds_nan(tmp_path):
    from dreamgen.errors import DreamgenError
    from dreamgen.io import atomic_write_json

    with pytest.raises(DreamgenError, match="non-finite number at cells.0.score"):
        atomic_write_json(tmp_path / "s.json", {"cells": [{"score": float("nan")}]})
    assert not list(tmp_path.iterdir())


# ----- 4: OS refusals are one line --------------------------------------------------------------------------------
def test_permission_error_is_one_line(tmp_path):
    denied = PermissionError(13, "Permission denied", str(tmp_path / "meta" / "info.json"))
    with mock.patch("dreamgen.data.open_dataset", side_effect=denied):
        code, _, err = run_cli("dataset", "info", tmp_path)
    assert code == 2 and err.strip() == f"error: {tmp_path / 'meta' / 'info.json'}: Permission denied"


# ----- 8: readiness is explicit -------------------------------------------------------------------------------------
def test_unfinished_checkpoint_warns(tmp_path, caplog):
    from dreamgen.idm.checkpoint import load_idm

    tiny_idm(tmp_path / "ck", 0, step=1, max_steps=5)
    with caplog.at_level("WARNING"):
        load_idm(tmp_path / "ck")
    assert "unfinished training run (step 1 of 5)" in caplog.text


def test_one_frame_video_is_not_a_judged_success(tmp_path):
    from dreamgenbench.scoring import score_videos

    write_video(tmp_path / "d" / "0_pick_the_cube.mp4", moving_square(1), fps=10)
    s = score_videos(tmp_path / "d", FakeJudge(), "if", tmp_path / "if.csv", progress=False)
    assert s.score is None and s.n_failed == 1 and s.n_yes == 0


def test_non_latin_instructions_get_safe_distinct_names(tmp_path):
    from dreamgen.naming import dream_filename, parse_dream_path
    from dreamgen.worldmodel.generate import read_inputs

    a, b = dream_filename(0, "把红色方块放进盒子"), dream_filename(1, "打开抽屉")
    assert a != b and a.isascii() and "/" not in a and dream_filename(2, "Café, s'il vous plaît") == \
        "2_Cafe_sil_vous_plait.mp4"
    video = tmp_path / a
    write_video(video, moving_square(4), fps=10)
    video.with_suffix(".json").write_text(json.dumps({"instruction": "把红色方块放进盒子"}))
    assert parse_dream_path(video) == (0, "把红色方块放进盒子")  # the sidecar keeps the text
    (tmp_path / "in.json").write_text(json.dumps([{"image": a, "prompt": "打开抽屉"}]))
    assert read_inputs(tmp_path / "in.json")[0].instruction == "打开抽屉"
