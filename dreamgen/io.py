"""Safe file-system primitives shared by every stage.

One rule for writing: a result is written under a hidden temporary name beside its final place and
renamed when complete, so a crash never leaves a file or folder that looks finished; hidden partial
folders of a dead writer are removed by the next writer of the same output. One rule for reading
weights: no pickle ever (safetensors only, `torch.load` with `weights_only=True`), and a file that
is not what its name says fails with one line naming it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
from pathlib import Path
from typing import Any

from dreamgen.errors import DreamgenError

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


# ----- writing ---------------------------------------------------------------------------------------
def partial_path(final: str | Path) -> Path:
    """The hidden temporary sibling a writer of `final` works in: `.<name>.partial-<pid>`."""
    final = Path(final)
    return final.with_name(f".{final.name}.partial-{os.getpid()}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


_PARTIAL_PID = re.compile(r"\.partial-(\d+)$|\.(\d+)\.partial")


def _owner(name: str) -> int | None:
    m = _PARTIAL_PID.search(name)
    return int(m.group(1) or m.group(2)) if m else None


def _remove(p: Path) -> None:
    if p.is_dir():
        shutil.rmtree(p, ignore_errors=True)
    else:
        p.unlink(missing_ok=True)


def clean_stale_partials(final: str | Path) -> list[Path]:
    """Remove the hidden partial siblings of `final` (`.<name>.partial-<pid>`, `.<name>.<pid>.partial`)
    left by writers that are no longer running."""
    final = Path(final)
    if not final.parent.is_dir():
        return []
    removed = []
    for p in final.parent.glob(f".{final.name}.*partial*"):
        pid = _owner(p.name)
        if pid is not None and (pid == os.getpid() or _pid_alive(pid)):
            continue
        _remove(p)
        removed.append(p)
    return removed


def clean_stale_partials_in(folder: str | Path) -> list[Path]:
    """Remove every hidden partial file or folder in `folder` whose writer (by pid) is dead."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for p in folder.glob(".*partial*"):
        pid = _owner(p.name)
        if pid is not None and pid != os.getpid() and not _pid_alive(pid):
            _remove(p)
            removed.append(p)
    return removed


def to_json(data: Any, where: str | Path, **kw: Any) -> str:
    """json.dumps that refuses NaN/inf (never valid JSON, never a finished result)."""
    try:
        return json.dumps(data, allow_nan=False, **kw)
    except ValueError as exc:
        bad = _first_nonfinite(data)
        raise DreamgenError(f"{where}: refusing to write a non-finite number{f' at {bad}' if bad else ''} "
                            f"({exc})") from None


def _first_nonfinite(data: Any, path: str = "") -> str | None:
    if isinstance(data, float) and not math.isfinite(data):
        return path or "<root>"
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list | tuple) else []
    for k, v in items:
        found = _first_nonfinite(v, f"{path}.{k}" if path else str(k))
        if found:
            return found
    return None


def read_json(path: str | Path, error: type[DreamgenError] = DreamgenError) -> Any:
    """A JSON file's content; invalid JSON raises `error` naming the file."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise error(f"{path}: invalid JSON ({exc.msg})") from None


def atomic_write_text(path: str | Path, text: str) -> Path:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = partial_path(path)
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except PermissionError:
        raise DreamgenError(f"{path}: permission denied (cannot write here)") from None
    return path


def atomic_write_json(path: str | Path, data: Any, indent: int | None = 2, **kw: Any) -> Path:
    return atomic_write_text(path, to_json(data, path, indent=indent, **kw) + "\n")


def check_output_location(out: str | Path, flag: str, inputs: dict[str, str | Path | None] | None = None) -> Path:
    """Refuse an output whose nearest existing ancestor is not a writable folder, or that lies inside
    (or is) one of `inputs` ({flag: path})."""
    out = Path(out)
    for in_flag, inp in (inputs or {}).items():
        if inp is None:
            continue
        a, b = out.resolve(), Path(inp).resolve()
        if a == b or b in a.parents:
            raise DreamgenError(f"{flag} {out}: is inside the input {in_flag} {inp}; choose a folder outside it")
    probe = out
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise DreamgenError(f"{flag} {out}: {probe} is a file, not a folder")
    if probe.exists() and not os.access(probe, os.W_OK | os.X_OK):
        raise DreamgenError(f"{flag} {out}: {probe} is not writable (permission denied or read-only)")
    return out


# ----- reading ---------------------------------------------------------------------------------------
def fingerprint(path: str | Path, chunk: int = 1 << 20) -> str:
    """Content key of a file: size + SHA-1 of its first and last MiB (cheap for large videos)."""
    path = Path(path)
    h = hashlib.sha1()
    size = path.stat().st_size
    h.update(str(size).encode())
    with path.open("rb") as f:
        h.update(f.read(chunk))
        if size > chunk:
            f.seek(max(chunk, size - chunk))
            h.update(f.read(chunk))
    return h.hexdigest()[:16]


def check_safetensors(path: str | Path) -> Path:
    """Raise one line unless `path` is a readable safetensors file (a pickle renamed to .safetensors,
    a truncated download or an HTML error page all fail here, before any loader sees them)."""
    path = Path(path)
    if not path.is_file():
        raise DreamgenError(f"{path}: weights file not found")
    try:
        with path.open("rb") as f:
            head = f.read(8)
            n = int.from_bytes(head, "little") if len(head) == 8 else -1
            size = path.stat().st_size
            if not 2 <= n <= min(size - 8, 100 << 20):
                raise ValueError("bad header length")
            header = json.loads(f.read(n))
            if not isinstance(header, dict):
                raise ValueError("header is not a mapping")
    except PermissionError:
        raise DreamgenError(f"{path}: permission denied") from None
    except (ValueError, UnicodeDecodeError):
        raise DreamgenError(f"{path}: not a safetensors file (a pickle or a damaged download?); refusing to "
                            "load it") from None
    return path


def check_weights_folder(folder: str | Path) -> None:
    """Refuse a model folder whose weights are pickles (`.bin`, `.pt`, ...) and check every safetensors
    file in it (and one level of component sub-folders)."""
    folder = Path(folder)
    files = [p for p in list(folder.glob("*")) + list(folder.glob("*/*")) if p.is_file()]
    # a pickle beside safetensors weights is never read (diffusers/transformers prefer safetensors);
    # optimizer/training state is read only by safe_torch_load
    pickles = [p for p in files if p.suffix in PICKLE_SUFFIXES and not p.name.startswith(("training_", "optimizer"))
               and not any(q.suffix == ".safetensors" for q in p.parent.iterdir())]
    if pickles:
        raise DreamgenError(f"{pickles[0]}: pickle-format weights are never loaded (unsafe); convert them to "
                            ".safetensors (e.g. save_pretrained(..., safe_serialization=True))")
    for p in files:
        if p.suffix == ".safetensors":
            check_safetensors(p)


def safe_torch_load(path: str | Path, **kw: Any) -> Any:
    """torch.load with weights_only=True; anything else in the file is one line, never an unpickle."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise DreamgenError(f"{path}: file not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True, **kw)
    except Exception as exc:  # UnpicklingError, RuntimeError, EOFError ... all mean: not a safe state file
        # torch's own message advises weights_only=False: never pass that advice on for an untrusted file
        raise DreamgenError(f"{path}: not a loadable training-state file ({type(exc).__name__}; only tensors and "
                            "plain values are ever read from it)") from None
