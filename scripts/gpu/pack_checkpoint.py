"""Copy a finished policy run's final `pretrained_model/` (or an IDM checkpoint) into DST with its weights in
fp16: small enough to travel back from the GPU machine and to commit. Optimizer state stays behind.

    python scripts/gpu/pack_checkpoint.py RUN_OR_CHECKPOINT DST
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


def main(src: str, dst: str) -> None:
    src_p = Path(src)
    if (src_p / "checkpoints").is_dir():  # a finetune-policy run folder
        from dreamgen.policy.checkpoint import resolve_policy_folder

        folder = resolve_policy_folder(src_p)
    else:
        from dreamgen.idm.checkpoint import find_checkpoint

        folder = find_checkpoint(src_p)
    out = Path(dst)
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(folder, out, ignore=shutil.ignore_patterns("training_state*", "train_config.json"))
    weights = out / "model.safetensors"
    state = load_file(str(weights))
    save_file({k: v.half() if v.is_floating_point() else v for k, v in state.items()}, str(weights),
              metadata={"format": "pt"})
    n = sum(v.numel() for v in state.values())
    print(f"{folder} -> {out}: {n / 1e6:.2f}M values, {weights.stat().st_size / 2**20:.1f} MiB fp16")


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main(*sys.argv[1:3])
