"""The experiment config (dreamgen/configs/experiment/toyworld.yaml) end to end at a tiny size on CPU, which is
also what `dreamgen demo` runs: every artefact exists and is valid, the report renders, a rerun resumes."""

import json
from pathlib import Path

import numpy as np
import pytest

from dreamgen.errors import DreamgenError
from dreamgen.experiment import Pipeline, load_pipeline_config
from tests.browser import inspect_page
from tests.test_worldmodel import TINY as WM_TINY

REPO = Path(__file__).resolve().parents[1]

# The world-model test's tiny Cosmos2 at the pipeline's own resolution and clip length (64x64, 25 frames:
# a larger rope table), with the preset's text dropout.
TINY_WM = {k: v for k, v in WM_TINY.items() if k not in ("resolution", "num_frames", "num_inference_steps")}
TINY_WM["transformer"] = {**WM_TINY["transformer"], "max_size": [8, 32, 32]}
TINY_WM["train"] = {k: v for k, v in WM_TINY["train"].items() if k != "text_dropout"}

TINY = {
    "real.episodes": 4, "prior.episodes": 4,
    "wm.scratch_steps": 2, "wm.scratch_vae_steps": 2, "wm.finetune_steps": 2, "wm.batch_size": 2, "wm.num_steps": 2,
    "wm.preset_overrides": TINY_WM, "wm.device": "cpu",
    "dreams": [{"name": "augment", "behaviors": ["pick_place"], "envs": ["default"], "count": 2, "seed": 50000},
               {"name": "new_behaviors", "behaviors": ["lift"], "envs": ["default"], "count": 1, "seed": 60000},
               {"name": "new_envs", "behaviors": ["pick_place"], "envs": ["evening"], "count": 1, "seed": 70000}],
    "idm.steps": 4, "idm.batch_size": 4, "idm.model_config": "tiny", "idm.device": "cpu",
    "policy.preset": "toyworld_diffusion_tiny", "policy.steps": 2, "policy.seeds": [0], "policy.device": "cpu",
    "policy.variants": ["real_only", "real_neural_raw"],
    "eval.episodes": 1, "eval.save_videos": 1, "eval.cells": [["pick_place", "default"], ["lift", "default"]],
    "scaling": [0, 2],
}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("exp") / "out"
    cfg = load_pipeline_config(REPO / "dreamgen" / "configs" / "experiment" / "toyworld.yaml", TINY)
    Pipeline(cfg, out, echo=lambda *_: None).run()
    return out, cfg


def test_every_artefact_exists_and_is_valid(run):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from dreamgen.data import open_dataset, read_video

    out, cfg = run
    assert open_dataset(out / "real").num_episodes == 4
    assert (out / "wm_prior" / "model" / "model_index.json").is_file()
    assert (out / "wm" / "pytorch_lora_weights.safetensors").is_file()
    dreams = sorted((out / "dreams").glob("*/*.mp4"))
    assert len(dreams) == 4
    for v in dreams:
        frames = read_video(v)
        assert frames.shape == (37, 64, 64, 3)  # the toyworld embodiment's world-model clip (v2: 37 frames)
        assert json.loads(v.with_suffix(".json").read_text())["instruction"]
    scores = (out / "scores" / "augment.csv").read_text().splitlines()
    assert scores[0] == "video_path,prompt,prediction,raw_reply" and len(scores) == 3
    for name in ("augment_raw", "new_behaviors_raw", "new_envs_raw"):
        ds = LeRobotDataset(f"local/{name}", root=out / "neural" / name, video_backend="pyav")
        assert ds.meta.total_episodes >= 1 and ds.meta.features["action"]["shape"] == (4,)
        item = ds[0]
        assert tuple(item["observation.images.front"].shape) == (3, 64, 64)
        ep = open_dataset(out / "neural" / name).episode(0)
        from dreamgen.toyworld.replay import integrate_state

        assert np.allclose(ep.state, integrate_state(ep.action), atol=1e-6)
    idm = json.loads((out / "idm" / "eval.json").read_text())
    assert {"idm_mse", "baseline_mse", "replay"} <= set(idm)
    results = json.loads((out / "results.json").read_text())
    cells = {(r["policy"], r["behavior"], r["env"]) for r in results["success"]}
    assert cells == {(p, b, "default") for p in ("real_only", "real_neural_raw", "scale_2") for b in ("pick_place", "lift")}
    assert all(r["episodes"] == 1 for r in results["success"])
    # the scaling curve's N=0 point is the real_only run: not trained a second time
    assert not (out / "policies" / "scale_0_s0").exists() and (out / "policies" / "scale_2_s0").is_dir()
    assert (out / "report_assets" / "curves" / "scaling.png").stat().st_size > 0


