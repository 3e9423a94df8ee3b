"""The local Qwen-VL judge end to end with a tiny random Qwen2.5-VL built from config, its tokenizer and
processor built offline and saved to a folder that the judge loads like a real checkpoint; then
`eval_sr_qwen_whole`, `eval_qwen_pa`, `dreamgen bench` and `dreamgen filter` on CPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

try:  # tests/ may or may not be a package
    from tests.test_bench_core import make_dreams
except ImportError:
    from test_bench_core import make_dreams

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from dreamgenbench import eval_qwen_pa, eval_sr_qwen_whole, read_scores  # noqa: E402

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
           "<|image_pad|>", "<|video_pad|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% if m['content'] is string %}{{ m['content'] }}"
    "{% else %}{% for c in m['content'] %}{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>{% else %}{{ c['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tiny_qwen(folder: Path, answer_one: bool) -> Path:
    """A ~100k-parameter Qwen2.5-VL. Byte-level BPE vocabulary with '1' as token 0; with
    `answer_one` the final norm is zeroed, so all logits tie and greedy decoding says '1'."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
    from transformers.models.qwen2_5_vl.processing_qwen2_5_vl import Qwen2_5_VLProcessor
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet(), key=lambda c: (c != "1", c))
    vocab = {c: i for i, c in enumerate(alphabet)}
    for s in SPECIAL:
        vocab[s] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(SPECIAL)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    processor = Qwen2_5_VLProcessor(image_processor=Qwen2VLImageProcessor(), tokenizer=tokenizer,
                                    video_processor=Qwen2VLVideoProcessor(), chat_template=CHAT_TEMPLATE)
    cfg = Qwen2_5_VLConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1,
                         rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
                         bos_token_id=vocab["<|endoftext|>"], eos_token_id=vocab["<|im_end|>"],
                         pad_token_id=vocab["<|endoftext|>"]),
        vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=32,
                           fullatt_block_indexes=[1], window_size=56),
        image_token_id=vocab["<|image_pad|>"], video_token_id=vocab["<|video_pad|>"],
        vision_start_token_id=vocab["<|vision_start|>"], vision_end_token_id=vocab["<|vision_end|>"])
    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration(cfg).eval()
    if answer_one:
        with torch.no_grad():
            model.model.language_model.norm.weight.zero_()
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_qwen(tmp_path_factory):
    return build_tiny_qwen(tmp_path_factory.mktemp("tiny_qwen"), answer_one=True)


@pytest.fixture(scope="module")
def dreams(tmp_path_factory):
    root = tmp_path_factory.mktemp("dreams")
    make_dreams(root / "cosmos" / "gr1_object", n=2, frames=12, size=(48, 64))
    make_dreams(root / "wan" / "gr1_object", n=1, frames=12, size=(48, 64))
    return root


def test_eval_sr_qwen_whole_and_pa(tiny_qwen, dreams, tmp_path, capsys):
    video_dir = dreams / "cosmos"
    out = tmp_path / "if.csv"
    args = ["--video_dir", str(video_dir), "--output_csv", str(out), "--device", "cpu", "--model", str(tiny_qwen),
            "--max_new_tokens", "1", "--zeroshot", "false"]
    assert eval_sr_qwen_whole.main(args) == 0
    assert "Average prediction (1=Yes rate): 1.0000 (2/2)" in capsys.readouterr().out
    rows = read_scores(out)
    assert [r.prediction for r in rows.values()] == ["1", "1"] and [r.raw_reply for r in rows.values()] == ["1", "1"]
    summary = json.loads(out.with_name("if.summary.json").read_text())
    assert summary["judge"] == "qwen-vl" and summary["model"] == str(tiny_qwen) and summary["zeroshot"] is False
    assert summary["judge_settings"]["if_num_frames"] == 49 and summary["judge_settings"]["if_scale"] == 0.3
    assert summary["judge_settings"]["architecture"] == "Qwen2_5_VLForConditionalGeneration"

    pa_out = tmp_path / "pa.csv"
    assert eval_qwen_pa.main(["--video_dir", str(video_dir), "--output_csv", str(pa_out), "--device", "cpu",
                              "--model", str(tiny_qwen), "--max_new_tokens", "1"]) == 0
    pa = json.loads(pa_out.with_name("pa.summary.json").read_text())
    assert (pa["task"], pa["n"], pa["score"]) == ("pa", 2, 1.0)


