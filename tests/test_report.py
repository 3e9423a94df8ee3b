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
    (tmp_path / "loss.csv").write_text("step,loss,val_loss\n1,1.0,1.2\n2,0.5,0.7\n3,0.25,0.4\n")
    png = plot_loss_csv(tmp_path / "loss.csv", tmp_path / "curves" / "loss.png", "IDM")
    report = Report(
        title="demo <report>",
        steps=[("collect", "runs/demo/real")],
        dreams=[DreamEntry(vid, "pick the cube", sheet, {"IF": "1"}, kept=True)],
        curves=[("IDM loss", png)],
        metrics=[("IDM action error (normalised)", "0.12")],
        success=[SuccessRow("real-only", "pick_place", "default", 7, 10),
                 SuccessRow("real+neural", "pick_place", "default", 9, 10)],
    )
    html_path, md_path = write_report(report, tmp_path)
    md = md_path.read_text()
    assert "| pick_place | default | 70% [40, 89] (7/10) | 90% [60, 98] (9/10) |" in md
    page = inspect_page(html_path)
    assert page["title"] == "demo <report>"
    assert sorted(page["tables"]) == ["metrics", "steps", "success"]
    assert len(page["images"]) == 2 and all(w > 0 for _, w in page["images"]), page["images"]
