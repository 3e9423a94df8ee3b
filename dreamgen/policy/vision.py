"""LeRobot's diffusion-policy image encoder, fitted to small scenes: a shorter trunk and instruction FiLM.

**Cut trunk.** LeRobot's `DiffusionRgbEncoder` always keeps a torchvision ResNet up to `layer4` (stride
32, 11M parameters for ResNet18): on a 96x96 ToyWorld frame that leaves a 3x3 feature map for the spatial
softmax, too coarse to put the gripper within centimetres of an object, and 22 MB per fp16 checkpoint.
`vision_trunk_layers: 2` keeps `conv1 .. layer2` (stride 8, 0.7M parameters: a 12x12 map at 96 px);
3 keeps up to `layer3` (stride 16).

**Instruction FiLM.** LeRobot's diffusion policy sees the instruction feature (`observation.environment_state`,
task_encoding.py) only in the UNet's global conditioning, concatenated with the spatial-softmax keypoints.
Choosing the keypoint of the object an instruction names is then a product of two inputs the UNet can only
form several layers deep; measured on ToyWorld v2 (RESULTS.md), a policy trained so heads for the named
object no more often than chance. `vision_instruction_film: true` scales and shifts every channel of the
trunk's feature map by a linear function of the instruction feature (FiLM, Perez et al. 2018) before the
spatial softmax, so the keypoints themselves can move to the named object. It starts as the identity
(zero-initialised projection).

**Pretrained, frozen trunk; attended and grounded keypoints.** `load_pretrained_trunk` starts the trunk from
`dreamgen toyworld pretrain-trunk` (its keypoint head seeds the first spatial-softmax keypoints) and
`freeze_trunk` keeps it fixed. `vision_attended_keypoints: N` turns the last N keypoints into instruction-weighted
mixes of all keypoints (`AttendedKeypoints`); with `grounded_names` the first of them follows the keypoint the
instruction names, by name (measured in RESULTS.md: a learned weighting does not find the binding, the grounded
one reaches the named object).

LeRobot has no option for any of these (its config insists on a full ResNet name and its encoder takes images
only), so they are applied here, after `make_policy`, and recorded in the checkpoint's `dreamgen_policy.json`
so that `load_policy_checkpoint` rebuilds the same module before loading the weights.
"""

from __future__ import annotations

import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dreamgen.errors import DreamgenError

# children of a torchvision ResNet: conv1, bn1, relu, maxpool, layer1, layer2, layer3, layer4, avgpool, fc
_STEM = 4
VALID_LAYERS = (1, 2, 3, 4)
ATTEND_SCALE = 20.0  # attended keypoints: logit scale (see _attended_pool)
# grounded slot: cosine scale; "pick up the red cube ..." has cosine ~0.36 with "red cube", ~0.12 with "green cube"
# and ~0.22 with "plate" (the tightest: "yellow cylinder" 0.25 vs "plate" 0.22), so 100 gives the named object
# >= 95% of the weight
GROUND_SCALE = 100.0
ENV_STATE_KEY = "observation.environment_state"  # = task_encoding.TASK_FEATURE_KEY (LeRobot's OBS_ENV_STATE)


@dataclass(frozen=True)
class VisionSpec:
    """How the image encoder differs from LeRobot's: `trunk_layers` (None/4 = full) and instruction FiLM."""

    trunk_layers: int | None = None
    instruction_film: bool = False
    attended_keypoints: int = 0  # keypoint slots that become instruction-weighted mixes of all keypoints
    grounded_names: tuple[str, ...] = ()  # names of the first keypoints: the first attended slot follows the named one

    def __post_init__(self) -> None:
        if self.trunk_layers is not None and self.trunk_layers not in VALID_LAYERS:
            raise DreamgenError(f"vision_trunk_layers must be one of {VALID_LAYERS}, got {self.trunk_layers}")
        if not 0 <= int(self.attended_keypoints) <= 8:
            raise DreamgenError(f"vision_attended_keypoints must be 0-8, got {self.attended_keypoints}")
        if self.grounded_names and not self.attended_keypoints:
            raise DreamgenError("vision_grounded_keypoints needs vision_attended_keypoints >= 1 (the grounded slot)")

    @property
    def is_stock(self) -> bool:
        return self.trunk_layers in (None, 4) and not self.instruction_film and not self.attended_keypoints

    @property
    def needs_instruction(self) -> bool:
        return self.instruction_film or bool(self.attended_keypoints)

    @classmethod
    def from_info(cls, info: dict[str, Any]) -> VisionSpec:
        """From a checkpoint's dreamgen_policy.json (keys absent in older checkpoints mean LeRobot's encoder)."""
        return cls(info.get("vision_trunk_layers"), bool(info.get("vision_instruction_film", False)),
                   int(info.get("vision_attended_keypoints") or 0), tuple(info.get("vision_grounded_names") or ()))


