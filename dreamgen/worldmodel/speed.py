"""Generation speed levers as one typed settings object, applied to a loaded world model's transformer.

Every lever is a library call (torch.compile, diffusers' cache hooks, torchao FP8, diffusers attention
dispatch / torch flex attention); this module only chooses, checks and records them:

- `compile`: torch.compile mode ("default", "max-autotune-no-cudagraphs", "max-autotune",
  "reduce-overhead"). Whole transformer when no cache hook / window is on; otherwise each transformer
  block on its own (regional compilation: the hooks' skip decisions and the window's mask building stay
  in Python).
- `cache` + `cache_threshold`: step caching through diffusers' hooks on `transformer_blocks`:
  "fbc" (`apply_first_block_cache`; threshold = relative change of the first block's residual below
  which the other blocks are skipped), "taylorseer" (`apply_taylorseer_cache`, lite mode; threshold =
  full computation every N steps), "faster" (`apply_faster_cache`; threshold = compute the
  unconditional half of the CFG batch every N steps, approximate it in between; attention every 2nd
  step), "mag" (`apply_mag_cache`; threshold = accumulated error budget; needs `mag_ratios`, measured
  by `calibrate_mag_ratios`).
- `fp8`: FP8 (e4m3, dynamic per-row activation scales) linear layers in the transformer blocks via
  torchao (`pip install dreamgen[fast]`); CUDA with compute capability >= 8.9 only.
- `attention_backend`: a diffusers attention dispatcher name (e.g. "_native_cudnn", "flash").
- `window` (T, H, W): block-sparse local spatio-temporal self-attention via diffusers' `flex`
  backend: each latent token attends to tokens within T latent frames / H / W patches of itself and to
  the conditioning (first) latent frame. Approximating; flex attention is only fast compiled.

Numerics-only levers (compile, attention backend) go through `gates.numerics_gate`; approximating
ones (cache, fp8, window) through `gates.dream_gate`.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch

from dreamgen.errors import DreamgenError

log = logging.getLogger(__name__)

COMPILE_MODES = ("default", "max-autotune-no-cudagraphs", "max-autotune", "reduce-overhead")
CACHE_KINDS = ("fbc", "taylorseer", "faster", "mag")
# the default threshold of each cache kind (see the module docstring for its meaning)
CACHE_DEFAULTS = {"fbc": 0.05, "taylorseer": 3, "faster": 3, "mag": 0.06}


@dataclass(frozen=True)
class SpeedSettings:
    compile: str | None = None  # torch.compile mode; None = eager
    cache: str | None = None  # one of CACHE_KINDS
    cache_threshold: float | None = None  # None = CACHE_DEFAULTS[cache]
    fp8: bool = False
    attention_backend: str | None = None
    window: tuple[int, int, int] | None = None  # (latent frames, patch rows, patch cols) either side
    compile_backend: str = "inductor"  # tests use "aot_eager" (no C++ toolchain needed, fast)
    mag_ratios: tuple[float, ...] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.compile is not None and self.compile not in COMPILE_MODES:
            raise DreamgenError(f"--compile-mode must be one of {', '.join(COMPILE_MODES)}; got {self.compile!r}")
        if self.cache is not None and self.cache not in CACHE_KINDS:
            raise DreamgenError(f"--cache must be one of {', '.join(CACHE_KINDS)} (optionally KIND:THRESHOLD); "
                                f"got {self.cache!r}")
        t = self.cache_threshold
        if t is not None and (self.cache is None or not (t > 0) or t != t):
            raise DreamgenError(f"--cache threshold must be a positive number after a cache kind; got {t!r}")
        if self.cache in ("taylorseer", "faster") and t is not None and (t != int(t) or t < 2):
            raise DreamgenError(f"--cache {self.cache}:N needs a whole number of steps N >= 2; got {t!r}")
        if self.window is not None and (len(self.window) != 3 or min(self.window) < 0):
            raise DreamgenError(f"--attention-window must be T,H,W (>= 0 each); got {self.window!r}")

    @property
    def threshold(self) -> float | None:
        if self.cache is None:
            return None
        return CACHE_DEFAULTS[self.cache] if self.cache_threshold is None else self.cache_threshold

    @property
    def is_stock(self) -> bool:
        return self == SpeedSettings(compile_backend=self.compile_backend)

    def record(self) -> dict[str, Any]:
        """What a sidecar / results row stores: every lever, on or off."""
        d = asdict(self)
        d.pop("mag_ratios")
        d["cache_threshold"] = self.threshold
        d["window"] = list(self.window) if self.window else None
        return d


def approximating_levers(settings: SpeedSettings) -> dict[str, Any]:
    """The levers on in `settings` that change the output beyond float rounding (cache, fp8, window)."""
    rec = settings.record()
    return {k: rec[k] for k, on in (("cache", settings.cache), ("cache_threshold", settings.cache),
                                    ("fp8", settings.fp8), ("window", settings.window)) if on}


# `dreamgen generate --fast`: the documented stack. Compile (numerics-only) + FP8 linears (GPU only,
# skipped with the reason on other devices) + first-block cache at 0.05 (diffusers' default; the
# approximating gate decides whether it ships higher). Window attention is not in the stack: it changes
# what every token sees, for a model trained with full attention.
FAST = SpeedSettings(compile="max-autotune-no-cudagraphs", cache="fbc", cache_threshold=0.05, fp8=True)


def parse_cache(text: str | None) -> tuple[str | None, float | None]:
    """"fbc" / "fbc:0.1" / "none" -> (kind, threshold); one-line errors for anything else."""
    if text is None or text.strip().lower() in ("", "none", "off"):
        return None, None
    kind, _, thr = text.strip().lower().partition(":")
    if kind not in CACHE_KINDS:
        raise DreamgenError(f"--cache must be one of {', '.join(CACHE_KINDS)} (optionally KIND:THRESHOLD); "
                            f"got {text!r}")
    if not thr:
        return kind, None
    try:
        return kind, float(thr)
    except ValueError:
        raise DreamgenError(f"--cache {text!r}: the threshold after ':' must be a number") from None


def parse_window(text: str | None) -> tuple[int, int, int] | None:
    if text is None or text.strip().lower() in ("", "none", "off"):
        return None
    try:
        t, h, w = (int(x) for x in text.replace("x", ",").split(","))
    except ValueError:
        raise DreamgenError(f"--attention-window must be T,H,W (whole numbers); got {text!r}") from None
    return t, h, w


def settings_from_flags(fast: bool = False, compile: bool | str | None = None, cache: str | None = None,
                        fp8: bool | None = None, attention_backend: str | None = None,
                        window: str | None = None) -> SpeedSettings:
    """The CLI's flags -> SpeedSettings: `--fast` gives FAST, each explicit flag overrides it."""
    s = FAST if fast else SpeedSettings()
    changes: dict[str, Any] = {}
    if compile is not None:
        changes["compile"] = ("default" if compile is True else None) if isinstance(compile, bool) else (
            None if compile in ("none", "off", "") else compile)
    if cache is not None:
        changes["cache"], changes["cache_threshold"] = parse_cache(cache)
    if fp8 is not None:
        changes["fp8"] = fp8
    if attention_backend is not None:
        changes["attention_backend"] = attention_backend
    if window is not None:
        changes["window"] = parse_window(window)
    return replace(s, **changes)


