import numpy as np
import pytest

from dreamgen.data import write_video
from dreamgen.experiment.report import (
    DreamEntry,
    Report,
    SuccessRow,
    contact_sheet,
    plot_loss_csv,
    wilson_interval,
    write_report,
)
from tests.browser import inspect_page


def test_wilson_interval_known_values():
    lo, hi = wilson_interval(0, 100)
    assert lo == 0.0 and hi == pytest.approx(0.0370, abs=1e-3)
    lo, hi = wilson_interval(50, 100)
    assert (lo, hi) == (pytest.approx(0.4038, abs=1e-3), pytest.approx(0.5962, abs=1e-3))
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_report_renders_in_chromium(tmp_path):
    frames = np.zeros((9, 32, 32, 3), np.uint8)
    frames[:, 8:16, :, 0] = np.arange(9)[:, None, None] * 25
    vid = write_video(tmp_path / "dreams" / "0_pick_the_cube.mp4", frames, fps=10)
    sheet = contact_sheet(vid, tmp_path / "sheets" / "0.png")
    from PIL import Image

    assert Image.open(sheet).size == (2 * (3 * 32 + 4), 64)
    rollout = write_video(tmp_path / "eval" / "run" / "cell" / "rollouts" / "r_success.mp4", frames[::-1], fps=10)
    (tmp_path / "loss.csv").write_text("step,loss,val_loss\n1,1.0,1.2\n2,0.5,0.7\n3,0.25,0.4\n")
    png = plot_loss_csv(tmp_path / "loss.csv", tmp_path / "curves" / "loss.png", "IDM")
    report = Report(
        title="demo <report>",
        steps=[("collect", "runs/demo/real")],
        dreams=[DreamEntry(vid, "pick the cube", sheet, {"IF": "1"}, kept=True)],
        curves=[("IDM loss", png)],
        metrics=[("IDM action error (normalised)", "0.12")],
        policies=[("real_only_s0", "real (demos)"), ("real_neural_s0", "real (demos) + neural filtered (augment)")],
        rollouts=[("real_neural_s0: pick_place in default success", rollout)],
        success=[SuccessRow("real-only", "pick_place", "default", 7, 10),
                 SuccessRow("real+neural", "pick_place", "default", 9, 10)],
    )
    html_path, md_path = write_report(report, tmp_path)
    md = md_path.read_text()
    assert "| pick_place | default | 70% [40, 89] (7/10) | 90% [60, 98] (9/10) |" in md
    page = inspect_page(html_path)
    assert page["title"] == "demo <report>"
    assert sorted(page["tables"]) == ["metrics", "policies", "steps", "success"]
    assert len(page["images"]) == 2 and all(w > 0 for _, w in page["images"]), page["images"]
    # the dream and the rollout play in the page: the browser decoded both mp4s beside it
    assert [v[0] for v in page["videos"]] == ["dreams/0_pick_the_cube.mp4", "eval/run/cell/rollouts/r_success.mp4"]
    assert all(w == 32 and d == pytest.approx(0.9, abs=0.15) for _, w, d in page["videos"]), page["videos"]
    html_text = html_path.read_text()
    assert "sim-replay=1 — kept" in html_text or "IF=1 — kept" in html_text
    assert "neural filtered (augment)" in html_text and "neural filtered (augment)" in md
    assert "[video](dreams/0_pick_the_cube.mp4)" in md


def test_report_names_each_policys_neural_set_and_finds_rollouts(tmp_path):
    import json

    from dreamgen.experiment.results import policy_data, rollout_videos

    out = tmp_path / "run"
    for name, sets in (("real_only_s0", []), ("real_neural_filtered_s0", ["augment_filtered", "new_envs_filtered"]),
                       ("real_neural_raw_s0", ["augment_raw"])):
        (out / "policies" / name).mkdir(parents=True)
        specs = [{"path": "/data/toyworld_pick_place", "weight": 1.0}]
        specs += [{"path": str(out / "neural" / s), "weight": 0.5} for s in sets]
        (out / "policies" / name / "dreamgen_train.json").write_text(json.dumps({"datasets": specs}))
    rows = dict(policy_data(out))
    assert rows["real_only_s0"] == "real (toyworld_pick_place)"
    assert rows["real_neural_raw_s0"] == "real (toyworld_pick_place) + neural raw (augment, weight 0.50)"
    assert "neural filtered (new_envs, weight 0.50)" in rows["real_neural_filtered_s0"]
    frames = np.zeros((4, 16, 16, 3), np.uint8)
    for cell in ("lift__default", "pick_place__evening"):
        for k, end in enumerate(("fail", "success")):
            write_video(out / "eval" / "real_only_s0" / cell / "rollouts" / f"{cell}__{k}_{end}.mp4", frames, 10)
    found = rollout_videos(out)
    assert [c for c, _ in found] == ["real_only_s0: lift in default failure",
                                     "real_only_s0: pick_place in evening failure"]
    assert all(p.is_file() for _, p in found)
