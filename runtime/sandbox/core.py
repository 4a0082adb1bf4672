"""Run one untrusted Python program in a throw-away process sandbox (see docs/sandbox.md).

Two isolation levels, chosen once per process by `isolation()`:

- ``namespaces`` (root, kernel allows unshare): new mount, network, pid, IPC and UTS namespaces; the program
  runs as an unprivileged uid (one per concurrent execution) with a private tmpfs for /tmp, /var/tmp and
  /dev/shm, the host's /root and /home hidden, and no network interface but loopback (down). When the
  program exits or is killed, the kernel kills every process left in its pid namespace. Executions are
  forked from a per-process zygote (`_zygote.py`), which saves an interpreter start-up each.
- ``rlimits`` (anything else): same uid as the caller, rlimits, a new session killed as a group, a network
  guard made of an audit hook. Weaker: see docs/sandbox.md.

Both levels: rlimits on CPU time, address space, processes (namespaces only), file size and open files;
environment scrubbed; stdout and stderr written to files capped by the file-size limit; wall-clock kill.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Literal

_HERE = Path(__file__).resolve().parent
_BOOT = str(_HERE / "_boot.py")
_GUARD = str(_HERE / "_guard.py")
_ZYGOTE = str(_HERE / "_zygote.py")
_WORKDIR_NS = "/tmp/sandbox"
_TMP_DIRS = ("/tmp", "/var/tmp", "/dev/shm")
_HIDDEN_DIRS = ("/root", "/home")
_UID_BASE = 61000  # uids 61000.. are unused on Debian/Ubuntu (system range ends at 999, users start at 1000)

Status = Literal["ok", "error", "timeout", "memory", "output_limit", "left_processes", "sandbox_error"]


@dataclass(frozen=True)
class Limits:
    """Resource limits of one execution.

    Attributes:
        timeout_s: wall-clock seconds before the whole process group is killed.
        cpu_s: CPU seconds (RLIMIT_CPU); default: `timeout_s` rounded up.
        memory: address-space bytes (RLIMIT_AS) of each process.
        processes: processes and threads of the sandbox uid (RLIMIT_NPROC; namespaces level only).
        file_size: largest file in bytes (RLIMIT_FSIZE); also caps captured stdout and stderr.
        open_files: file descriptors per process (RLIMIT_NOFILE).
        tmpfs_size: bytes of each private tmpfs (/tmp, /var/tmp, /dev/shm; namespaces level only).
    """

    timeout_s: float = 6.0
    cpu_s: int | None = None
    memory: int = 1 << 30
    processes: int = 32
    file_size: int = 16 << 20
    open_files: int = 64
    tmpfs_size: int = 64 << 20

    def rlimits(self) -> dict[str, int]:
        return {"cpu_s": self.cpu_s or max(1, int(-(-self.timeout_s // 1))), "memory": self.memory,
                "processes": self.processes, "file_size": self.file_size, "open_files": self.open_files}


@dataclass(frozen=True)
class ExecResult:
    """What one execution did. `status` is ``ok`` only for exit code 0 within the limits."""

    status: Status
    returncode: int
    stdout: str
    stderr: str
    wall_s: float
    signal: int | None = None
    isolation: str = field(default="", compare=False)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@cache
def isolation() -> Literal["namespaces", "rlimits"]:
    """The isolation level this process can give (probed once by trying the namespaces in a child).

    Set ``CASCADEC_SANDBOX=rlimits`` to force the weaker level (e.g. to test it).
    """
    if os.environ.get("CASCADEC_SANDBOX") == "rlimits" or os.geteuid() != 0 or not sys.platform.startswith("linux"):
        return "rlimits"
    probe = ("import ctypes,sys;"
             "sys.exit(ctypes.CDLL(None).unshare(0x00020000|0x40000000|0x20000000|0x08000000|0x04000000)!=0)")
    ok = subprocess.run([sys.executable, "-I", "-S", "-c", probe], capture_output=True, timeout=30).returncode == 0
    return "namespaces" if ok else "rlimits"


def _others_can_enter(path: str) -> bool:
    return bool(os.stat(path).st_mode & stat.S_IXOTH)


@cache
def _filesystem_plan() -> tuple[list[str], list[dict[str, object]]]:
    """(paths of the interpreter to bind back read-only, tmpfs mounts) for the namespaces level."""
    roots = {sys.base_prefix, sys.prefix, sys.exec_prefix, str(Path(sys.executable).resolve().parent)}
    roots |= {p for p in sys.path if p and os.path.isdir(p)}
    keep = sorted({os.path.realpath(p) for p in roots})
    keep = [p for p in keep if not any(p != q and p.startswith(q.rstrip("/") + "/") for q in keep)]
    hide = {d for d in _HIDDEN_DIRS if os.path.isdir(d)}
    for p in keep:
        parts = Path(p).parts
        for i in range(2, len(parts) + 1):
            anc = str(Path(*parts[:i]))
            if not _others_can_enter(anc):
                hide.add(anc)
                break
    hide = {h for h in hide if not any(h != o and h.startswith(o.rstrip("/") + "/") for o in hide)}
    return keep, [{"path": h, "mode": "755"} for h in sorted(hide)]


class _UidSlots:
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


_SLOTS = _UidSlots(os.path.join(tempfile.gettempdir(), "cascadec-sandbox-uids"))


def _env(workdir: str) -> dict[str, str]:
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8",
            "PYTHONIOENCODING": "utf-8", "PYTHONDONTWRITEBYTECODE": "1"}


def _config(code_path: str, workdir: str, limits: Limits, level: str, uid: int | None) -> dict[str, object]:
    cfg: dict[str, object] = {
        "code_path": code_path, "workdir": workdir, "limits": limits.rlimits(), "python": sys.executable,
        "guard": _GUARD, "env": _env(workdir), "isolate": level == "namespaces",
        "guard_net": level != "namespaces", "uid": uid, "gid": uid, "keep": [], "tmpfs": [],
    }
    if level == "namespaces":
        keep, hidden = _filesystem_plan()
        tmp = [{"path": d, "mode": "1777", "size": limits.tmpfs_size} for d in _TMP_DIRS if os.path.isdir(d)]
        cfg["keep"] = keep
        cfg["tmpfs"] = tmp + [{**h, "size": 1 << 20} for h in hidden if h["path"] not in _TMP_DIRS]
    else:
        # RLIMIT_NPROC counts all processes of the caller's uid, so it cannot bound only the sandbox here.
        cfg["limits"] = {**limits.rlimits(), "processes": None}
    return cfg


def _classify(rc: int, timed_out: bool, stderr: str, report: str) -> tuple[Status, int | None]:
    """Status from the exit code, the wall-clock flag, the program's stderr and the boot's own report."""
    if report.startswith("error:"):
        return "sandbox_error", None
    sig = -rc if rc < 0 else (rc - 128 if rc > 128 else None)
    if timed_out or sig in (signal.SIGXCPU, signal.SIGKILL):
        return "timeout", sig
    if sig == signal.SIGXFSZ:
        return "output_limit", sig
    if report.startswith("left "):
        return "left_processes", None
    if rc == 0:
        return "ok", None
    if "[Errno 27] File too large" in stderr[-4000:]:  # Python ignores SIGXFSZ, so writes fail with EFBIG
        return "output_limit", sig
    if "MemoryError" in stderr[-4000:]:
        return "memory", sig
    return "error", sig


def _read_capped(path: str, cap: int) -> str:
    with open(path, "rb") as f:
        return f.read(cap).decode("utf-8", errors="replace")


def _wait(proc: subprocess.Popen[bytes], timeout_s: float) -> bool:
    """Wait for exit without reaping (so the group id stays ours); True when the wall clock ran out."""
    fd = os.pidfd_open(proc.pid)
    try:
        ready, _, _ = select.select([fd], [], [], timeout_s)
        return not ready
    finally:
        os.close(fd)


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


def _sweep(uid: int | None, sid: int, deadline_s: float = 5.0) -> None:
    """SIGKILL what is left of one execution until nothing is, so that none outlives `run_python`.

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
class _Call:
    """One execution served by the zygote: its host pid once forked, its exit status once reaped."""

    started: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    pid: int | None = None
    rc: int | None = None


