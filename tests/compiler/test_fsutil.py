"""`cascadec.contract.fsutil.atomic_write_text`: permissions, parent directories, and no torn or stray file on failure."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cascadec.contract.fsutil import NEW_FILE_MODE, atomic_write_text


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o7777


def test_new_file_gets_the_umask_mode_and_its_parents(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "out.md"
    atomic_write_text(path, "x\r\ny\n")
    assert path.read_bytes() == b"x\r\ny\n"  # newlines are written as given
    assert _mode(path) == NEW_FILE_MODE


def test_replacing_keeps_the_mode_unless_one_is_given(tmp_path: Path) -> None:
    path = tmp_path / "spec.cascade"
    path.write_text("old")
    os.chmod(path, 0o600)
    atomic_write_text(path, "new")
    assert path.read_text() == "new" and _mode(path) == 0o600
    atomic_write_text(path, "run", mode=0o755)
    assert _mode(path) == 0o755


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    path.write_text("old")
    with pytest.raises(UnicodeEncodeError):
        atomic_write_text(path, "bad \udc80 surrogate")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["plan.json"]
