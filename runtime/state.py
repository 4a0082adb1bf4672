"""The run directory: paths, atomic writes, ``state.json``, metrics and eval logs.

Layout (docs/ARCHITECTURE.md, "Run directory")::

    plan.json  state.json  evals.jsonl
    stages/NAME/metrics.jsonl  stages/NAME/ckpt/  stages/NAME/final/
    tb/NAME/

Every file a user cares about is written to a temporary name in the same directory, fsynced and
``os.replace``d into place, so a reader (or a resumed run after SIGKILL) sees either the old or the new
version, never a torn one. Directories (checkpoints) are written to ``NAME.tmp-<pid>`` and renamed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from cascadec.contract.errors import UserError
from cascadec.contract import fsutil
from cascadec.contract.fsutil import (  # noqa: F401  (re-exported: the run directory's writers)
    atomic_write_bytes, atomic_write_json, atomic_write_text, fsync_dir,
)

STATUSES = ("pending", "running", "done", "failed")
# The name that stands for the base model wherever a stage name can: a parent, a teacher, the stage of the
# base-model evals in evals.jsonl and their section of state.json.
BASE = "base"


@contextlib.contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Yield a fresh ``NAME.tmp-<pid>`` directory; on success swap it in as ``path``.

    A stale temp directory of the same pid is removed first (pids are reused after reboots). The old
    ``path`` is first renamed to ``NAME.old-<pid>`` and deleted after the swap, so there is always one
    complete directory: if the process dies between the two renames, :func:`recover_dir` restores the old one.
    On an exception inside the block the temp directory is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    commit_dir(tmp, path)


def commit_dir(tmp: Path, path: Path) -> None:
    """Swap the complete directory ``tmp`` in as ``path``: ``path -> NAME.old-<pid>``, ``tmp -> path``,
    then delete the old one. A crash between the renames is repaired by :func:`recover_dir`."""
    _usual_modes(tmp)
    old = path.with_name(f"{path.name}.old-{os.getpid()}")
    if old.exists():
        shutil.rmtree(old)
    if path.exists():
        os.replace(path, old)
    os.replace(tmp, path)
    fsync_dir(path.parent)
    shutil.rmtree(old, ignore_errors=True)


def _usual_modes(root: Path) -> None:
    # Some writers create private files (safetensors writes model.safetensors 0600); give every file and
    # folder of a checkpoint the mode a plain open()/mkdir() would, as atomic_write_bytes does.
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            os.chmod(Path(folder) / name, fsutil.NEW_DIR_MODE)
        for name in files:
            os.chmod(Path(folder) / name, fsutil.NEW_FILE_MODE)


def recover_dir(path: Path) -> Path | None:
    """Return ``path`` if it exists; else restore a complete ``NAME.old-*`` left by a crash mid-swap.

    Leftover ``NAME.tmp-*`` directories (a crash while writing) are incomplete and are deleted.
    Returns None when no complete directory exists.
    """
    path = Path(path)
    if not path.parent.exists():
        return None
    for tmp in path.parent.glob(f"{path.name}.tmp-*"):
        shutil.rmtree(tmp, ignore_errors=True)
    olds = sorted(path.parent.glob(f"{path.name}.old-*"), key=lambda p: p.stat().st_mtime)
    if not path.exists() and olds:
        os.replace(olds.pop(), path)
    for old in olds:
        shutil.rmtree(old, ignore_errors=True)
    return path if path.exists() else None


class StateError(UserError):
    """A ``state.json`` that cannot be parsed; the message names the file and how to recover."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(
            f"`{path}` is damaged ({problem})\n"
            "help: restore it from a backup, or delete it to start the run over (every stage then runs again)"
        )


# The fields the runtime writes into a stage's (or the base section's) entry of state.json and their types.
_ENTRY_TYPES: dict[str, tuple[type, ...]] = {
    "status": (str,), "step": (int,), "hash": (str,), "eval_hash": (str,), "stop_reason": (str,),
    "checkpoint": (str,), "teachers": (str,), "stopped_by": (int,),
}


