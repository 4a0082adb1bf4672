"""Atomic writes for the compiler, the CLI, the runtime and the benchmark scripts.

A file a user cares about (a rendered build, a formatted spec, state, metrics, a results table) is written to
a temporary name in its own directory, fsynced and ``os.replace``d into place, and the directory entry is
flushed, so a reader, a crash or a resumed run after SIGKILL sees the old file or the new one, never a torn
one (docs/ARCHITECTURE.md rule 6). Standard library only.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def _read_umask() -> int:
    # The only portable way to read the umask is to set it; done once at import, before any thread
    # could create a file while it is 0.
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()
# the mode a plain open() gives a new file, so that a team sharing a build or run directory can read it
NEW_FILE_MODE = 0o666 & ~_UMASK
NEW_DIR_MODE = 0o777 & ~_UMASK


def fsync_dir(path: Path) -> None:
    # A rename is only durable once the directory entry itself is flushed.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path | str, data: bytes, *, mode: int | None = None) -> None:
    """Write ``data`` to ``path`` atomically, creating missing parent directories.

    ``mode`` is the file's permission bits; None keeps those of the file being replaced, or gives a new file
    :data:`NEW_FILE_MODE` (``mkstemp`` alone would leave ``0o600``). The temporary file is removed when
    anything fails. Raises OSError when the directory cannot be written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode is None:
        mode = path.stat().st_mode & 0o7777 if path.exists() else NEW_FILE_MODE
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: Path | str, text: str, *, mode: int | None = None) -> None:
    """:func:`atomic_write_bytes` of ``text`` in UTF-8, newlines as given. Raises UnicodeEncodeError (nothing
    written) for text that is not encodable."""
    atomic_write_bytes(path, text.encode("utf-8"), mode=mode)


def atomic_write_json(path: Path | str, obj: Any) -> None:
    """Atomically write ``obj`` as sorted, indented JSON with a trailing newline."""
    atomic_write_text(path, json.dumps(obj, sort_keys=True, indent=2) + "\n")