class _Zygote:
    """Client of this process's `_zygote.py` (namespaces level), started on first use and again after it dies
    or after this process forks (a forked child must not share its parent's pipe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._owner = 0
        self._pending: dict[int, _Call] = {}
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

    def _read(self, proc: subprocess.Popen[bytes], pending: dict[int, _Call]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            msg = json.loads(line)
            with self._lock:
                call = pending.pop(msg["id"]) if "rc" in msg else pending[msg["id"]]
            if "pid" in msg:
                call.pid = msg["pid"]
                call.started.set()
            else:
                call.rc = msg["rc"]
                call.done.set()
        with self._lock:  # the zygote died: fail what it still owed
            calls = list(pending.values())
            pending.clear()
        for call in calls:
            call.started.set()
            call.done.set()

    def start(self, cfg: dict[str, object], files: dict[str, str]) -> _Call:
        call = _Call()
        with self._lock:
            proc = self._ensure()
            self._next_id += 1
            self._pending[self._next_id] = call
            assert proc.stdin is not None
            proc.stdin.write(json.dumps({"id": self._next_id, "cfg": cfg, "files": files}).encode() + b"\n")
            proc.stdin.flush()
        return call


_ZYGOTE_CLIENT = _Zygote()


def _wait_pid(pid: int, timeout_s: float) -> bool:
    """Wait until `pid` exits; True when the wall clock ran out first."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return False
    try:
        ready, _, _ = select.select([fd], [], [], timeout_s)
        return not ready
    finally:
        os.close(fd)