def _entry_problem(entry: Any) -> str | None:
    """What is wrong with one entry of ``state.json`` (hand-edited: the runtime writes the right types)."""
    if not isinstance(entry, dict):
        return f"{json.dumps(entry)} is not an object"
    for key, types in _ENTRY_TYPES.items():
        value = entry.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, types):
            return f"`{key}` is {json.dumps(value)}, not a {'whole number' if int in types else 'string'}"
    if entry.get("status") is not None and entry["status"] not in STATUSES:
        return f"`status` is {json.dumps(entry['status'])}, not one of {', '.join(STATUSES)}"
    if isinstance(entry.get("step"), int) and entry["step"] < 0:
        return f"`step` is {entry['step']}, a negative step count"
    return None


class RunDir:
    """Paths of one run directory (``runs/<plan name>/`` by default)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    @property
    def plan_json(self) -> Path:
        return self.root / "plan.json"

    @property
    def state_json(self) -> Path:
        return self.root / "state.json"

    @property
    def evals_jsonl(self) -> Path:
        return self.root / "evals.jsonl"

    def stage_dir(self, stage: str) -> Path:
        return self.root / "stages" / stage

    def metrics(self, stage: str) -> Path:
        return self.stage_dir(stage) / "metrics.jsonl"

    def ckpt(self, stage: str) -> Path:
        return self.stage_dir(stage) / "ckpt"

    def final(self, stage: str) -> Path:
        return self.stage_dir(stage) / "final"

    def tb(self, stage: str) -> Path:
        return self.root / "tb" / stage

    def log(self, stage: str) -> Path:
        """Captured stdout/stderr of the stage's process group."""
        return self.stage_dir(stage) / "stage.log"

    # ------------------------------------------------------------ state.json

    def read_state(self) -> dict[str, Any]:
        """The parsed ``state.json`` (``{"stages": {}}`` when absent).

        Raises StateError when it is not a JSON object (edited by hand: the runtime writes it atomically).
        """
        try:
            text = self.state_json.read_text()
        except FileNotFoundError:
            return {"stages": {}}
        try:
            state = json.loads(text)
        except ValueError as e:
            raise StateError(self.state_json, str(e)) from None
        if not isinstance(state, dict) or not isinstance(state.setdefault("stages", {}), dict):
            raise StateError(self.state_json, "not an object with a `stages` object")
        sections = [(f"stage `{name}`", entry) for name, entry in state["stages"].items()]
        if BASE in state:
            sections.append((f"section `{BASE}`", state[BASE]))
        for where, entry in sections:
            problem = _entry_problem(entry)
            if problem:
                raise StateError(self.state_json, f"{where}: {problem}")
        return state

    def stage_state(self, stage: str) -> dict[str, Any]:
        return dict(self.read_state()["stages"].get(stage, {}))

    def update_section(self, key: str, **fields: Any) -> dict[str, Any]:
        """Merge ``fields`` into the top-level object ``key`` of ``state.json`` (e.g. ``"base"``), atomically."""
        return self._merge(lambda state: state.setdefault(key, {}), fields)

    def _merge(self, entry_of: Any, fields: dict[str, Any]) -> dict[str, Any]:
        state = self.read_state()
        entry = entry_of(state)
        entry.update(fields)
        atomic_write_json(self.state_json, state)
        return dict(entry)

    def error_file(self, stage: str) -> Path:
        """The last user-facing error message of the stage's process group (read by the orchestrator)."""
        return self.stage_dir(stage) / "error.txt"

    def update_stage(self, stage: str, **fields: Any) -> dict[str, Any]:
        """Merge ``fields`` into ``state.json``'s entry for ``stage`` and write it atomically.

        Only one process writes at a time (the orchestrator between stages, rank 0 inside one), so a
        read-modify-write is safe. Returns the new entry. Raises ValueError on an unknown ``status``.
        """
        if "status" in fields and fields["status"] not in STATUSES:
            raise ValueError(f"unknown stage status {fields['status']!r}")
        return self._merge(lambda state: state["stages"].setdefault(stage, {}), fields)


