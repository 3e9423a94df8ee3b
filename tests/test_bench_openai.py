"""The OpenAI-compatible judge against a real HTTP server on 127.0.0.1 speaking chat-completions:
429 then success, a timeout, a malformed reply, a rejected key, an unreachable server, and the
reference entry point `eval_sr_gpt4o_whole` (zero-shot flag reaching the prompt, key never printed)."""

from __future__ import annotations

import base64
import json
import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

try:  # tests/ may or may not be a package
    from tests.test_bench_core import make_dreams
except ImportError:
    from test_bench_core import make_dreams

from dreamgen.errors import DreamgenError
from dreamgenbench import eval_sr_gpt4o_whole, read_scores, score_videos
from dreamgenbench.judges import JudgeUnavailableError, OpenAIJudge, OpenAIJudgeConfig

KEY = "sk-test-SECRET-0123456789"


class FakeChatServer:
    """Replies by instruction: the `script` maps a word found in the prompt to a list of actions
    ('429', 'sleep', 'malformed', '500', '401', or reply text), consumed one per request."""

    def __init__(self):
        self.requests: list[dict] = []
        self.script: dict[str, list[str]] = {}
        self.default = "1"
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                body["_auth"] = self.headers.get("Authorization")
                body["_path"] = self.path
                server.requests.append(body)
                text = body["messages"][0]["content"][0]["text"]
                action = server.default
                for word, actions in server.script.items():
                    if word in text and actions:
                        action = actions.pop(0)
                        break
                if action == "sleep":
                    time.sleep(1.5)
                    action = "1"
                if action == "429":
                    return self._send(429, {"error": {"message": "slow down", "type": "rate_limit"}},
                                      {"Retry-After": "0"})
                if action == "500":
                    return self._send(500, {"error": {"message": "boom"}})
                if action == "401":
                    return self._send(401, {"error": {"message": "Incorrect API key provided: " + KEY}})
                if action == "malformed":
                    return self._send(200, {"id": "x", "object": "chat.completion", "choices": []})
                self._send(200, {
                    "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": body["model"],
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": action}}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                })

            def _send(self, code, payload, headers=None):
                data = json.dumps(payload).encode()
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client timed out first
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    with FakeChatServer() as s:
        yield s


def judge_for(server, **kw):
    cfg = dict(model="judge-model", base_url=server.url, api_key=KEY, timeout_s=0.8, max_retries=2,
               backoff_s=0.01, num_frames=4)
    cfg.update(kw)
    return OpenAIJudge(OpenAIJudgeConfig(**cfg))


def test_openai_judge_retries_timeouts_and_malformed(server, tmp_path, caplog):
    paths = make_dreams(tmp_path / "dreams", n=3)
    # video 0: rate-limited once, then answers; video 1: times out on every attempt; video 2: malformed
    server.script = {"red cube": ["429", "1"], "drawer": ["sleep", "sleep", "sleep"], "blue block": ["malformed"]}
    out = tmp_path / "if.csv"
    with caplog.at_level(logging.WARNING):
        s = score_videos(tmp_path / "dreams", judge_for(server), "if", out, progress=False)
    rows = read_scores(out)
    r0, r1, r2 = (rows[str(p.resolve())] for p in paths)
    assert (r0.prediction, r0.raw_reply) == ("1", "1")
    assert r1.prediction == "failed" and "no reply within" in r1.raw_reply and "3 attempts" in r1.raw_reply
    assert r2.prediction == "failed" and "malformed" in r2.raw_reply
    assert (s.score, s.n, s.n_failed) == (1.0, 1, 2)
    assert "rate limited" in caplog.text
    assert KEY not in caplog.text and KEY not in out.read_text()

    # what went over the wire: the reference's GPT-4o prompt, base64 PNG frames, the key as bearer token
    req = server.requests[0]
    content = req["messages"][0]["content"]
    assert "'pick up the red cube'" in content[0]["text"]
    assert [c["type"] for c in content[1:]] == ["image_url"] * 4
    url = content[1]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    assert base64.b64decode(url.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert req["_auth"] == f"Bearer {KEY}" and req["_path"] == "/v1/chat/completions"
    assert req["temperature"] == 0.0 and req["model"] == "judge-model"
    assert s.judge_settings["base_url"] == server.url and "api_key" not in s.judge_settings
    assert KEY not in summary_text(out)

    # resume: only the two failed videos are asked again
    n_before = len(server.requests)
    server.default = "0"
    s2 = score_videos(tmp_path / "dreams", judge_for(server), "if", out, progress=False)
    assert len(server.requests) == n_before + 2
    assert (s2.n, s2.n_failed, s2.n_yes) == (3, 0, 1)


def summary_text(csv_path: Path) -> str:
    return csv_path.with_name(csv_path.stem + ".summary.json").read_text()


def test_openai_judge_fatal_errors_stop_the_run_and_keep_rows(server, tmp_path):
    make_dreams(tmp_path / "dreams", n=3)
    out = tmp_path / "if.csv"
    server.script = {"drawer": ["401"]}
    with pytest.raises(JudgeUnavailableError, match="rejected the API key") as info:
        score_videos(tmp_path / "dreams", judge_for(server), "if", out, progress=False)
    assert KEY not in str(info.value)
    assert len(read_scores(out)) == 1  # the first video's row stays

    # an unreachable server: nothing listens on this port
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    dead = judge_for(server, base_url=f"http://127.0.0.1:{port}/v1", max_retries=1)
    with pytest.raises(DreamgenError, match="unreachable"):
        score_videos(tmp_path / "dreams", dead, "if", out, progress=False)
    assert len(read_scores(out)) == 1


def test_missing_api_key(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(DreamgenError, match="OPENAI_API_KEY"):
        OpenAIJudge(OpenAIJudgeConfig(model="gpt-4o"))
    assert "SECRET" not in repr(OpenAIJudgeConfig(api_key=KEY))


@pytest.mark.parametrize("zeroshot", ["true", "false"])
def test_eval_sr_gpt4o_whole_entry_point(server, tmp_path, monkeypatch, capsys, zeroshot):
    make_dreams(tmp_path / "dreams", n=2)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    out = tmp_path / "gpt.csv"
    rc = eval_sr_gpt4o_whole.main(["--video_dir", str(tmp_path / "dreams"), "--output_csv", str(out),
                                   "--base_url", server.url, "--zeroshot", zeroshot, "--model", "m"])
    printed = capsys.readouterr()
    assert rc == 0 and "Average prediction (1=Yes rate): 1.0000 (2/2)" in printed.out
    assert KEY not in printed.out + printed.err
    texts = [r["messages"][0]["content"][0]["text"] for r in server.requests]
    assert len(texts) == 2
    assert all(("HUMAN HANDS" in t) == (zeroshot == "true") for t in texts)
    assert all(len(r["messages"][0]["content"]) == 9 for r in server.requests)  # text + 8 frames
    assert json.loads(summary_text(out))["zeroshot"] == (zeroshot == "true")


def test_entry_point_bad_inputs(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    make_dreams(tmp_path / "dreams", n=1)
    rc = eval_sr_gpt4o_whole.main(["--video_dir", str(tmp_path / "dreams"), "--output_csv", str(tmp_path / "o.csv")])
    assert rc == 2 and "OPENAI_API_KEY" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    rc = eval_sr_gpt4o_whole.main(["--video_dir", str(tmp_path / "empty"), "--output_csv", str(tmp_path / "o.csv")])
    err = capsys.readouterr().err
    assert rc == 2 and "no .mp4" in err and KEY not in err
    with pytest.raises(SystemExit):
        eval_sr_gpt4o_whole.main(["--video_dir", "x", "--zeroshot", "maybe"])