def _run_forked(cfg: dict[str, object], files: dict[str, str], timeout_s: float, uid: int | None) -> tuple[int, bool]:
    """(exit status, timed out) of one execution forked by the zygote; status 125 if the zygote failed."""
    call = _ZYGOTE_CLIENT.start(cfg, files)
    if not call.started.wait(60) or call.pid is None:
        Path(files["report"]).write_text("error: the sandbox zygote did not start the execution\n")
        return 125, False
    timed_out = _wait_pid(call.pid, timeout_s)
    if timed_out:
        try:
            os.killpg(call.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    call.done.wait(60)
    _sweep(uid, call.pid)
    if call.rc is None:
        Path(files["report"]).write_text("error: the sandbox zygote exited during the execution\n")
        return 125, timed_out
    return call.rc, timed_out


def _run_booted(cfg: dict[str, object], files: dict[str, str], timeout_s: float, uid: int | None) -> tuple[int, bool]:
    """(exit status, timed out) of one execution started as a fresh `_boot.py` process."""
    with open(files["stdin"], "rb") as fin, open(files["stdout"], "wb") as fout, \
            open(files["stderr"], "wb") as ferr, open(files["report"], "wb") as frep:
        cfg = {**cfg, "report_fd": frep.fileno()}
        proc = subprocess.Popen([sys.executable, "-I", "-S", _BOOT, json.dumps(cfg)], stdin=fin, stdout=fout,
                                stderr=ferr, start_new_session=True, env={}, pass_fds=(frep.fileno(),))
        timed_out = _wait(proc, timeout_s)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        rc = proc.wait()
        _sweep(uid, proc.pid)
    return rc, timed_out


def run_python(code: str, *, stdin: str = "", limits: Limits = Limits()) -> ExecResult:
    """Run `code` as `__main__` of a fresh Python interpreter inside the sandbox.

    Args:
        code: the program text.
        stdin: text fed on standard input.
        limits: resource limits.

    Returns:
        The status, exit code (128 + signal when a signal ended it), captured stdout/stderr (each at most
        `limits.file_size` bytes) and wall seconds. Never raises for anything the program does.
    """
    level = isolation()
    slot = _SLOTS.acquire()
    priv = tempfile.mkdtemp(prefix="cascadec-sbx-")
    try:
        code_path = os.path.join(priv, "main.py")
        Path(code_path).write_text(code, encoding="utf-8")
        Path(priv, "stdin").write_text(stdin, encoding="utf-8")
        if level == "namespaces":
            workdir, uid = _WORKDIR_NS, _UID_BASE + slot
        else:
            workdir, uid = os.path.join(priv, "work"), None
        cfg = _config(code_path, workdir, limits, level, uid)
        files = {name: os.path.join(priv, name) for name in ("stdin", "stdout", "stderr", "report")}
        for name in ("stdout", "stderr", "report"):
            Path(files[name]).touch(mode=0o600)
        start = time.perf_counter()
        run = _run_forked if level == "namespaces" else _run_booted
        rc, timed_out = run(cfg, files, limits.timeout_s, uid)
        wall = time.perf_counter() - start
        out_path, err_path, report_path = files["stdout"], files["stderr"], files["report"]
        stdout = _read_capped(out_path, limits.file_size)
        stderr = _read_capped(err_path, limits.file_size)
        report = _read_capped(report_path, 4096)
        status, sig = _classify(rc, timed_out, stderr, report)
        if report.startswith("error:"):
            stderr = f"sandbox {report}"
        return ExecResult(status, rc if rc >= 0 else 128 - rc, stdout, stderr, wall, sig, level)
    finally:
        shutil.rmtree(priv, ignore_errors=True)
        _SLOTS.release(slot)
