"""Judge behind an OpenAI-compatible chat-completions server: GPT-4o (the reference's second IF judge),
or any vLLM / SGLang / other server through `base_url`.

Frames go as base64 PNG images (8 frames at half size, as the reference). The key comes from
`api_key` or `OPENAI_API_KEY` and is never printed or logged: error text is scrubbed of it. Retries
are ours (the client's are off) so every wait is visible: timeouts, connection errors, 429 (honouring
`Retry-After`) and 5xx are retried with exponential backoff; a bad request fails only that video; a
rejected key, an unknown model or an unreachable server stops the run.
"""

from __future__ import annotations

import logging
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from dreamgenbench.frames import png_data_uri, sample_frames
from dreamgenbench.judges.base import JudgeItemError, JudgeUnavailableError

logger = logging.getLogger(__name__)

NO_KEY_NEEDED = "EMPTY"  # what local servers (vLLM) accept when started without --api-key


@dataclass
class OpenAIJudgeConfig:
    model: str = "gpt-4o"
    base_url: str | None = None  # None: api.openai.com (or OPENAI_BASE_URL)
    api_key: str | None = field(default=None, repr=False)
    timeout_s: float = 60.0
    max_retries: int = 3  # attempts after the first one
    backoff_s: float = 1.0  # first wait; doubles each retry (plus jitter)
    max_backoff_s: float = 60.0
    num_frames: int = 8
    scale: float = 0.5
    seed: int = 0
    max_tokens: int = 4
    prompt_style: str = "gpt4o"


class OpenAIJudge:
    kind = "openai"

    def __init__(self, config: OpenAIJudgeConfig, sleep=time.sleep):
        from openai import OpenAI

        self.config = config
        self.model = config.model
        self.prompt_style = config.prompt_style
        base_url = config.base_url or os.environ.get("OPENAI_BASE_URL") or None
        key = config.api_key or os.environ.get("OPENAI_API_KEY")
        if not key:
            if base_url is None:
                raise JudgeUnavailableError(
                    "no OpenAI API key: set OPENAI_API_KEY or pass --api_key (or point --base-url at a "
                    "server that needs no key)")
            key = NO_KEY_NEEDED
        self._key = key
        self._base_url = base_url
        self._sleep = sleep
        self._client = OpenAI(api_key=key, base_url=base_url, timeout=config.timeout_s, max_retries=0)

    def describe(self) -> dict:
        d = asdict(self.config)
        d.pop("api_key")
        d["base_url"] = self._base_url or "https://api.openai.com/v1"
        return d

    def _scrub(self, text: str) -> str:
        if self._key and self._key != NO_KEY_NEEDED:
            text = text.replace(self._key, "***")
        return text

    def _wait(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.config.max_backoff_s)
        base = self.config.backoff_s * 2 ** attempt
        return min(base * (1 + 0.25 * random.random()), self.config.max_backoff_s)

    def ask(self, video_path: Path, question: str, task: str, instruction: str = "") -> str:
        import openai

        frames = sample_frames(video_path, self.config.num_frames, self.config.scale)
        content = [{"type": "text", "text": question}]
        content += [{"type": "image_url", "image_url": {"url": png_data_uri(f)}} for f in frames]
        messages = [{"role": "user", "content": content}]
        where = self._base_url or "api.openai.com"
        last_error = "no attempt made"
        for attempt in range(self.config.max_retries + 1):
            retry_after = None
            try:
                response = self._client.chat.completions.create(
                    model=self.config.model, messages=messages, seed=self.config.seed,
                    temperature=0.0, top_p=1.0, max_tokens=self.config.max_tokens)
                return self._reply_text(response)
            except openai.RateLimitError as exc:
                retry_after = _retry_after(exc)
                last_error = f"rate limited (429): {self._scrub(str(exc))}"
            except openai.APITimeoutError:
                last_error = f"no reply within {self.config.timeout_s:g}s"
            except openai.APIConnectionError as exc:
                last_error = f"cannot reach {where}: {self._scrub(str(exc.__cause__ or exc))}"
                if attempt == self.config.max_retries:
                    raise JudgeUnavailableError(f"judge server unreachable ({last_error})") from None
            except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
                raise JudgeUnavailableError(
                    f"{where} rejected the API key ({exc.status_code}): {self._scrub(exc.message)}") from None
            except openai.NotFoundError as exc:
                raise JudgeUnavailableError(
                    f"{where}: model {self.config.model!r} or endpoint not found: {self._scrub(exc.message)}"
                ) from None
            except openai.InternalServerError as exc:
                last_error = f"server error ({exc.status_code}): {self._scrub(exc.message)}"
            except openai.APIStatusError as exc:  # 400, 413, 422...: this request is bad, not the server
                raise JudgeItemError(f"request refused ({exc.status_code}): {self._scrub(exc.message)}") from None
            except (openai.APIResponseValidationError, ValueError) as exc:
                raise JudgeItemError(f"malformed reply from {where}: {self._scrub(str(exc))}") from None
            if attempt < self.config.max_retries:
                wait = self._wait(attempt, retry_after)
                logger.warning("%s: %s; retry %d/%d in %.1fs", video_path.name, last_error, attempt + 1,
                               self.config.max_retries, wait)
                self._sleep(wait)
        raise JudgeItemError(f"gave up after {self.config.max_retries + 1} attempts: {last_error}")

    @staticmethod
    def _reply_text(response) -> str:
        try:
            content = response.choices[0].message.content
        except (AttributeError, IndexError, TypeError):
            raise ValueError("no choices[0].message.content in the reply") from None
        if not isinstance(content, str):
            raise ValueError(f"reply content is {type(content).__name__}, not text")
        return content


def _retry_after(exc) -> float | None:
    try:
        value = exc.response.headers.get("retry-after")
        return float(value) if value is not None else None
    except (AttributeError, TypeError, ValueError):
        return None