# ----- applying -----------------------------------------------------------------------------------
def fp8_unavailable_reason(device: torch.device | str) -> str | None:
    """Why FP8 linears cannot run on `device` (None if they can)."""
    device = torch.device(device)
    if device.type != "cuda":
        return f"FP8 linears need a CUDA GPU with compute capability >= 8.9; this run is on {device.type}"
    cap = torch.cuda.get_device_capability(device)
    if cap < (8, 9):
        return f"FP8 linears need compute capability >= 8.9; {torch.cuda.get_device_name(device)} has {cap}"
    return None


def apply_speed(transformer: torch.nn.Module, settings: SpeedSettings,
                num_inference_steps: int | None = None) -> dict[str, Any]:
    """Apply `settings` to `transformer` in place (once per module). Returns the record of what is on;
    a lever that cannot run here is listed under "skipped" with the reason, which is also logged."""
    prev = getattr(transformer, "_dreamgen_speed", None)
    if prev is not None and (prev["settings"] == settings.record() or settings.is_stock):
        return prev if prev["settings"] == settings.record() else {"settings": settings.record(), "skipped": {}}
    if prev is not None and prev["settings"] != SpeedSettings().record():
        raise DreamgenError("this model already carries other speed settings; load it again to change them")
    device = next(transformer.parameters()).device
    skipped: dict[str, str] = {}
    if settings.attention_backend:
        try:
            transformer.set_attention_backend(settings.attention_backend)
        except Exception as exc:
            raise DreamgenError(f"--attention-backend {settings.attention_backend!r} is unavailable here "
                                f"({str(exc).splitlines()[0]})") from None
    if settings.window is not None:
        from dreamgen.worldmodel.speed_attention import apply_window_attention

        apply_window_attention(transformer, settings.window)
    if settings.fp8:
        reason = fp8_unavailable_reason(device)
        if reason:
            skipped["fp8"] = reason
            print(f"fp8 skipped: {reason}")
        else:
            quantize_fp8(transformer)
    if settings.cache:
        apply_cache(transformer, settings, num_inference_steps)
    if settings.compile:
        compile_transformer(transformer, settings)
    record = {"settings": settings.record(), "skipped": skipped}
    transformer._dreamgen_speed = record
    return record


