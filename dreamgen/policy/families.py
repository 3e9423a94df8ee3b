"""What differs between policy families, in one place: `policy_family(type)` gives the family's adapter.

Most LeRobot policies (diffusion, ACT, pi0, ...) train from scratch or from a LeRobot `pretrained_model/`
folder and need nothing else (`LeRobotFamily`). GR00T N1.7 starts from a base model folder of its own
(`--policy.base_model_path`), takes its padded widths and action horizon from it, and its VLM processor
step must be pointed at the local backbone folder (`GrootFamily`). A new family is a subclass here plus
an entry in `FAMILIES`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dreamgen.errors import DreamgenError


class LeRobotFamily:
    """A LeRobot policy, optionally starting from a LeRobot `pretrained_model/` folder."""

    # --pretrained names a base model folder of the family's own, not a LeRobot pretrained_model/ folder
    pretrained_is_base_model = False

    def check_base_model(self, pretrained: str | None) -> None:
        """Before anything loads: is the base model folder complete? (families that have one)"""

    def lerobot_args(self, pretrained: str | None) -> list[str]:
        """Flags for LeRobot's config parser, before the user's own (which win)."""
        return []

    def configure(self, policy_cfg: Any, pretrained: str | None, passed: list[str]) -> None:
        """Adjust the parsed LeRobot policy config (`passed`: the user's LeRobot flags)."""
        if pretrained:
            policy_cfg.pretrained_path = Path(pretrained)

    def check_saved(self, cfg: dict[str, Any], cfg_path: Path) -> None:
        """Checks of a saved checkpoint's config.json beyond the files every checkpoint has."""

    def prepare_processors(self, preprocessor: Any, policy_cfg: Any, task_encoder: Any = None) -> None:
        """Fix up freshly made or loaded processors before use: with a `task_encoder` (task_encoding.py)
        the preprocessor gets its instruction step (task_step.py), which is saved with the policy."""
        if task_encoder is not None:
            from dreamgen.policy.task_step import ensure_task_step

            ensure_task_step(preprocessor, task_encoder)


class GrootFamily(LeRobotFamily):
    """GR00T N1.7 from a local base model folder (`--pretrained`); the hub is never used."""

    pretrained_is_base_model = True

    def check_base_model(self, pretrained: str | None) -> None:
        if not pretrained:
            raise DreamgenError(
                "groot needs a local GR00T N1.7 base model folder: pass --pretrained PATH (config.json, "
                "model.safetensors, processor files and a local Qwen3-VL backbone folder; the hub is not used)"
            )
        from dreamgen.policy.groot import check_groot_base

        check_groot_base(Path(pretrained))

    def lerobot_args(self, pretrained: str | None) -> list[str]:
        return [f"--policy.base_model_path={pretrained}"] if pretrained else []

    def configure(self, policy_cfg: Any, pretrained: str | None, passed: list[str]) -> None:
        """Take the padded widths and action horizon from the base model unless the user set them."""
        if not pretrained:
            return
        try:
            base_cfg = json.loads((Path(pretrained) / "config.json").read_text())
        except (OSError, json.JSONDecodeError):
            return  # check_groot_base reports it
        given = {a.split("=", 1)[0] for a in passed}
        for name in ("max_state_dim", "max_action_dim"):
            if f"--policy.{name}" not in given and name in base_cfg:
                setattr(policy_cfg, name, int(base_cfg[name]))
        horizon = base_cfg.get("action_horizon")
        if horizon and "--policy.chunk_size" not in given and int(horizon) < policy_cfg.chunk_size:
            policy_cfg.chunk_size = int(horizon)
            if "--policy.n_action_steps" not in given:
                policy_cfg.n_action_steps = min(policy_cfg.n_action_steps, int(horizon))

    def check_saved(self, cfg: dict[str, Any], cfg_path: Path) -> None:
        base = cfg.get("base_model_path")
        if base and not Path(base).expanduser().is_dir():
            raise DreamgenError(
                f"{cfg_path}: GR00T base model folder {base} does not exist (a GR00T checkpoint rebuilds its "
                "architecture from the base model folder it was fine-tuned from)"
            )

    def prepare_processors(self, preprocessor: Any, policy_cfg: Any, task_encoder: Any = None) -> None:
        from dreamgen.policy.groot import localize_groot_processors

        super().prepare_processors(preprocessor, policy_cfg, task_encoder)

        localize_groot_processors(preprocessor, Path(policy_cfg.base_model_path))


FAMILIES: dict[str, LeRobotFamily] = {"groot": GrootFamily()}
_DEFAULT = LeRobotFamily()


def policy_family(policy_type: str) -> LeRobotFamily:
    """The adapter of a LeRobot policy type (`diffusion`, `act`, `groot`, ...)."""
    return FAMILIES.get(policy_type, _DEFAULT)
