"""Copy a finished `finetune-wm` run (dreamgen_wm.json, model/, recipe files) into DST with every weight
in fp16: small enough to travel back from the GPU machine and to commit. Checkpoints and optimizer state
stay behind. Loading casts back (`generate --dtype`, fp32 on a CPU; the VAE is read as fp32 by evaluate).

    python scripts/gpu/pack_wm.py RUN DST
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


def main(src: str, dst: str) -> None:
    run, out = Path(src), Path(dst)
    if not (run / "dreamgen_wm.json").is_file():
        raise SystemExit(f"{run}: not a finished finetune-wm run (no dreamgen_wm.json)")
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(run, out, ignore=shutil.ignore_patterns("checkpoints", "*.partial"))
    total, values = 0, 0
    for f in sorted(out.rglob("*.safetensors")):
        state = load_file(str(f))
        save_file({k: v.half() if v.is_floating_point() else v for k, v in state.items()}, str(f),
                  metadata={"format": "pt"})
        values += sum(v.numel() for v in state.values())
        total += f.stat().st_size
    print(f"{run} -> {out}: {values / 1e6:.2f}M values, {total / 2**20:.1f} MiB fp16 weights")


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main(*sys.argv[1:3])
