"""runtime.host_memory: freed memory is reused without page faults; nothing happens without glibc."""

from __future__ import annotations

import ctypes
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from runtime import host_memory

ALLOCATE = """
import resource, sys
sys.path.insert(0, {root!r})
if {keep}:
    from runtime.host_memory import keep_freed_memory
    assert keep_freed_memory()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    block = bytearray(64 * 2**20)  # above glibc's largest mmap threshold
    del block
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults(keep: bool) -> int:
    root = str(Path(host_memory.__file__).parents[1])
    out = subprocess.run([sys.executable, "-c", ALLOCATE.format(root=root, keep=keep)], check=True,
                         capture_output=True, text=True).stdout
    return int(out)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_freed_blocks_are_reused_without_page_faults() -> None:
    pages = 20 * 64 * 2**20 // 4096
    assert faults(keep=False) > pages // 2  # each block mapped afresh, faulted in page by page
    assert faults(keep=True) < pages // 5   # the first block's pages, reused


def test_without_mallopt_nothing_changes(monkeypatch) -> None:
    monkeypatch.setattr(ctypes, "CDLL", lambda name: object())
    assert host_memory.keep_freed_memory() is False


def test_without_a_c_library_nothing_changes(monkeypatch) -> None:
    def missing(name):
        raise OSError(name)
    monkeypatch.setattr(ctypes, "CDLL", missing)
    assert host_memory.keep_freed_memory() is False
