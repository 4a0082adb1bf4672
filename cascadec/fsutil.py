"""Atomic text writes for the compiler, the CLI and the benchmark scripts.

A file a user cares about (a rendered build, a formatted spec, a results table) is written to a temporary
name in its own directory and ``os.replace``d into place, so a reader or a crash sees the old file or the
new one, never a torn one (docs/ARCHITECTURE.md rule 6). This module imports only the standard library, so
any part of the project may use it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

DEFAULT_MODE = 0o644


def atomic_write_text(path: Path | str, text: str, *, mode: int | None = None) -> None:
    """Write ``text`` (UTF-8, newlines as given) to ``path`` atomically, creating missing parent directories.

    ``mode`` is the file's permission bits; None keeps those of the file being replaced, or gives
    ``0o644`` to a new file (``mkstemp`` alone would leave ``0o600``). The temporary file is removed when
    anything fails. Raises OSError when the directory cannot be written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode is None:
        mode = path.stat().st_mode & 0o7777 if path.exists() else DEFAULT_MODE
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
