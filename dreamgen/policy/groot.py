"""GR00T N1.7 (LeRobot 0.6.1's `groot` policy) from local folders only.

LeRobot builds GR00T from a *base model folder* (`--policy.base_model_path`): the GR00T config.json +
model.safetensors, optional processor sidecars (processor_config.json, statistics.json,
embodiment_id.json) and, through the config's `model_name`, a Qwen3-VL backbone folder whose tokenizer,
image and video processor configs feed the VLM. Stock LeRobot hard-codes the hub id of the backbone in
its VLM processor step; `localize_groot_processors` points that step at the local backbone folder.

`write_tiny_groot_base(folder)` writes such a base folder with a tiny Qwen3-VL backbone built from
config (byte-level tokenizer, no files downloaded): what the tests train, and a template for the
layout a real N1.7 checkpoint must have on disk.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dreamgen.errors import DreamgenError

BACKBONE_DIR = "backbone"
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_end|>", "<|im_start|>", "<|vision_start|>", "<|vision_end|>",
                  "<|image_pad|>", "<|video_pad|>"]
# A minimal Qwen-style chat template: what GR00T's VLM step renders (images, then the instruction).
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for c in message['content'] %}"
    "{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% else %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _read(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DreamgenError(f"{path}: missing") from None
    except json.JSONDecodeError as exc:
        raise DreamgenError(f"{path}: invalid JSON ({exc.msg})") from None


def backbone_folder(base: Path) -> Path:
    """The Qwen3-VL folder a GR00T base config names (`model_name`), relative paths taken from `base`."""
    cfg = _read(base / "config.json")
    name = cfg.get("model_name")
    if not name:
        raise DreamgenError(f"{base / 'config.json'}: no model_name (the Qwen3-VL backbone folder)")
    p = Path(name).expanduser()
    if not p.is_absolute():
        p = (base / p) if (base / p).exists() else p
    return p


def check_groot_base(base: Path) -> None:
    """Every file GR00T needs offline, or a DreamgenError naming the missing one."""
    if not base.is_dir():
        raise DreamgenError(f"{base}: GR00T base model folder does not exist")
    cfg = _read(base / "config.json")
    if "type" in cfg:
        raise DreamgenError(
            f"{base}: this is a LeRobot policy checkpoint, not a GR00T base model; continue it with --resume "
            "or point --pretrained at the base model it was fine-tuned from"
        )
    if cfg.get("model_type") != "Gr00tN1d7":
        raise DreamgenError(f"{base / 'config.json'}: model_type {cfg.get('model_type')!r}, expected 'Gr00tN1d7'")
    if not any(base.glob("*.safetensors")):
        raise DreamgenError(f"{base}: missing model.safetensors (GR00T weights)")
    bb = backbone_folder(base)
    if not bb.is_dir():
        raise DreamgenError(
            f"{base / 'config.json'}: backbone {cfg.get('model_name')!r} is not a local folder; the hub is not "
            "used: download the Qwen3-VL/Cosmos-Reason2 folder and set model_name to its path"
        )
    for name in ("config.json", "tokenizer_config.json", "preprocessor_config.json",
                 "video_preprocessor_config.json"):
        if not (bb / name).is_file():
            raise DreamgenError(f"{bb}: missing {name} (Qwen3-VL backbone component)")


def localize_groot_processors(preprocessor: Any, base: Path) -> None:
    """Point GR00T's VLM-encode step at the local backbone folder instead of the hub id."""
    bb = str(backbone_folder(Path(base)))
    for step in getattr(preprocessor, "steps", []):
        if type(step).__name__ == "GrootN17VLMEncodeStep" and step.model_name != bb:
            step.model_name = bb
            step._proc = None


def write_tiny_groot_base(folder: str | Path, *, max_state_dim: int = 8, max_action_dim: int = 8,
                          action_horizon: int = 8, image_size: int = 32, seed: int = 0) -> Path:
    """A complete, tiny GR00T N1.7 base model folder (random weights) with a local Qwen3-VL backbone."""
    import torch
    from lerobot.policies.groot.groot_n1_7 import GR00TN17, GR00TN17Config
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Qwen2VLImageProcessor, Qwen3VLConfig
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

    folder = Path(folder)
    bb = folder / BACKBONE_DIR
    bb.mkdir(parents=True, exist_ok=True)

    # byte-level BPE without merges: any text tokenizes, 256 + 7 tokens
    vocab = {c: i for i, c in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<|endoftext|>", eos_token="<|im_end|>",
                                   chat_template=CHAT_TEMPLATE)
    fast.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS[2:]})
    fast.save_pretrained(bb)
    ids = {s: fast.convert_tokens_to_ids(s) for s in SPECIAL_TOKENS}

    patch, merge = 16, 2
    Qwen2VLImageProcessor(patch_size=patch, merge_size=merge, temporal_patch_size=2,
                          min_pixels=(patch * merge) ** 2, max_pixels=(2 * image_size) ** 2).save_pretrained(bb)
    Qwen3VLVideoProcessor(patch_size=patch, merge_size=merge, temporal_patch_size=2).save_pretrained(bb)
    hidden = 64
    Qwen3VLConfig(
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
        text_config=dict(
            hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2, num_attention_heads=2,
            num_key_value_heads=1, head_dim=32, vocab_size=len(fast), max_position_embeddings=4096,
            rope_scaling={"mrope_interleaved": True, "mrope_section": [6, 5, 5], "rope_type": "default"},
            rope_theta=10000, tie_word_embeddings=True, bos_token_id=ids["<|endoftext|>"],
            eos_token_id=ids["<|im_end|>"],
        ),
        vision_config=dict(
            depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=hidden, patch_size=patch,
            spatial_merge_size=merge, temporal_patch_size=2, num_position_embeddings=64,
            deepstack_visual_indexes=[0], in_channels=3,
        ),
    ).save_pretrained(bb)

    cfg = GR00TN17Config(
        model_name=str(bb.resolve()),
        backbone_model_type="qwen",
        backbone_embedding_dim=hidden,
        select_layer=2,
        max_state_dim=max_state_dim,
        max_action_dim=max_action_dim,
        action_horizon=action_horizon,
        hidden_size=32,
        input_embedding_dim=48,
        max_seq_len=64,
        max_num_embodiments=16,
        image_crop_size=[image_size, image_size],
        image_target_size=[image_size, image_size],
        diffusion_model_cfg={
            "positional_embeddings": None, "num_layers": 2, "num_attention_heads": 2, "attention_head_dim": 24,
            "norm_type": "ada_norm", "dropout": 0.0, "final_dropout": True, "output_dim": 32,
            "interleave_self_attention": True,
        },
        vl_self_attention_cfg={
            "positional_embeddings": None, "num_layers": 1, "num_attention_heads": 2, "attention_head_dim": 32,
            "dropout": 0.0, "final_dropout": True,
        },
        state_dropout_prob=0.0,
    )
    torch.manual_seed(seed)
    model = GR00TN17(cfg, load_backbone_weights=False)
    model.save_pretrained(folder)
    (folder / "processor_config.json").write_text(json.dumps({
        "processor_kwargs": {
            "image_crop_size": [image_size, image_size],
            "image_target_size": [image_size, image_size],
            "formalize_language": True,
            "use_percentiles": False,
            "use_albumentations": False,
        }
    }, indent=2))
    return folder
