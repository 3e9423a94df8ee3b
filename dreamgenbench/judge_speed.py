"""Seconds per video of the local Qwen-VL judge, measured with random weights (no checkpoint needed).

    python -m dreamgenbench.judge_speed --arch 7b --device cuda --dtype bfloat16 --videos 6

Builds the Qwen2.5-VL-7B-Instruct architecture from its config with random weights, a byte-level
tokenizer built offline, and synthetic dreams of the GR1 world-model size (93 frames at 432x768,
16 fps). It then times the IF path (49 images at 0.3 scale) and the PA path (2 fps video) exactly as
`dreamgen bench` runs them. With random weights the replies are gibberish; compute time does not
depend on the weights. `--arch tiny` is a CPU smoke run of the same code.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
           "<|image_pad|>", "<|video_pad|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% if m['content'] is string %}{{ m['content'] }}"
    "{% else %}{% for c in m['content'] %}{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>{% else %}{{ c['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

ARCHS = {
    # Qwen2.5-VL-7B-Instruct's published config.json
    "7b": dict(text=dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                         num_key_value_heads=4, mrope_section=[16, 24, 24], rope_theta=1e6, vocab_size=152064),
               vision=dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=3584,
                           fullatt_block_indexes=[7, 15, 23, 31], window_size=112)),
    "tiny": dict(text=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           num_key_value_heads=1, mrope_section=[2, 3, 3], rope_theta=1e4, vocab_size=None),
                 vision=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=32,
                             fullatt_block_indexes=[1], window_size=56)),
}


def build_random_qwen25vl(arch: str, dtype, device: str = "cpu"):
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
    from transformers.models.qwen2_5_vl.processing_qwen2_5_vl import Qwen2_5_VLProcessor
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    vocab = {c: i for i, c in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    for s in SPECIAL:
        vocab[s] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(SPECIAL)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    processor = Qwen2_5_VLProcessor(image_processor=Qwen2VLImageProcessor(), tokenizer=tokenizer,
                                    video_processor=Qwen2VLVideoProcessor(), chat_template=CHAT_TEMPLATE)
    a = ARCHS[arch]
    t = dict(a["text"])
    rope = {"rope_type": "default", "rope_theta": t.pop("rope_theta"), "mrope_section": t.pop("mrope_section")}
    t["vocab_size"] = t["vocab_size"] or len(vocab)
    cfg = Qwen2_5_VLConfig(
        text_config=dict(**t, rope_parameters=rope, eos_token_id=vocab["<|im_end|>"],
                         pad_token_id=vocab["<|endoftext|>"], bos_token_id=vocab["<|endoftext|>"]),
        vision_config=a["vision"], image_token_id=vocab["<|image_pad|>"], video_token_id=vocab["<|video_pad|>"],
        vision_start_token_id=vocab["<|vision_start|>"], vision_end_token_id=vocab["<|vision_end|>"])
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):  # initialise in place: 8B random parameters on the CPU take minutes
            model = Qwen2_5_VLForConditionalGeneration(cfg)
    finally:
        torch.set_default_dtype(torch.float32)
    return model.eval(), processor


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", choices=sorted(ARCHS), default="7b")
    p.add_argument("--device", default="cuda")
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--videos", type=int, default=6, help="videos timed per task (after one warm-up)")
    p.add_argument("--frames", type=int, default=93)
    p.add_argument("--height", type=int, default=432)
    p.add_argument("--width", type=int, default=768)
    p.add_argument("--fps", type=float, default=16.0)
    args = p.parse_args(argv)

    import torch

    from dreamgen.data.video import write_video
    from dreamgenbench.judges import QwenVLJudge, QwenVLJudgeConfig
    from dreamgenbench.prompts import build_prompt

    dtype = getattr(torch, args.dtype)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    model, processor = build_random_qwen25vl(args.arch, dtype, args.device)
    build_s = time.perf_counter() - t0
    judge = QwenVLJudge(QwenVLJudgeConfig(model=f"random-qwen2.5-vl-{args.arch}", device=args.device),
                        model=model, processor=processor)
    rng = np.random.default_rng(0)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i in range(args.videos + 1):
            # smooth moving blobs compress like real dreams; pure noise would make decoding the bottleneck
            base = rng.integers(0, 255, (args.height // 8, args.width // 8, 3), dtype=np.uint8)
            frames = np.stack([np.kron(np.roll(base, t, axis=1), np.ones((8, 8, 1), np.uint8))
                               for t in range(args.frames)])
            paths.append(write_video(Path(tmp) / f"{i}_pick_up_the_cup.mp4", frames, args.fps))
        for task in ("if", "pa"):
            q = build_prompt(task, "pick up the cup")
            judge.ask(paths[0], q, task)  # warm-up
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            times = []
            for path in paths[1:]:
                t = time.perf_counter()
                judge.ask(path, q, task)
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - t)
            peak = torch.cuda.max_memory_allocated() / 2**30 if args.device.startswith("cuda") else None
            results[task] = {"mean_s": round(float(np.mean(times)), 3), "min_s": round(float(np.min(times)), 3),
                             "peak_gib": None if peak is None else round(peak, 2)}
    info = {"arch": args.arch, "device": args.device, "dtype": args.dtype, "video": f"{args.frames}x"
            f"{args.height}x{args.width}@{args.fps:g}", "videos": args.videos, "build_s": round(build_s, 1),
            "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None, **results}
    print("| task | s/video (mean) | s/video (min) | peak GiB |\n|---|---|---|---|")
    for task in ("if", "pa"):
        r = results[task]
        print(f"| {task.upper()} | {r['mean_s']} | {r['min_s']} | {r['peak_gib']} |")
    print(json.dumps(info))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