def test_report_renders(run):
    out, _ = run
    md = (out / "report.md").read_text()
    assert "## Closed-loop success" in md and "| pick_place | default |" in md
    page = inspect_page(out / "report.html")
    assert {"steps", "metrics", "success"} <= set(page["tables"])
    assert len(page["images"]) >= 4 + 2  # 4 dream contact sheets + loss curves
    assert all(w > 0 for _, w in page["images"]), page["images"]


def test_rerun_resumes_without_redoing_work(run):
    out, cfg = run
    lines = []
    mtime = (out / "wm" / "pytorch_lora_weights.safetensors").stat().st_mtime
    Pipeline(cfg, out, echo=lines.append).run()
    assert sum("done already" in x for x in lines) == 9  # every step but the report
    assert (out / "wm" / "pytorch_lora_weights.safetensors").stat().st_mtime == mtime


def test_bad_config_errors(tmp_path):
    cfg = REPO / "dreamgen" / "configs" / "experiment" / "toyworld.yaml"
    with pytest.raises(DreamgenError, match="unknown behavior 'juggle'"):
        load_pipeline_config(cfg, {"dreams": [{"name": "x", "behaviors": ["juggle"], "envs": ["default"], "count": 1}]})
    with pytest.raises(DreamgenError, match="unknown policy variant"):
        load_pipeline_config(cfg, {"policy.variants": ["best_one"]})
    with pytest.raises(DreamgenError, match="unknown key"):
        load_pipeline_config(cfg, {"wm.colour": "red"})
    with pytest.raises(DreamgenError, match="not found"):
        load_pipeline_config(tmp_path / "nope.yaml")


def test_a_rerun_with_other_settings_or_an_edited_preset_is_refused(tmp_path, monkeypatch):
    from dreamgen.experiment import Pipeline
    from dreamgen.experiment.config import PipelineConfig
    from dreamgen.jobs import JOB_FILE, ResumeMismatchError

    ran = []
    monkeypatch.setattr(Pipeline, "step_report", lambda self: ran.append(1) or self.out)
    out = tmp_path / "run"
    Pipeline(PipelineConfig(), out, echo=lambda *_: None).run(["report"])
    Pipeline(PipelineConfig(), out, echo=lambda *_: None).run(["report"])  # same settings: resumes
    other = PipelineConfig()
    other.policy.steps = 7
    with pytest.raises(ResumeMismatchError, match="config.policy.steps"):
        Pipeline(other, out, echo=lambda *_: None).run(["report"])
    edited = tmp_path / "edited.yaml"
    edited.write_text("policy: diffusion\nsteps: 3\n")
    import dreamgen.presets

    real_find = dreamgen.presets.find_preset
    monkeypatch.setattr(dreamgen.presets, "find_preset",
                        lambda kind, name: edited if kind == "policy" else real_find(kind, name))
    with pytest.raises(ResumeMismatchError, match="presets.policy/"):
        Pipeline(PipelineConfig(), out, echo=lambda *_: None).run(["report"])
    (out / "real").mkdir()
    Pipeline(PipelineConfig(), out, echo=lambda *_: None).run(["report"], overwrite=True)  # starts fresh
    assert not (out / "real").exists()  # the earlier steps' outputs are gone with their settings
    assert len(ran) == 3
    assert '"job": "experiment"' in (out / JOB_FILE).read_text()  # the settings are recorded


def test_finished_steps_without_a_settings_record_are_not_reused(tmp_path):
    from dreamgen.experiment import Pipeline
    from dreamgen.experiment.config import PipelineConfig
    from dreamgen.jobs import ResumeMismatchError

    out = tmp_path / "old"
    (out / ".done").mkdir(parents=True)
    (out / ".done" / "real").write_text("1.0\n")
    with pytest.raises(ResumeMismatchError, match="no record of the settings"):
        Pipeline(PipelineConfig(), out, echo=lambda *_: None).run(["report"])
