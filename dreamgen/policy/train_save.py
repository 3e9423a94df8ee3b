"""Writing a policy training run's checkpoints: LeRobot's layout plus our embodiment and run record.

Each checkpoint is written to a temporary folder and renamed into place, so a crash leaves either the
previous checkpoint or the new one, never half of one."""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

from dreamgen.embodiments import Embodiment
from dreamgen.io import atomic_write_text
from dreamgen.policy.config import PolicyTrainConfig
from dreamgen.policy.mixing import MixedDataset
from dreamgen.policy.task_encoding import TaskEncoder
from dreamgen.policy.vision import grounded_names, trunk_provenance

log = logging.getLogger(__name__)

POLICY_INFO = "dreamgen_policy.json"


def save_run_checkpoint(out: Path, step: int, cfg: PolicyTrainConfig, train_cfg: Any, policy: Any, optimizer: Any,
          scheduler: Any, preprocessor: Any, postprocessor: Any, embodiment: Embodiment, mix: MixedDataset,
          cams: list[str], use_state: bool, num_processes: int, losses: list[float],
          task_encoder: TaskEncoder | None = None) -> Path:
    """Write checkpoints/<step>/ atomically (temp folder, then rename) and point `last` at it."""
    from lerobot.common.train_utils import get_step_checkpoint_dir, save_checkpoint, update_last_checkpoint

    final = get_step_checkpoint_dir(out, cfg.steps, step)
    tmp = final.with_name(f".tmp-{final.name}")
    if tmp.exists():
        shutil.rmtree(tmp)
    save_checkpoint(tmp, step, train_cfg, policy, optimizer, scheduler, preprocessor, postprocessor,
                    num_processes=num_processes, batch_size=cfg.batch_size)
    pm = tmp / "pretrained_model"
    emb_stats = {k: {n: np.asarray(v).reshape(-1).tolist() for n, v in st.items() if n != "count"}
                 for k, st in mix.meta.stats.items() if k in (embodiment.action_key, embodiment.state_key)}
    embodiment.with_stats({**embodiment.stats, **emb_stats}).save(pm / "embodiment")
    window = losses[-max(1, cfg.log_freq):]
    info = {
        "policy": cfg.policy,
        "step": step,
        "datasets": [{"path": str(s.path.resolve()), "weight": s.weight} for s in cfg.datasets],
        "embodiment": embodiment.name,
        "video_keys": cams,
        "image_keys_in_dataset": cams,
        "use_state": use_state,
        "state_key": embodiment.state_key,
        "action_key": embodiment.action_key,
        "fps": embodiment.fps,
        "loss": sum(window) / len(window),
        "task_conditioning": (task_encoder or TaskEncoder("none")).to_json(),
        "vision_trunk_layers": cfg.vision_trunk_layers,
        "vision_instruction_film": cfg.vision_instruction_film,
        "vision_pretrained_trunk": trunk_provenance(cfg.vision_pretrained_trunk),
        "vision_freeze_trunk": cfg.vision_freeze_trunk,
        "vision_attended_keypoints": cfg.vision_attended_keypoints,
        "vision_grounded_names": list(grounded_names(cfg)),
        "command": cfg.command or " ".join([os.path.basename(sys.argv[0]), *sys.argv[1:]]),
    }
    write_json(pm / POLICY_INFO, info)
    if final.exists():  # a re-run of the same step after a crash between rename and `last`
        shutil.rmtree(final)
    tmp.rename(final)
    update_last_checkpoint(final)
    log.info("saved %s (loss %.4f)", final, info["loss"])
    return final / "pretrained_model"


def write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, default=_json_default))


def _json_default(o: Any) -> Any:
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, np.ndarray | np.generic):
        return o.tolist()
    raise TypeError(type(o))

