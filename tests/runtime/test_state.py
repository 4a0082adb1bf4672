"""Run directory: atomic writes, crash recovery of directories, state.json, JSONL logs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from runtime.state import (
    RunDir, append_jsonl, atomic_dir, atomic_write_json, atomic_write_text, filter_jsonl, read_jsonl,
    recover_dir, truncate_metrics,
)


def test_atomic_write_replaces_and_leaves_no_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "a" / "state.json"
    atomic_write_json(target, {"b": 1, "a": [1, 2]})
    atomic_write_json(target, {"c": 3})
    assert json.loads(target.read_text()) == {"c": 3}
    assert target.read_text().endswith("\n")
    assert sorted(p.name for p in target.parent.iterdir()) == ["state.json"]


def test_atomic_write_failure_keeps_old_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "f.txt"
    atomic_write_text(target, "old")

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_text(target, "new")
    monkeypatch.undo()
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_atomic_dir_swaps_complete_directory(tmp_path: Path) -> None:
    final = tmp_path / "final"
    with atomic_dir(final) as tmp:
        assert tmp.name == f"final.tmp-{os.getpid()}"
        (tmp / "w").write_text("1")
    with atomic_dir(final) as tmp:
        (tmp / "w").write_text("2")
    assert (final / "w").read_text() == "2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final"]


def test_atomic_dir_error_leaves_old_directory(tmp_path: Path) -> None:
    final = tmp_path / "final"
    with atomic_dir(final) as tmp:
        (tmp / "w").write_text("1")
    with pytest.raises(RuntimeError):
        with atomic_dir(final) as tmp:
            (tmp / "w").write_text("half")
            raise RuntimeError("crash while writing")
    assert (final / "w").read_text() == "1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final"]


def test_atomic_dir_removes_stale_temp_of_same_pid(tmp_path: Path) -> None:
    stale = tmp_path / f"final.tmp-{os.getpid()}"
    stale.mkdir()
    (stale / "junk").write_text("x")
    with atomic_dir(tmp_path / "final") as tmp:
        assert not (tmp / "junk").exists()
        (tmp / "w").write_text("ok")
    assert (tmp_path / "final" / "w").read_text() == "ok"


def test_recover_dir_after_crash_between_renames(tmp_path: Path) -> None:
    # State after `final -> final.old-N` but before `final.tmp-N -> final`: the old one is complete.
    (tmp_path / "ckpt.old-7").mkdir()
    (tmp_path / "ckpt.old-7" / "meta.json").write_text("{}")
    (tmp_path / "ckpt.tmp-9").mkdir()
    assert recover_dir(tmp_path / "ckpt") == tmp_path / "ckpt"
    assert (tmp_path / "ckpt" / "meta.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
    assert recover_dir(tmp_path / "missing") is None


def test_state_updates_merge(tmp_path: Path) -> None:
    rd = RunDir(tmp_path)
    assert rd.read_state() == {"stages": {}}
    rd.update_stage("s1", status="running", hash="h", step=0)
    rd.update_stage("s1", step=3)
    rd.update_stage("s2", status="pending")
    rd.update_section("base", status="done")
    state = rd.read_state()
    assert state["stages"]["s1"] == {"status": "running", "hash": "h", "step": 3}
    assert state["stages"]["s2"] == {"status": "pending"}
    assert state["base"] == {"status": "done"}
    with pytest.raises(ValueError, match="unknown stage status"):
        rd.update_stage("s1", status="finished")


def test_jsonl_torn_line_is_skipped_and_next_append_is_clean(tmp_path: Path) -> None:
    log = tmp_path / "metrics.jsonl"
    append_jsonl(log, {"step": 0, "loss": 1.0})
    with open(log, "a") as f:
        f.write('{"step": 1, "lo')  # SIGKILL in the middle of a write
    assert read_jsonl(log) == [{"step": 0, "loss": 1.0}]
    append_jsonl(log, {"step": 1, "loss": 0.5})
    assert [r["step"] for r in read_jsonl(log)] == [0, 1]


def test_truncate_metrics_drops_steps_at_and_after_resume(tmp_path: Path) -> None:
    log = tmp_path / "metrics.jsonl"
    for s in range(6):
        append_jsonl(log, {"step": s})
    assert truncate_metrics(log, 4) == 2
    assert [r["step"] for r in read_jsonl(log)] == [0, 1, 2, 3]
    assert truncate_metrics(tmp_path / "absent.jsonl", 0) == 0
    assert filter_jsonl(log, lambda r: r["step"] % 2 == 0) == 2
    assert [r["step"] for r in read_jsonl(log)] == [0, 2]
