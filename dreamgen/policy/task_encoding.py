"""Instruction features for policies that do not read text (LeRobot `diffusion`, `act`, `tdmpc`).

DreamGen's point is behaviour generalisation from dreamed videos of *new* instructions, so the policy
must see the instruction. ToyWorld samples the target object per episode and only the instruction
says which one; an image+state policy cannot do better than chance there.

The feature is a hashed bag of unigrams and bigrams: lower-cased words, each n-gram hashed with
zlib.crc32 (stable across processes and Python versions, unlike `hash()`) to a bucket and a sign,
counts summed and the vector L2-normalised. It is deterministic and stateless: no vocabulary, no
extra dataset column, and words never seen in training ("push", "left") still map to a defined
vector. The policy receives it as `observation.environment_state`, a plain vector input LeRobot's
diffusion/ACT policies concatenate to their conditioning, with identity normalisation.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dreamgen.errors import DreamgenError

TASK_FEATURE_KEY = "observation.environment_state"
KINDS = ("bow", "none")
DEFAULT_DIM = 128
# LeRobot policies whose models take `observation.environment_state` as an input vector.
ENV_STATE_POLICIES = frozenset({"diffusion", "act", "tdmpc"})
# ... of which these get the instruction feature by default (VLAs such as groot read the text themselves).
DEFAULT_BOW_POLICIES = frozenset({"diffusion", "act"})

_WORD = re.compile(r"[a-z0-9]+")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _bucket(token: str, dim: int) -> tuple[int, float]:
    h = zlib.crc32(token.encode("utf-8"))
    return h % dim, (1.0 if (h >> 31) & 1 == 0 else -1.0)


def bow_feature(text: str, dim: int = DEFAULT_DIM) -> np.ndarray:
    """Signed hashed bag of unigrams + bigrams, L2-normalised, float32 (dim,). Empty text -> zeros."""
    w = words(text)
    vec = np.zeros(dim, dtype=np.float64)
    grams = [f"u:{x}" for x in w] + [f"b:{a} {b}" for a, b in zip(w, w[1:], strict=False)]
    for g in grams:
        i, s = _bucket(g, dim)
        vec[i] += s
    n = np.linalg.norm(vec)
    return (vec / n if n > 0 else vec).astype(np.float32)


@dataclass(frozen=True)
class TaskEncoder:
    """`kind` "bow" (the feature above, `dim` wide) or "none" (the policy gets no instruction feature)."""

    kind: str = "bow"
    dim: int = DEFAULT_DIM

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise DreamgenError(f"task conditioning must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.kind == "bow" and not (isinstance(self.dim, int) and self.dim >= 8):
            raise DreamgenError(f"task feature dimension must be an integer >= 8, got {self.dim!r}")

    @property
    def enabled(self) -> bool:
        return self.kind != "none"

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) float32."""
        if not self.enabled:
            raise DreamgenError("task conditioning 'none' has no feature")
        cache = _cache_for(self.dim)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            t = str(t)
            v = cache.get(t)
            if v is None:
                v = cache[t] = bow_feature(t, self.dim)
            out[i] = v
        return out

    def tensor(self, texts: Sequence[str], steps: int | None = None, device: Any = None):
        """A torch batch (B, dim), or (B, steps, dim) for policies that take an observation history."""
        import torch

        t = torch.from_numpy(self.encode(texts))
        if steps is not None:
            t = t[:, None, :].expand(-1, steps, -1).contiguous()
        return t.to(device) if device is not None else t

    def feature(self) -> dict[str, Any]:
        """The LeRobot dataset-feature entry the policy is built from."""
        return {"dtype": "float32", "shape": (self.dim,), "names": [f"task_{i}" for i in range(self.dim)]}

    def stats(self) -> dict[str, np.ndarray]:
        """Identity normalisation: mean 0 / std 1 and min -1 / max 1 leave the (unit-norm) feature as it is."""
        z, o = np.zeros(self.dim, np.float32), np.ones(self.dim, np.float32)
        return {"mean": z, "std": o, "min": -o, "max": o, "q01": -o, "q99": o}

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "dim": self.dim, "key": TASK_FEATURE_KEY,
                "ngrams": [1, 2], "hash": "crc32", "normalise": "l2"} if self.enabled else {"kind": "none"}

    @classmethod
    def from_json(cls, d: dict[str, Any] | None) -> TaskEncoder:
        if not d:
            return cls("none")
        return cls(str(d.get("kind", "none")), int(d.get("dim", DEFAULT_DIM)))


_CACHES: dict[int, dict[str, np.ndarray]] = {}


def _cache_for(dim: int) -> dict[str, np.ndarray]:
    c = _CACHES.setdefault(dim, {})
    if len(c) > 100_000:  # instructions are few; bound it anyway
        c.clear()
    return c


def resolve_task_conditioning(policy: str, kind: str | None, dim: int = DEFAULT_DIM) -> TaskEncoder:
    """The encoder for `policy`: `kind` None means the default (bow for diffusion/act, none otherwise)."""
    if kind is None or kind == "auto":
        kind = "bow" if policy in DEFAULT_BOW_POLICIES else "none"
    enc = TaskEncoder(kind, dim)
    if enc.enabled and policy not in ENV_STATE_POLICIES:
        raise DreamgenError(
            f"--task-conditioning {kind}: policy {policy!r} does not take an observation.environment_state "
            f"input (policies that do: {', '.join(sorted(ENV_STATE_POLICIES))}); VLA policies read the "
            "instruction text themselves, use --task-conditioning none"
        )
    return enc
