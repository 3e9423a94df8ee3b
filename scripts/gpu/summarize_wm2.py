"""Gather wm_v2.sh's results into one JSON beside the bars of issue #15: autoencoder round trip per frame
index and on foreground pixels, dreams vs real continuation vs copy-first-frame, pixel-judge pass rates,
training steps and times.

    python scripts/gpu/summarize_wm2.py OUT > OUT/results.json
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

BARS = {"vae_min_frame_psnr": 30.0, "dream_gain_over_copy_db": 2.0, "judge_pick_place_default": 0.6}
DROP = ("per_video", "per_clip", "verdicts")


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _slim(d: dict) -> dict:
    return {k: (_slim(v) if isinstance(v, dict) else v) for k, v in d.items() if k not in DROP}


def _training(root: Path) -> dict:
    rows = []
    loss = root / "loss.csv"
    if loss.is_file():
        with loss.open() as f:
            rows = list(csv.DictReader(f))
    out = {}
    for stage in ("vae", "transformer"):
        r = [x for x in rows if x["stage"] == stage]
        if r:
            out[stage] = {"steps": int(r[-1]["step"]), "seconds": float(r[-1]["seconds"]),
                          "final_loss": float(r[-1]["loss"])}
    return out


def main(out: str) -> dict:
    root = Path(out)
    vae = {p.parent.name: _slim(d) for p in sorted(root.glob("eval/*/vae_roundtrip.json")) if (d := _read(p))}
    dreams = {p.parent.name: _slim(d) for p in sorted(root.glob("eval/*/metrics.json")) if (d := _read(p))}
    checks = {}
    if vae:
        worst = min(v["min_frame_psnr"] for v in vae.values())
        checks["vae_min_frame_psnr"] = {"value": worst, "bar": BARS["vae_min_frame_psnr"],
                                        "pass": worst >= BARS["vae_min_frame_psnr"]}
    main_set = dreams.get("pick_place_default")
    if main_set:
        gain = main_set["psnr"] - main_set["baseline_psnr"]
        checks["dream_gain_over_copy_db"] = {"value": gain, "bar": BARS["dream_gain_over_copy_db"],
                                             "pass": gain >= BARS["dream_gain_over_copy_db"],
                                             "fg_gain_db": (main_set["fg_psnr"] or 0) - (main_set["baseline_fg_psnr"] or 0)}
        if "judge" in main_set:
            rate = main_set["judge"]["pass_rate"]
            checks["judge_pick_place_default"] = {"value": rate, "bar": BARS["judge_pick_place_default"],
                                                  "pass": rate >= BARS["judge_pick_place_default"],
                                                  "real_clips": main_set["real_judge"]["pass_rate"]}
    judge = {k: {"dreams": d["judge"]["pass_rate"], "real": d["real_judge"]["pass_rate"], "n": d["judge"]["num"]}
             for k, d in dreams.items() if "judge" in d}
    progress = (root / "progress.log").read_text() if (root / "progress.log").is_file() else ""
    return {"checks": checks, "judge": judge, "vae_roundtrip": vae, "dreams": dreams, "training": _training(root),
            "progress": progress.splitlines()}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1]), indent=2))
