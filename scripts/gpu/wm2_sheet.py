"""Contact sheet of an `evaluate` folder: for up to 4 held-out clips, a row of real frames above a row of
dreamed frames (frames 0, 6, ..., 36), upscaled 2x.

    python scripts/gpu/wm2_sheet.py EVAL_DIR OUT.png
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from dreamgen.data.video import read_video
from dreamgen.naming import dream_filename


def main(eval_dir: str, png: str, clips: int = 4, every: int = 6) -> None:
    root = Path(eval_dir)
    items = json.loads((root / "inputs.json").read_text())
    rows = []
    for i, it in enumerate(items[:clips]):
        real = read_video(root / "real" / f"{i}.mp4")
        dream = read_video(root / "dreams" / dream_filename(i, it["instruction"]))
        idx = list(range(0, min(len(real), len(dream)), every))
        rows.append(np.concatenate([real[t] for t in idx], axis=1))
        rows.append(np.concatenate([dream[t] for t in idx], axis=1))
    img = np.concatenate(rows, axis=0)
    Image.fromarray(img).resize((img.shape[1] * 2, img.shape[0] * 2), Image.NEAREST).save(png)
    print(f"{png}: {len(rows) // 2} clips, real above dream, every {every}th frame")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
