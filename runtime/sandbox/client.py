"""The caller's side of the zygote (`_zygote.py`), sandbox uids, and the final sweep of an execution."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

_ZYGOTE = str(Path(__file__).resolve().parent / "_zygote.py")


class UidSlots:
    """Gives each concurrent execution on the host its own unprivileged uid (RLIMIT_NPROC budgets and the
    final sweep are per uid). Slots are claimed with `flock` on one lock file per uid, so executions of
    different processes (e.g. several torchrun ranks on one node) never share a uid."""

    def __init__(self, lock_dir: str) -> None:
        self._lock_dir = lock_dir
        self._lock = threading.Lock()
        self._held: dict[int, int] = {}

    def acquire(self) -> int:
        os.makedirs(self._lock_dir, mode=0o700, exist_ok=True)
        with self._lock:
            slot = 0
            while True:
                if slot not in self._held:
                    fd = os.open(os.path.join(self._lock_dir, f"{slot}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        os.close(fd)
                    else:
                        self._held[slot] = fd
                        return slot
                slot += 1

    def release(self, slot: int) -> None:
        with self._lock:
            fd = self._held.pop(slot)
        os.close(fd)  # closing the descriptor drops the flock


SLOTS = UidSlots(os.path.join(tempfile.gettempdir(), "cascadec-sandbox-uids"))


def _leftovers(uid: int | None, sid: int) -> list[int]:
    """Host pids still owned by the sandbox uid (namespaces level) or still in the session `sid`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if uid is not None:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    found.append(int(entry))
            else:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    fields = f.read().rsplit(b")", 1)[1].split()
                if int(fields[3]) == sid:
                    found.append(int(entry))
        except (OSError, IndexError, ValueError):
            continue
    return found


def sweep(uid: int | None, sid: int, deadline_s: float = 5.0) -> None:
    """SIGKILL what is left of one execution until nothing is, so that none outlives it.

    After a wall-clock kill the namespace's pid 1 may still be tearing its children down; a fork bomb
    may still be forking. Both end within milliseconds under repeated SIGKILL.
    """
    end = time.monotonic() + deadline_s
    while (pids := _leftovers(uid, sid)) and time.monotonic() < end:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.005)


@dataclass
class Call:
    """One request served by the zygote: host pids once forked, exit statuses once reaped."""

    started: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    pid: int | None = None
    judge_pid: int | None = None
    rc: int | None = None
    judge_rc: int | None = None

    def finish(self, role: str, rc: int) -> None:
        if role == "judge":
            self.judge_rc = rc
        else:
            self.rc = rc
        if self.rc is not None and (self.judge_pid is None or self.judge_rc is not None):
            self.done.set()

    def kill(self) -> None:
        """SIGKILL the execution's and the judge's process groups (each leads its own session)."""
        for pid in (self.pid, self.judge_pid):
            if pid is not None:
                try:
                    os.killpg(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


class Zygote:
    """Client of this process's `_zygote.py`, started on first use and again after it dies or after this
    process forks (a forked child must not share its parent's pipe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._owner = 0
        self._pending: dict[int, Call] = {}
        self._next_id = 0

    def _ensure(self) -> subprocess.Popen[bytes]:
        if self._proc is None or self._proc.poll() is not None or self._owner != os.getpid():
            self._proc = subprocess.Popen([sys.executable, "-I", "-B", _ZYGOTE], stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, env={}, cwd="/")
            self._owner = os.getpid()
            self._pending = {}
            threading.Thread(target=self._read, args=(self._proc, self._pending), daemon=True,
                             name="sandbox-zygote").start()
        return self._proc

    def _read(self, proc: subprocess.Popen[bytes], pending: dict[int, Call]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            msg = json.loads(line)
            with self._lock:
                call = pending[msg["id"]]
            if "pid" in msg:
                call.pid, call.judge_pid = msg["pid"], msg["judge_pid"]
                call.started.set()
                continue
            call.finish(msg["role"], msg["rc"])
            if call.done.is_set():
                with self._lock:
                    pending.pop(msg["id"], None)
        with self._lock:  # the zygote died: fail what it still owed
            calls = list(pending.values())
            pending.clear()
        for call in calls:
            call.started.set()
            call.done.set()

    def start(self, request: dict[str, object]) -> Call:
        call = Call()
        with self._lock:
            proc = self._ensure()
            self._next_id += 1
            self._pending[self._next_id] = call
            assert proc.stdin is not None
            proc.stdin.write(json.dumps({**request, "id": self._next_id}).encode() + b"\n")
            proc.stdin.flush()
        return call


ZYGOTE = Zygote()