def test_random_qwen_reply_goes_through_the_parser(tmp_path):
    """An untouched random model answers gibberish: the raw reply is kept and the item is counted as
    failed unless the reply happens to parse, never silently scored 0."""
    from dreamgenbench.judges import QwenVLJudge, QwenVLJudgeConfig
    from dreamgenbench.prompts import parse_reply
    from dreamgenbench.scoring import score_videos

    folder = build_tiny_qwen(tmp_path / "random_qwen", answer_one=False)
    make_dreams(tmp_path / "d", n=1, frames=6)
    judge = QwenVLJudge(QwenVLJudgeConfig(model=str(folder), device="cpu", if_num_frames=8))
    s = score_videos(tmp_path / "d", judge, "if", tmp_path / "r.csv", progress=False)
    (row,) = read_scores(tmp_path / "r.csv").values()
    expected = parse_reply(row.raw_reply)
    assert row.prediction == ("failed" if expected is None else str(expected))
    assert s.n + s.n_failed == 1


def test_qwen_judge_bad_model_folder(tmp_path):
    from dreamgen.errors import DreamgenError
    from dreamgenbench.judges import QwenVLJudge, QwenVLJudgeConfig

    with pytest.raises(DreamgenError, match="not found"):
        QwenVLJudge(QwenVLJudgeConfig(model=str(tmp_path / "nope"), device="cpu"))
    (tmp_path / "empty_model").mkdir()
    with pytest.raises(DreamgenError, match="no config.json"):
        QwenVLJudge(QwenVLJudgeConfig(model=str(tmp_path / "empty_model"), device="cpu"))


def test_dreamgen_bench_and_filter_cli(tiny_qwen, dreams, tmp_path):
    from typer.testing import CliRunner

    from dreamgen.cli import app

    out = tmp_path / "bench"
    runner = CliRunner()
    res = runner.invoke(app, ["bench", str(dreams), "--if", "--pa", "--judge", "qwen", "--model", str(tiny_qwen),
                              "--device", "cpu", "--out", str(out), "--zeroshot", "--max-new-tokens", "1"])
    assert res.exit_code == 0, res.output
    # the paper's table shape: one row per model, one column per split
    assert "| model | gr1_object |" in res.output
    assert "| cosmos | IF 1.000 / PA 1.000 |" in res.output and "| wan | IF 1.000 / PA 1.000 |" in res.output
    if_csv = out / "cosmos" / "gr1_object" / "if.csv"
    assert len(read_scores(if_csv)) == 2
    assert json.loads(if_csv.with_name("if.summary.json").read_text())["zeroshot"] is True
    pa_csvs = list((out / "cosmos" / "gr1_object").glob("pa_*.csv"))
    assert len(pa_csvs) == 1
    assert (out / "table.md").read_text().startswith("| model |")
    assert len(json.loads((out / "summary.json").read_text())["cells"]) == 2

    res = runner.invoke(app, ["filter", "--scores", str(if_csv), "--scores", str(pa_csvs[0]), "--min-if", "1",
                              "--min-pa", "1", "--out", str(tmp_path / "kept")])
    assert res.exit_code == 0, res.output
    assert "kept 2, rejected 0" in res.output
    kept = sorted(p.name for p in (tmp_path / "kept").glob("*.mp4"))
    assert kept == sorted(p.name for p in (dreams / "cosmos" / "gr1_object").glob("*.mp4"))
    assert (tmp_path / "kept" / "manifest.json").is_file()

    res = runner.invoke(app, ["bench", str(tmp_path / "kept" / "none"), "--if", "--model", str(tiny_qwen)])
    assert res.exit_code != 0