# ------------------------------------------------------------ JSONL logs


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a JSONL log; a line that does not parse (torn by a crash mid-append) or is not
    an object (edited by hand) is skipped."""
    return read_jsonl_counted(path)[0]


def read_jsonl_counted(path: Path) -> tuple[list[dict[str, Any]], int]:
    """:func:`read_jsonl` plus the number of non-blank lines it skipped."""
    try:
        lines = Path(path).read_text().split("\n")  # not splitlines(): JSON strings may hold U+2028
    except FileNotFoundError:
        return [], 0
    out, skipped = [], 0
    for line in lines:
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if isinstance(record, dict):
            out.append(record)
        else:
            skipped += 1
    return out, skipped


def _is_eval_record(r: Mapping[str, Any]) -> bool:
    def number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    step = r.get("step", 0)
    items, groups = r.get("item_scores", []), r.get("item_groups", [])
    return (all(isinstance(r.get(k), str) for k in ("stage", "domain", "eval")) and number(r.get("score"))
            and isinstance(step, int) and not isinstance(step, bool) and step >= 0
            and isinstance(r.get("metric", ""), str)
            and isinstance(items, list) and all(v is None or number(v) for v in items)
            and isinstance(groups, list) and all(isinstance(g, int) and not isinstance(g, bool) for g in groups))


def read_eval_records(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The well-formed records of an eval log (``evals.jsonl``) and how many lines were skipped: torn,
    not an object, or with a field of the wrong type (``stage``/``domain``/``eval``/``metric`` strings,
    ``score`` a number, ``step`` a whole number >= 0, ``item_scores``, where present, a list of numbers and
    nulls, ``item_groups`` a list of whole numbers; records written before they existed have none). A NaN score
    is kept (it prints as ``nan``)."""
    records, skipped = read_jsonl_counted(path)
    good = [r for r in records if _is_eval_record(r)]
    return good, skipped + len(records) - len(good)


def skipped_lines_warning(path: Path, skipped: int) -> str:
    """The one warning line shown when a log had lines that were skipped."""
    return (f"warning: skipped {skipped} damaged line{'s' if skipped != 1 else ''} of `{path}` "
            "(not a well-formed record; edited by hand or torn by a crash)")


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line and fsync, so a logged step survives a SIGKILL right after it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record, sort_keys=True) + "\n"
    with open(path, "ab") as f:
        # A torn line from an earlier crash must not swallow this record into the same line.
        if f.tell() > 0:
            with open(path, "rb") as r:
                r.seek(-1, os.SEEK_END)
                if r.read(1) != b"\n":
                    line = "\n" + line
        f.write(line.encode("utf-8"))
        f.flush()
        os.fsync(f.fileno())


def filter_jsonl(path: Path, keep) -> int:
    """Atomically rewrite a JSONL log keeping the records where ``keep(record)``; returns how many dropped."""
    records = read_jsonl(path)
    kept = [r for r in records if keep(r)]
    if Path(path).exists():
        atomic_write_text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in kept))
    return len(records) - len(kept)


def replace_stage_evals(path: Path, stage: str, records: list[dict[str, Any]]) -> int:
    """Atomically rewrite the eval log ``path`` with every record of ``stage`` replaced by ``records``
    (one write, so a reader sees the old records or the new ones, never neither); returns how many were
    dropped."""
    old = read_jsonl(path)
    kept = [r for r in old if r.get("stage") != stage]
    atomic_write_text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in [*kept, *records]))
    return len(old) - len(kept)


def last_eval_points(records: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Mapping[str, Any]]]:
    """``{stage: {"domain.eval": record}}``: each stage's record of each eval at its last eval point (the
    largest ``step``; of equal steps the later line wins, as a re-run appends). Records without a stage,
    domain, eval or score, or with one of the wrong type (foreign or hand-edited), are skipped."""
    out: dict[str, dict[str, Mapping[str, Any]]] = {}
    for r in records:
        if not _is_eval_record(r):
            continue
        per = out.setdefault(r["stage"], {})
        key = f"{r['domain']}.{r['eval']}"
        if key not in per or int(r.get("step", 0)) >= int(per[key].get("step", 0)):
            per[key] = r
    return out


def truncate_metrics(path: Path, resume_step: int) -> int:
    """Drop metrics lines with ``step >= resume_step`` (they will be logged again after resume).

    This keeps the invariant "every step appears exactly once" across crashes: steps after the last
    checkpoint were trained on weights that the resumed run no longer has.
    """
    return filter_jsonl(path, lambda r: int(r.get("step", -1)) < resume_step)