def _rgb_encoders(policy: Any) -> list[Any]:
    core = getattr(policy, "diffusion", None)
    enc = getattr(core, "rgb_encoder", None)
    if enc is None:
        raise DreamgenError(f"vision_trunk_layers / vision_instruction_film apply to the diffusion policy's "
                            f"image encoder; {type(policy).__name__} has none")
    import torch.nn as nn

    return list(enc) if isinstance(enc, nn.ModuleList) else [enc]


def truncate_vision_trunk(policy: Any, layers: int | None) -> None:
    """Keep the ResNet trunk of every image encoder up to `layer{layers}` and resize its spatial softmax."""
    if layers is None or layers == 4:
        return
    VisionSpec(layers)  # validates
    import torch.nn as nn

    for enc in _rgb_encoders(policy):
        children = list(enc.backbone.children())
        enc.backbone = nn.Sequential(*children[: _STEM + layers])
    _resize_pools(policy)


def _trunk_output(policy: Any, enc: Any) -> tuple[int, int, int]:
    """(C, H, W) of `enc.backbone`'s feature map for the image size the encoder sees (crop, resize or raw)."""
    import torch

    cfg = policy.config
    h, w = cfg.crop_shape or cfg.resize_shape or next(iter(cfg.image_features.values())).shape[1:]
    device = next(enc.backbone.parameters()).device
    with torch.no_grad():
        return tuple(enc.backbone(torch.zeros(1, 3, h, w, device=device)).shape[1:])


def _resize_pools(policy: Any) -> None:
    from lerobot.policies.diffusion.modeling_diffusion import SpatialSoftmax

    for enc in _rgb_encoders(policy):
        device = next(enc.backbone.parameters()).device
        enc.pool = SpatialSoftmax(_trunk_output(policy, enc), num_kp=policy.config.spatial_softmax_num_keypoints
                                  ).to(device)


def _film_module(feature_dim: int, channels: int) -> Any:
    import torch.nn as nn

    class InstructionFiLM(nn.Module):
        """fmap * (1 + gamma(instr)) + beta(instr) per channel; the instruction is set by the caller."""

        def __init__(self) -> None:
            super().__init__()
            self.proj = nn.Linear(feature_dim, 2 * channels)
            nn.init.zeros_(self.proj.weight)
            nn.init.zeros_(self.proj.bias)
            self.instruction = None  # (N, feature_dim), N = the number of images in the call

        def forward(self, fmap: Any) -> Any:
            if self.instruction is None:
                raise DreamgenError("instruction FiLM called without an instruction feature")
            gamma, beta = self.proj(self.instruction.to(fmap.dtype)).chunk(2, dim=-1)
            return fmap * (1 + gamma[..., None, None]) + beta[..., None, None]

    return InstructionFiLM()


def _instruction_dim(policy: Any, what: str) -> int:
    feat = policy.config.input_features.get(ENV_STATE_KEY)
    if feat is None:
        raise DreamgenError(f"{what} needs the instruction feature ({ENV_STATE_KEY}); train with task_conditioning bow")
    return int(feat.shape[0])


def add_instruction_film(policy: Any) -> None:
    """Append an instruction FiLM to every image encoder's trunk (fed by `_conditioning_with_film`)."""
    dim = _instruction_dim(policy, "vision_instruction_film")
    for enc in _rgb_encoders(policy):
        channels = _trunk_output(policy, enc)[0]
        enc.backbone.append(_film_module(dim, channels).to(next(enc.backbone.parameters()).device))


