"""Run one untrusted Python program in a throw-away process sandbox (see docs/sandbox.md).

Two isolation levels (`levels.py`):

- ``namespaces`` (root, kernel allows unshare): new mount, network, pid, IPC and UTS namespaces; a new root
  file system holding only what the interpreter needs, read-only (`fsplan.py`), with private /tmp, /var/tmp,
  /dev/shm and /run; the program runs as an unprivileged uid (one per concurrent execution); pid 1 of the
  namespace bounds the execution's total memory; when the program exits or is killed, the kernel kills every
  process left in its pid namespace.
- ``rlimits`` (only when opted in): same uid as the caller, rlimits, a new session killed as a group, a
  network guard made of an audit hook. Weaker: see docs/sandbox.md.

Executions are forked from a per-process zygote (`_zygote.py`). With a `CallTest`, the program is loaded as a
module and only answers calls; a trusted judge process outside the sandbox runs the test and gives the
verdict (`ExecResult.passed`).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from runtime.sandbox import fsplan
from runtime.sandbox.client import SLOTS, ZYGOTE, sweep
from runtime.sandbox.levels import isolation

_WORKDIR_NS = "/tmp/sandbox"
_UID_BASE = 61000  # uids 61000.. are unused on Debian/Ubuntu (system range ends at 999, users start at 1000)
_START_S = 60.0
# a judged test fails when its execution ended so, whatever the judge saw
_FAILING = ("timeout", "memory", "left_processes", "sandbox_error")

Status = Literal["ok", "error", "timeout", "memory", "output_limit", "left_processes", "sandbox_error"]


@dataclass(frozen=True)
class Limits:
    """Resource limits of one execution.

    Attributes:
        timeout_s: wall-clock seconds before the whole execution (and its judge) is killed.
        cpu_s: CPU seconds (RLIMIT_CPU) per process; default: `timeout_s` rounded up.
        memory: bytes. Namespaces level: the execution's processes together (proportional set size, watched
            by pid 1 every 10 ms) and each process's address space (RLIMIT_AS). rlimits level: per process.
        processes: processes and threads of the sandbox uid (RLIMIT_NPROC; namespaces level only).
        file_size: largest file in bytes (RLIMIT_FSIZE); also caps captured stdout and stderr.
        open_files: file descriptors per process (RLIMIT_NOFILE).
        tmpfs_size: bytes of each private tmpfs (/tmp, /var/tmp, /dev/shm, /run; namespaces level only).
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
class CallTest:
    """An assert-style test, run by the trusted judge against a program that only answers calls.

    Attributes:
        test: Python test code (human-eval's `def check(candidate): ...`, or MBPP's `assert f(1) == 2`).
            Names it reads that `prefix` and the test do not define are the program's functions.
        prefix: trusted code the test may use (e.g. the helper functions of a human-eval prompt); functions
            whose body is only a docstring are stubs, so calls to them go to the program.
        entry_point: when set, `check(<entry_point>)` runs after the test (human-eval's convention).
    """

    test: str
    prefix: str = ""
    entry_point: str | None = None


@dataclass(frozen=True)
class ExecResult:
    """What one execution did. `status` is ``ok`` only for exit code 0 within the limits. With a `CallTest`,
    `passed` is the judge's verdict (the exit status plays no part in it) and `stderr` ends with the judge's
    reason for a failure."""

    status: Status
    returncode: int
    stdout: str
    stderr: str
    wall_s: float
    signal: int | None = None
    isolation: str = field(default="", compare=False)
    passed: bool | None = None
    bad_tests: bool = False

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def _env(workdir: str) -> dict[str, str]:
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8",
            "PYTHONIOENCODING": "utf-8", "PYTHONDONTWRITEBYTECODE": "1"}


def _config(code_path: str, workdir: str, limits: Limits, level: str, uid: int | None,
            packages: tuple[str, ...]) -> dict[str, object]:
    cfg: dict[str, object] = {
        "code_path": code_path, "workdir": workdir, "limits": limits.rlimits(), "env": _env(workdir),
        "isolate": level == "namespaces", "guard_net": level != "namespaces", "uid": uid, "gid": uid, "fs": [],
        # the directories that hold allow-listed packages, in case the zygote's own sys.path lacks them
        "path": sorted({os.path.dirname(p) for name in packages for p in fsplan.package_paths(name)}),
    }
    if level == "namespaces":
        cfg["fs"] = list(fsplan.plan(tuple(sorted(packages)), limits.tmpfs_size))
    else:
        # RLIMIT_NPROC counts all processes of the caller's uid, so it cannot bound only the sandbox here.
        cfg["limits"] = {**limits.rlimits(), "processes": None}
    return cfg