def quantize_fp8(transformer: torch.nn.Module) -> None:
    """FP8 e4m3 weights + dynamic per-row FP8 activations for the blocks' linear layers (torchao)."""
    try:
        from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, PerRow, quantize_
    except ImportError:
        raise DreamgenError("--fp8 needs torchao: pip install 'dreamgen[fast]'") from None

    def in_blocks(mod: torch.nn.Module, name: str) -> bool:
        return (isinstance(mod, torch.nn.Linear) and (".transformer_blocks." in f".{name}" or ".blocks." in f".{name}")
                and mod.in_features % 16 == 0 and mod.out_features % 16 == 0)

    quantize_(transformer, Float8DynamicActivationFloat8WeightConfig(granularity=PerRow()), filter_fn=in_blocks)


def compile_transformer(transformer: torch.nn.Module, settings: SpeedSettings) -> None:
    kw = dict(mode=None if settings.compile == "default" else settings.compile, dynamic=False,
              backend=settings.compile_backend)
    if settings.compile_backend != "inductor":
        kw.pop("mode")  # modes are inductor options
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
    if settings.cache or settings.window:
        for block in _blocks(transformer):
            block.compile(**kw)
    else:
        transformer.compile(**kw)


def _blocks(transformer: torch.nn.Module) -> torch.nn.ModuleList:
    for name in ("transformer_blocks", "blocks"):
        blocks = getattr(transformer, name, None)
        if isinstance(blocks, torch.nn.ModuleList) and len(blocks):
            return blocks
    raise DreamgenError(f"{type(transformer).__name__}: no transformer_blocks to apply a cache to")


def _register_cosmos_block() -> None:
    """diffusers' block registry (used by the FBC / MagCache hooks to find a block's hidden states)
    lists Wan's block but not Cosmos-Predict2's; CosmosTransformerBlock returns its hidden states alone."""
    from diffusers.hooks._helpers import TransformerBlockMetadata, TransformerBlockRegistry
    from diffusers.models.transformers.transformer_cosmos import CosmosTransformerBlock

    try:
        TransformerBlockRegistry.get(CosmosTransformerBlock)
    except ValueError:
        TransformerBlockRegistry.register(CosmosTransformerBlock, TransformerBlockMetadata(
            return_hidden_states_index=0, return_encoder_hidden_states_index=None))


class _StepClock:
    """The denoising loop's current timestep on the 0..1000 scale, read by FasterCache's callbacks."""

    def __init__(self) -> None:
        self.timestep = 1000.0

    def __call__(self) -> float:
        return self.timestep