def _attended_pool(pool: Any, feature_dim: int, slots: int, names: tuple[str, ...] = ()) -> Any:
    import torch
    import torch.nn as nn

    from dreamgen.policy.task_encoding import bow_feature

    class AttendedKeypoints(nn.Module):
        """LeRobot's SpatialSoftmax, whose last `slots` keypoints are replaced by softmax(W instr)-weighted
        mixes of all keypoints: the named object's coordinates as a linear input to the UNet (its conditioning
        MLPs have no hidden layer in which to pick a keypoint by instruction). W starts at zero (plain means).
        The logits are scaled by ATTEND_SCALE: the instruction feature is l2-normalised (entries ~0.3) and Adam
        moves W by ~lr a step, so unscaled logits stayed within 0.2 of uniform after 2,500 steps (measured:
        top weight 0.04 of 32 keypoints, RESULTS.md round 4)."""

        def __init__(self) -> None:
            super().__init__()
            self.pool = pool
            self.attend = nn.Linear(feature_dim, slots * pool._out_c)
            nn.init.zeros_(self.attend.weight)
            nn.init.zeros_(self.attend.bias)
            self.slots, self.instruction = slots, None
            # grounding by name: the instruction feature's cosine with each keypoint name's feature (the same
            # hashed bag of words), so the first slot starts as, and stays, the keypoint the instruction names
            self.register_buffer("names", torch.from_numpy(np.stack([bow_feature(n, feature_dim) for n in names]))
                                 if names else torch.zeros(0, feature_dim), persistent=False)

        def forward(self, features: Any) -> Any:
            if self.instruction is None:
                raise DreamgenError("attended keypoints called without an instruction feature")
            kp = self.pool(features)  # (N, K, 2)
            instr = self.instruction.to(kp.dtype)
            logits = ATTEND_SCALE * self.attend(instr).view(len(kp), self.slots, kp.shape[1])
            mixed = torch.softmax(logits, dim=-1) @ kp  # (N, slots, 2)
            if len(self.names):
                sim = GROUND_SCALE * instr @ self.names.to(kp.dtype).T  # (N, names)
                mixed[:, 0] = (torch.softmax(sim, dim=-1)[:, None] @ kp[:, : len(self.names)])[:, 0]
            return torch.cat([kp[:, : kp.shape[1] - self.slots], mixed], dim=1)

    return AttendedKeypoints()


def add_attended_keypoints(policy: Any, slots: int, names: tuple[str, ...] = ()) -> None:
    """Wrap every encoder's spatial softmax so its last `slots` keypoints follow the instruction (the first of
    them by name when `names` label the first keypoints: a pretrained trunk's head, `trunk_keypoint_names`)."""
    dim = _instruction_dim(policy, "vision_attended_keypoints")
    for enc in _rgb_encoders(policy):
        if slots + len(names) > enc.pool._out_c:
            raise DreamgenError(f"vision_attended_keypoints {slots} + {len(names)} named keypoints exceed the "
                                f"{enc.pool._out_c} keypoints")
        enc.pool = _attended_pool(enc.pool, dim, slots, names).to(next(enc.backbone.parameters()).device)


def trunk_keypoint_names(folder: str | Path) -> tuple[str, ...]:
    """The names of a pretrained trunk's head keypoints (trunk.json), which seed the policy's first keypoints."""
    import json

    meta = resolve_trunk_folder(folder) / "trunk.json"
    if not meta.is_file():
        raise DreamgenError(f"vision_grounded_keypoints: {meta} not found (made by `dreamgen toyworld pretrain-trunk`)")
    return tuple(json.loads(meta.read_text())["keypoints"])


def freeze_trunk(policy: Any) -> int:
    """Stop training every image encoder's trunk (its FiLM, keypoint layer and projection stay trainable);
    returns the number of frozen parameters. Used with vision_pretrained_trunk."""
    frozen = 0
    for enc in _rgb_encoders(policy):
        for m in enc.backbone.children():
            if type(m).__name__ != "InstructionFiLM":
                for p in m.parameters():
                    p.requires_grad_(False)
                    frozen += p.numel()
    return frozen


def _conditioning_with_film(core_cls: Any) -> Any:
    """LeRobot's `_prepare_global_conditioning`, with each encoder's FiLM given the instruction feature of
    the images it encodes, in LeRobot's own image order ((b s n) shared, (b s) per camera)."""
    import einops

    original = core_cls._prepare_global_conditioning

    def prepare(self: Any, batch: dict[str, Any]) -> Any:
        instr = batch[ENV_STATE_KEY]  # (b, s, d)
        encoders = list(self.rgb_encoder) if self.config.use_separate_rgb_encoder_per_camera else [self.rgb_encoder]
        n_cams = 1 if len(encoders) > 1 else len(self.config.image_features)
        flat = einops.repeat(instr, "b s d -> (b s n) d", n=n_cams)
        takers = [m for enc in encoders for m in (enc.backbone[-1], enc.pool) if hasattr(m, "instruction")]
        for m in takers:
            m.instruction = flat
        try:
            return original(self, batch)
        finally:
            for m in takers:
                m.instruction = None

    return prepare


