"""Gather toyworld_v2.sh's results into one JSON: policy success per cell (Wilson 95%), IDM replay and
state error per held-out set, training times."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path


def main(out: str) -> dict:
    root = Path(out)
    policies = {}
    for res in sorted(root.glob("eval/*/results.json")):
        data = json.loads(res.read_text())
        for r in data.get("results", []):
            policies[res.parent.name] = {k: r.get(k) for k in ("behavior", "env", "episodes", "successes",
                                                               "success_rate", "ci95", "mean_steps")}
    idm = {}
    for f in sorted(root.glob("idm_eval/*.json")):
        try:
            idm[f.stem] = json.loads(f.read_text())
        except json.JSONDecodeError:
            idm[f.stem] = {"error": f.read_text()[-500:]}
    times = {}
    for log in sorted(root.glob("logs/train_*.log")):
        text = log.read_text(errors="replace")
        m = re.findall(r"(\d+\.\d+) s/step", text)
        times[log.stem] = {"last_s_per_step": float(m[-1]) if m else None}
    progress = (root / "progress.log").read_text() if (root / "progress.log").is_file() else ""
    return {"policies": policies, "idm": idm, "train": times, "progress": progress.splitlines()}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1]), indent=2))
