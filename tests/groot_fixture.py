"""A tiny GR00T N1.7 base model folder for the tests (random weights, built from config, nothing downloaded).

`write_tiny_groot_base(folder)` writes what LeRobot's `groot` policy needs offline: the GR00T config.json
+ model.safetensors and a local Qwen3-VL backbone folder (2 layers, byte-level tokenizer, image and video
processor configs). It is also a template for the layout a real N1.7 checkpoint must have on disk.
"""

from __future__ import annotations

import json
from pathlib import Path

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


def _write_backbone(bb: Path, image_size: int, hidden: int) -> None:
    """The local Qwen3-VL backbone folder: byte-level tokenizer, image/video processors, a 2-layer config."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Qwen2VLImageProcessor, Qwen3VLConfig
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

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


def write_tiny_groot_base(folder: str | Path, *, max_state_dim: int = 8, max_action_dim: int = 8,
                          action_horizon: int = 8, image_size: int = 32, seed: int = 0) -> Path:
    """A complete, tiny GR00T N1.7 base model folder (random weights) with a local Qwen3-VL backbone."""
    import torch
    from lerobot.policies.groot.groot_n1_7 import GR00TN17, GR00TN17Config

    folder = Path(folder)
    bb = folder / BACKBONE_DIR
    hidden = 64
    _write_backbone(bb, image_size, hidden)

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