def _classify(rc: int, timed_out: bool, stderr: str, report: str) -> tuple[Status, int | None]:
    """Status from the exit code, the wall-clock flag, the program's stderr and the boot's own report."""
    if report.startswith("error:"):
        return "sandbox_error", None
    if report.startswith("memory:"):
        return "memory", None
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


def _execute(request: dict[str, object], files: dict[str, str], timeout_s: float,
             uid: int | None) -> tuple[int, bool]:
    """(exit status, timed out) of one execution forked by the zygote; status 125 if the zygote failed."""
    call = ZYGOTE.start(request)
    if not call.started.wait(_START_S) or call.pid is None:
        Path(files["report"]).write_text("error: the sandbox zygote did not start the execution\n")
        return 125, False
    timed_out = not call.done.wait(timeout_s)
    if timed_out:
        call.kill()
    call.done.wait(_START_S)
    sweep(uid, call.pid)
    if call.rc is None:
        Path(files["report"]).write_text("error: the sandbox zygote exited during the execution\n")
        return 125, timed_out
    return call.rc, timed_out


def _verdict(path: str) -> dict[str, object]:
    try:
        verdict = json.loads(_read_capped(path, 1 << 16))
    except ValueError:
        return {"passed": False, "error": "the judge gave no verdict (killed at the time limit)"}
    return verdict if isinstance(verdict, dict) else {"passed": False, "error": "bad verdict"}


def _prepare(priv: str, code: str, stdin: str, test: CallTest | None) -> dict[str, str]:
    names = ("stdin", "stdout", "stderr", "report") + (("judge", "verdict") if test else ())
    files = {name: os.path.join(priv, name) for name in names}
    Path(priv, "main.py").write_text(code, encoding="utf-8")
    Path(files["stdin"]).write_text(stdin, encoding="utf-8")
    if test is not None:
        Path(files["judge"]).write_text(json.dumps(test.__dict__), encoding="utf-8")
    for name in ("stdout", "stderr", "report", "verdict"):
        if name in files:
            Path(files[name]).touch(mode=0o600)
    return files


def run_python(code: str, *, stdin: str = "", limits: Limits = Limits(), packages: tuple[str, ...] = (),
               test: CallTest | None = None) -> ExecResult:
    """Run `code` in the sandbox: as `__main__` of a fresh interpreter, or, with `test`, as a module whose
    functions a trusted judge calls (then `passed` is the verdict).

    Args:
        code: the program text.
        stdin: text fed on standard input.
        limits: resource limits.
        packages: top-level import names, besides the standard library, the program may import
            (namespaces level; at the rlimits level everything the caller can import is visible).
        test: an assert-style test for the judge.

    Returns:
        The status, exit code (128 + signal when a signal ended it), captured stdout/stderr (each at most
        `limits.file_size` bytes), wall seconds and the verdict. Never raises for anything the program does.

    Raises:
        fsplan.UnknownPackage: an allow-listed package is not installed.
    """
    level = isolation()
    slot = SLOTS.acquire()
    priv = tempfile.mkdtemp(prefix="cascadec-sbx-")
    try:
        files = _prepare(priv, code, stdin, test)
        workdir, uid = (_WORKDIR_NS, _UID_BASE + slot) if level == "namespaces" else (os.path.join(priv, "work"), None)
        cfg = _config(os.path.join(priv, "main.py"), workdir, limits, level, uid, packages)
        start = time.perf_counter()
        rc, timed_out = _execute({"cfg": cfg, "files": files, "judge": test is not None}, files,
                                 limits.timeout_s, uid)
        wall = time.perf_counter() - start
        stdout = _read_capped(files["stdout"], limits.file_size)
        stderr = _read_capped(files["stderr"], limits.file_size)
        report = _read_capped(files["report"], 4096)
        status, sig = _classify(rc, timed_out, stderr, report)
        if report.startswith(("error:", "memory:")):
            stderr = f"sandbox {report}"
        verdict = _verdict(files["verdict"]) if test is not None else {}
        passed = bool(verdict.get("passed")) and status not in _FAILING if test is not None else None
        if verdict.get("error"):
            stderr += f"\njudge: {verdict['error']}"
        return ExecResult(status, rc if rc >= 0 else 128 - rc, stdout, stderr, wall, sig, level, passed,
                          bool(verdict.get("bad_tests")))
    finally:
        shutil.rmtree(priv, ignore_errors=True)
        SLOTS.release(slot)