def adapt_image_encoder(policy: Any, spec: VisionSpec) -> None:
    """Apply `spec` to a freshly built LeRobot diffusion policy (before loading or training weights)."""
    truncate_vision_trunk(policy, spec.trunk_layers)
    if spec.instruction_film:
        add_instruction_film(policy)
    if spec.attended_keypoints:
        add_attended_keypoints(policy, spec.attended_keypoints, spec.grounded_names)
    if spec.needs_instruction:
        core = policy.diffusion
        core._prepare_global_conditioning = types.MethodType(_conditioning_with_film(type(core)), core)


def build_adapted(policy_cls: Any, cfg: Any, folder: Path, spec: VisionSpec) -> Any:
    """A policy of `policy_cls` with the adapted encoder, weights loaded strictly from `folder/model.safetensors`."""
    policy = policy_cls(cfg)
    adapt_image_encoder(policy, spec)
    return load_adapted_weights(policy, folder, spec)


def load_adapted_weights(policy: Any, folder: Path, spec: VisionSpec) -> Any:
    """Load `folder/model.safetensors` strictly into a policy whose encoder is already adapted (fp16 files too)."""
    from safetensors.torch import load_file

    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise DreamgenError(f"{folder}: no model.safetensors")
    state = load_file(str(weights))
    try:
        policy.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()}, strict=True)
    except RuntimeError as exc:
        raise DreamgenError(f"{weights}: weights do not match the image encoder {spec}: "
                            f"{str(exc).splitlines()[0]}") from None
    return policy



def load_pretrained_trunk(policy: Any, folder: str | Path) -> dict[str, Any]:
    """Start every image encoder from a pretrained trunk (`dreamgen toyworld pretrain-trunk`'s folder): the
    trunk weights strictly, and its keypoint head into the first keypoints of the spatial softmax (the rest
    keep LeRobot's initialisation). Returns provenance for dreamgen_policy.json."""
    import json

    import torch
    from safetensors.torch import load_file

    folder = resolve_trunk_folder(folder)
    weights, meta = folder / "trunk.safetensors", folder / "trunk.json"
    if not (weights.is_file() and meta.is_file()):
        raise DreamgenError(f"vision_pretrained_trunk {folder}: needs trunk.safetensors and trunk.json "
                            "(made by `dreamgen toyworld pretrain-trunk`)")
    state = load_file(str(weights))
    trunk = {k[len("trunk."):]: v.float() for k, v in state.items() if k.startswith("trunk.")}
    head = {k[len("head."):]: v.float() for k, v in state.items() if k.startswith("head.")}
    for enc in _rgb_encoders(policy):
        layers = [m for m in enc.backbone.children() if type(m).__name__ != "InstructionFiLM"]
        try:
            torch.nn.Sequential(*layers).load_state_dict(trunk, strict=True)
        except RuntimeError as exc:
            raise DreamgenError(f"{weights} does not fit the policy's image trunk (vision_trunk_layers "
                                f"{json.loads(meta.read_text())['recipe'].get('layers')} in the file): "
                                f"{str(exc).splitlines()[0]}") from None
        conv = getattr(getattr(enc.pool, "pool", enc.pool), "nets", None)
        if head and conv is not None and conv.weight.shape[1:] == head["weight"].shape[1:]:
            k = min(conv.weight.shape[0], head["weight"].shape[0])
            with torch.no_grad():
                conv.weight[:k] = head["weight"][:k].to(conv.weight)
                conv.bias[:k] = head["bias"][:k].to(conv.bias)
    return trunk_provenance(folder)


def grounded_names(cfg: Any) -> tuple[str, ...]:
    """The keypoint names a training config grounds by (none unless vision_grounded_keypoints)."""
    return trunk_keypoint_names(cfg.vision_pretrained_trunk) if cfg.vision_grounded_keypoints else ()


def resolve_trunk_folder(folder: str | Path) -> Path:
    """A relative trunk folder is looked up in the working directory, then in the dreamgen checkout (where the
    shipped presets' `checkpoints/toyworld_trunk` lives), so a preset works from any directory of a checkout."""
    path = Path(folder)
    if path.is_absolute() or path.exists():
        return path
    checkout = Path(__file__).resolve().parents[2] / path
    return checkout if checkout.exists() else path


def trunk_provenance(folder: str | Path | None) -> dict[str, str] | None:
    """Where an image trunk started from (None: LeRobot's initialisation), with its weights' hash."""
    if not folder:
        return None
    import hashlib

    weights = resolve_trunk_folder(folder) / "trunk.safetensors"
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()[:16] if weights.is_file() else "missing"
    return {"path": str(folder), "sha256": digest}
