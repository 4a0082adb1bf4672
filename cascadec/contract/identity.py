"""The identity of a checkpoint that this file does not train (``checkpoints { name = model(...) }``), hashed
into the stage hashes of every stage that starts from it or distils from it, so that a changed teacher
re-runs what depends on it (as a changed parent stage does).

- A local directory (``model("./dir")``, or a finished stage of another run directory): the sha256 over
  every file's relative path and content (the checkpoint's weights, config and tokenizer). Hashing tens of
  GB on each compile would be slow, so each file's digest is cached by (absolute path, size, mtime in ns)
  under ``$CASCADEC_CACHE`` (default ``~/.cache/cascadec``) in ``identity.json``.
- A hub id: the id and, when the local Hugging Face cache has it, the commit its ``main`` ref points at.

Both the compiler (to hash) and the runtime (to verify the checkpoint did not change since compiling) use
:func:`identity_of`.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

_CHUNK = 1 << 20


def _cache_file() -> Path:
    root = os.environ.get("CASCADEC_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "cascadec")
    return Path(root) / "identity.json"


def _load_cache() -> dict[str, str]:
    try:
        data = json.loads(_cache_file().read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _save_cache(cache: dict[str, str]) -> None:
    path = _cache_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache, sort_keys=True))
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home only costs a re-hash next time


def _file_digest(path: str, cache: dict[str, str]) -> str:
    st = os.stat(path)
    key = f"{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}"
    if key not in cache:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(_CHUNK), b""):
                h.update(block)
        cache[key] = h.hexdigest()
    return cache[key]


def directory_identity(path: str) -> str:
    """sha256 over (relative path, content digest) of every file under ``path``, in sorted order.

    Raises:
        OSError: the directory or a file in it cannot be read.
    """
    cache = _load_cache()
    before = len(cache)
    h = hashlib.sha256()
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(root, name)
            h.update(os.path.relpath(full, path).encode() + b"\0" + _file_digest(full, cache).encode() + b"\n")
    if len(cache) != before:
        _save_cache(cache)
    return "sha256:" + h.hexdigest()


def hub_identity(repo_id: str) -> str:
    """``hub:<id>@<commit>`` when the local hub cache has a ``main`` ref for ``repo_id``, else ``hub:<id>``."""
    from huggingface_hub import constants

    ref = Path(constants.HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}" / "refs" / "main"
    try:
        return f"hub:{repo_id}@{ref.read_text().strip()}"
    except OSError:
        return f"hub:{repo_id}"


def run_stage_dir(run_dir: str, stage: str) -> str:
    """Where a finished stage of another run directory keeps its final checkpoint."""
    return os.path.join(run_dir, "stages", stage, "final")


def identity_of(kind: str, name: str, stage: str | None = None) -> str:
    """The identity of a checkpoint reference (``ModelRef`` kinds ``path``, ``hub`` or ``run``).

    Raises:
        OSError: a local checkpoint that cannot be read.
    """
    if kind == "hub":
        return hub_identity(name)
    return directory_identity(run_stage_dir(name, stage or "") if kind == "run" else name)