def apply_cache(transformer: torch.nn.Module, settings: SpeedSettings, num_inference_steps: int | None) -> None:
    from diffusers.hooks import (
        FasterCacheConfig,
        FirstBlockCacheConfig,
        MagCacheConfig,
        TaylorSeerCacheConfig,
        apply_faster_cache,
        apply_first_block_cache,
        apply_mag_cache,
        apply_taylorseer_cache,
    )

    _register_cosmos_block()
    _blocks(transformer)
    kind, thr = settings.cache, settings.threshold
    if kind == "fbc":
        apply_first_block_cache(transformer, FirstBlockCacheConfig(threshold=float(thr)))
    elif kind == "taylorseer":
        apply_taylorseer_cache(transformer, TaylorSeerCacheConfig(
            cache_interval=int(thr), disable_cache_before_step=3, max_order=1, use_lite_mode=True,
            taylor_factors_dtype=torch.float32))
    elif kind == "mag":
        if settings.mag_ratios is None:
            raise DreamgenError("--cache mag needs per-model magnitude ratios: measure them with "
                                "dreamgen.worldmodel.speed.calibrate_mag_ratios")
        if num_inference_steps is None:
            raise DreamgenError("--cache mag needs the number of sampling steps when it is applied")
        apply_mag_cache(transformer, MagCacheConfig(threshold=float(thr), num_inference_steps=num_inference_steps,
                                                    mag_ratios=list(settings.mag_ratios)))
    elif kind == "faster":
        clock = _StepClock()
        apply_faster_cache(transformer, FasterCacheConfig(
            spatial_attention_block_skip_range=2, spatial_attention_timestep_skip_range=(-1, 681),
            spatial_attention_block_identifiers=(r"transformer_blocks.*attn1", r"blocks.*attn1"),
            unconditional_batch_skip_range=int(thr), unconditional_batch_timestep_skip_range=(-1, 781),
            current_timestep_callback=clock, attention_weight_callback=lambda _: 0.5, tensor_format="BCFHW",
            _unconditional_conditional_input_kwargs_identifiers=[
                "hidden_states", "encoder_hidden_states", "timestep", "condition_mask", "encoder_hidden_states_image"]))
        transformer._dreamgen_clock = clock
    transformer._dreamgen_cache = kind


def calibrate_mag_ratios(run_once, transformer: torch.nn.Module, num_inference_steps: int) -> list[float]:
    """MagCache's per-model ratios: one full (never skipping) sampling run under diffusers' calibration
    hook, `run_once()` doing the sampling. The hook is told one step more than the run has, so it does
    not clear its ratios at the run's end before we read them; it is removed afterwards."""
    from diffusers.hooks import HookRegistry, MagCacheConfig, apply_mag_cache

    _register_cosmos_block()
    apply_mag_cache(transformer, MagCacheConfig(calibrate=True, num_inference_steps=num_inference_steps + 1))
    transformer._dreamgen_cache = "mag"
    try:
        run_once()
        ratios = _read_mag_ratios(transformer)
    finally:
        registry = HookRegistry.check_if_exists_or_initialize(transformer)
        for name in ("mag_cache_leader_block_hook", "mag_cache_block_hook"):
            registry.remove_hook(name, recurse=True)
        transformer._dreamgen_cache = None
    return ratios[:num_inference_steps]


def _read_mag_ratios(transformer: torch.nn.Module) -> list[float]:
    for block in _blocks(transformer):
        registry = getattr(block, "_diffusers_hook", None)
        for hook in (registry.hooks.values() if registry else ()):
            sm = getattr(hook, "state_manager", None)
            for state in (sm._state_cache.values() if sm else ()):
                ratios = getattr(state, "calibration_ratios", None)
                if ratios:
                    return [float(r) for r in ratios]
    raise DreamgenError("MagCache calibration recorded no ratios (did the run call the transformer?)")


# ----- inside the sampling loop ----------------------------------------------------------------------
def uses_cache(transformer: torch.nn.Module) -> bool:
    return getattr(transformer, "_dreamgen_cache", None) is not None


def cache_kind(transformer: torch.nn.Module) -> str | None:
    return getattr(transformer, "_dreamgen_cache", None)


def reset_cache(transformer: torch.nn.Module) -> None:
    """Forget the previous video's cached residuals (call before each video)."""
    if uses_cache(transformer):
        from diffusers.hooks import HookRegistry

        HookRegistry.check_if_exists_or_initialize(transformer).reset_stateful_hooks()


def step_context(transformer: torch.nn.Module, name: str, step: int, num_steps: int, t: float):
    """The cache hooks' per-call context (`name` keys their state: "cfg" for the fused batch,
    "cond"/"uncond" for separate passes); a no-op without a cache hook."""
    if not uses_cache(transformer):
        return contextlib.nullcontext()
    clock = getattr(transformer, "_dreamgen_clock", None)
    if clock is not None:
        clock.timestep = float(t) * 1000.0
    from diffusers.hooks.hooks import CacheContext, _set_cache_context

    @contextlib.contextmanager
    def ctx():
        _set_cache_context(transformer, CacheContext(name, step_index=step, num_inference_steps=num_steps,
                                                     timestep=float(t)))
        try:
            yield
        finally:
            _set_cache_context(transformer, None)

    return ctx()
