"""The experiment's settings: one dataclass per step, read from YAML (`dreamgen/configs/experiment/`).

`load_pipeline_config(path, overrides)` reads the YAML, applies dotted overrides (`policy.steps=100`),
builds the nested dataclasses (unknown keys are errors) and checks names against ToyWorld's behaviors,
environments and arm styles.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from dreamgen.errors import DreamgenError
from dreamgen.presets import read_yaml_mapping


@dataclass
class RealDataConfig:
    dataset: str | None = None  # an existing dataset (e.g. demo_data/toyworld_pick_place); else collected
    behaviors: list[str] = field(default_factory=lambda: ["pick_place"])
    envs: list[str] = field(default_factory=lambda: ["default"])
    episodes: int = 50
    seed: int = 0


@dataclass
class PriorConfig:
    """Action-free videos of a *different* arm doing every behavior everywhere: the stand-in for the
    internet-video pretraining a real world model has before it sees the robot."""

    enabled: bool = False
    arm_style: str = "floating"
    behaviors: list[str] | None = None  # None: all
    envs: list[str] | None = None  # None: all
    episodes: int = 300
    seed: int = 100_000


@dataclass
class WorldModelStageConfig:
    preset: str = "toy"
    pretrained: str | None = None  # a finetune-wm output folder to start from (e.g. a committed checkpoint)
    scratch_steps: int = 300  # transformer steps when training from scratch (prior or real videos)
    scratch_vae_steps: int = 200
    finetune_mode: str = "lora"  # lora | full (on the real demos, from the prior / pretrained model)
    finetune_steps: int = 200
    batch_size: int | None = None
    lr: float | None = None
    num_steps: int | None = None  # sampling steps for the dreams
    guidance: float | None = None
    device: str | None = None
    preset_overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class DreamSetConfig:
    name: str
    behaviors: list[str]
    envs: list[str]
    count: int
    seed: int = 50_000


@dataclass
class IDMStageConfig:
    model_config: str = "toyworld"
    steps: int = 400
    batch_size: int = 32
    device: str = "auto"
    model_overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class FilterStageConfig:
    enabled: bool = True  # score every dream with the sim-replay judge and also build filtered datasets


@dataclass
class PolicyStageConfig:
    preset: str = "toyworld_diffusion_tiny"
    steps: int | None = None
    batch_size: int | None = None
    seeds: list[int] = field(default_factory=lambda: [0])
    variants: list[str] = field(default_factory=lambda: ["real_only", "real_neural"])
    neural: str = "filtered"  # which neural datasets the real_neural / neural_only policies use: raw | filtered
    neural_weight: float = 1.0  # total sampling weight of the neural data (the real data has weight 1)
    use_state: bool = True  # dreams get the state their action labels imply (ToyWorld kinematics)
    device: str | None = None
    lerobot_args: list[str] = field(default_factory=list)


@dataclass
class EvalStageConfig:
    episodes: int = 10
    seed: int = 777
    save_videos: int = 1
    device: str | None = None
    # (behavior, env) cells; default: the training cell, every dreamed behavior in the training env,
    # the training behavior in every dreamed env
    cells: list[list[str]] | None = None


@dataclass
class PipelineConfig:
    name: str = "toyworld"
    real: RealDataConfig = field(default_factory=RealDataConfig)
    prior: PriorConfig = field(default_factory=PriorConfig)
    wm: WorldModelStageConfig = field(default_factory=WorldModelStageConfig)
    dreams: list[DreamSetConfig] = field(default_factory=list)
    idm: IDMStageConfig = field(default_factory=IDMStageConfig)
    filter: FilterStageConfig = field(default_factory=FilterStageConfig)
    policy: PolicyStageConfig = field(default_factory=PolicyStageConfig)
    eval: EvalStageConfig = field(default_factory=EvalStageConfig)
    scaling: list[int] = field(default_factory=list)  # neural-trajectory counts for the scaling curve
    image_size: int = 64


def _build(cls, data: Any, where: str):
    if is_dataclass(cls) and isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise DreamgenError(f"{where}: expected a mapping, got {type(data).__name__}")
    known = {f.name: f for f in fields(cls)}
    unknown = set(data) - set(known)
    if unknown:
        raise DreamgenError(f"{where}: unknown key(s) {sorted(unknown)}; known: {sorted(known)}")
    kwargs = {}
    for k, v in data.items():
        sub = _NESTED.get((cls.__name__, k))
        if sub is list:
            kwargs[k] = [_build(DreamSetConfig, x, f"{where}.{k}[{i}]") for i, x in enumerate(v or [])]
        elif sub is not None:
            kwargs[k] = _build(sub, v, f"{where}.{k}")
        else:
            kwargs[k] = v
    return cls(**kwargs)


_NESTED = {
    ("PipelineConfig", "real"): RealDataConfig,
    ("PipelineConfig", "prior"): PriorConfig,
    ("PipelineConfig", "wm"): WorldModelStageConfig,
    ("PipelineConfig", "dreams"): list,
    ("PipelineConfig", "idm"): IDMStageConfig,
    ("PipelineConfig", "filter"): FilterStageConfig,
    ("PipelineConfig", "policy"): PolicyStageConfig,
    ("PipelineConfig", "eval"): EvalStageConfig,
}


def load_pipeline_config(path: str | Path, overrides: dict[str, Any] | None = None) -> PipelineConfig:
    path = Path(path)
    if not path.is_file():
        raise DreamgenError(f"{path}: config file not found")
    data = read_yaml_mapping(path, "experiment settings")
    for dotted, value in (overrides or {}).items():
        node = data
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    cfg = _build(PipelineConfig, data, str(path))
    _validate(cfg, str(path))
    return cfg


def _validate(cfg: PipelineConfig, where: str) -> None:
    from dreamgen.toyworld.scene import ARM_STYLES, ENVIRONMENTS
    from dreamgen.toyworld.tasks import BEHAVIORS

    def check(kind, names, valid):
        for n in names or []:
            if n not in valid:
                raise DreamgenError(f"{where}: unknown {kind} {n!r}; valid: {', '.join(valid)}")

    check("behavior", cfg.real.behaviors, BEHAVIORS)
    check("environment", cfg.real.envs, ENVIRONMENTS)
    check("behavior", cfg.prior.behaviors, BEHAVIORS)
    check("environment", cfg.prior.envs, ENVIRONMENTS)
    check("arm_style", [cfg.prior.arm_style], ARM_STYLES)
    names = [d.name for d in cfg.dreams]
    if len(set(names)) != len(names):
        raise DreamgenError(f"{where}: dream set names must be unique, got {names}")
    for d in cfg.dreams:
        check("behavior", d.behaviors, BEHAVIORS)
        check("environment", d.envs, ENVIRONMENTS)
        if d.count < 1:
            raise DreamgenError(f"{where}: dream set {d.name!r} needs count >= 1")
    for v in cfg.policy.variants:
        if v not in VARIANTS:
            raise DreamgenError(f"{where}: unknown policy variant {v!r}; valid: {', '.join(VARIANTS)}")
    if cfg.policy.neural not in ("raw", "filtered"):
        raise DreamgenError(f"{where}: policy.neural must be raw or filtered")
    if cfg.policy.neural == "filtered" and not cfg.filter.enabled:
        raise DreamgenError(f"{where}: policy.neural is 'filtered' but filter.enabled is false")
    if cfg.wm.finetune_mode not in ("lora", "full"):
        raise DreamgenError(f"{where}: wm.finetune_mode must be lora or full")


# real_neural / neural_only use policy.neural's datasets; the _raw / _filtered forms pick explicitly
VARIANTS = ["real_only", "real_neural", "neural_only", "real_neural_raw", "real_neural_filtered",
            "neural_only_raw", "neural_only_filtered"]

# the runner's steps, in order
STEPS = ["real", "prior", "world_model", "dreams", "idm", "judge", "neural", "policies", "eval", "report"]
