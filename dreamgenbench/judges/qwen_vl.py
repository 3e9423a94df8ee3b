"""Local Qwen-VL judge (Qwen2.5-VL or Qwen3-VL) through transformers, from a local folder or the local
Hugging Face cache; nothing is ever downloaded.

How the video is shown follows the reference: for IF, 49 frames spread evenly over the clip, each
scaled by 0.3, sent as separate images; for PA, the clip itself as a video input sampled at 2 fps (what
the reference got from `qwen_vl_utils`). Decoding is greedy with 4 new tokens; the released Qwen2.5-VL
generation config (top_k=1) is greedy too.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

from dreamgen.errors import DreamgenError
from dreamgenbench.frames import VIDEO_FPS, sample_clip, sample_frames

logger = logging.getLogger(__name__)

DEFAULT_QWEN_MODEL = "Qwen/Qwen2.5-VL-7B-Instruct"


@dataclass
class QwenVLJudgeConfig:
    model: str = DEFAULT_QWEN_MODEL  # local folder, or a hub id already in the local HF cache
    device: str | None = None  # None: cuda if available, else cpu
    dtype: str = "auto"  # "auto" (checkpoint dtype; bf16 for released Qwen-VL), "bfloat16", "float32"
    if_num_frames: int = 49
    if_scale: float = 0.3
    pa_fps: float = VIDEO_FPS
    max_new_tokens: int = 4
    prompt_style: str = "qwen"


class QwenVLJudge:
    kind = "qwen-vl"

    def __init__(self, config: QwenVLJudgeConfig, model=None, processor=None):
        """`model`/`processor` may be passed already built (tests, or reuse across runs)."""
        import torch

        self.config = config
        self.model = str(config.model)
        self.prompt_style = config.prompt_style
        self.device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
        if model is None or processor is None:
            model, processor = self._load(config, self.device)
        self._model = model.eval()
        self._processor = processor

    @staticmethod
    def _load(config: QwenVLJudgeConfig, device: str):
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        source = config.model
        local = Path(source).expanduser()
        if local.exists() and not (local / "config.json").is_file():
            raise DreamgenError(f"{local}: not a transformers model folder (no config.json)")
        if not local.exists() and (source.startswith((".", "/", "~")) or source.count("/") != 1):
            raise DreamgenError(f"{source}: model folder not found")
        dtype = config.dtype if config.dtype == "auto" else getattr(torch, config.dtype)
        try:
            processor = AutoProcessor.from_pretrained(str(local) if local.exists() else source,
                                                      local_files_only=True)
            model = AutoModelForImageTextToText.from_pretrained(
                str(local) if local.exists() else source, dtype=dtype, local_files_only=True)
        except OSError as exc:
            raise DreamgenError(
                f"cannot load Qwen-VL judge from {source!r}: {exc}. Pass --model with a local folder "
                "holding a transformers Qwen2.5-VL/Qwen3-VL checkpoint (config.json, safetensors, processor files)."
            ) from None
        return model.to(device), processor

    def describe(self) -> dict:
        d = asdict(self.config)
        d["device"] = self.device
        d["architecture"] = type(self._model).__name__
        return d

    def ask(self, video_path: Path, question: str, task: str, instruction: str = "") -> str:
        import torch
        from transformers.video_utils import VideoMetadata

        if task == "pa":
            clip = sample_clip(video_path, self.config.pa_fps)
            content = [{"type": "video"}, {"type": "text", "text": question}]
            # the real source rate and frame indices: Qwen2.5-VL derives its temporal position step from
            # them, Qwen3-VL the timestamps it writes into the prompt
            meta = VideoMetadata(total_num_frames=clip.total_frames, fps=clip.fps, frames_indices=clip.indices)
            media = {"videos": [clip.frames], "video_metadata": [meta], "do_sample_frames": False}
        else:
            from PIL import Image

            frames = sample_frames(video_path, self.config.if_num_frames, self.config.if_scale)
            content = [{"type": "text", "text": question}] + [{"type": "image"} for _ in frames]
            media = {"images": [Image.fromarray(f) for f in frames]}
        messages = [{"role": "user", "content": content}]
        text = self._processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        inputs = self._processor(text=[text], padding=True, return_tensors="pt", **media).to(self.device)
        with torch.inference_mode():
            out = self._model.generate(**inputs, max_new_tokens=self.config.max_new_tokens, do_sample=False)
        new_tokens = out[:, inputs["input_ids"].shape[1]:]
        return self._processor.batch_decode(new_tokens, skip_special_tokens=True,
                                            clean_up_tokenization_spaces=True)[0]
