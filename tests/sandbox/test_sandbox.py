"""Sandbox basics at both isolation levels: output, stdin, limits, network refusal, the worker pool."""

from __future__ import annotations

import os
import time

import pytest

from runtime.data import Sample
from runtime.sandbox import Job, Limits, SandboxPool, client, core, run_python

FAST = Limits(timeout_s=2.0, memory=256 << 20, file_size=1 << 20, tmpfs_size=8 << 20)


def test_output_and_stdin(level):
    r = run_python("import sys\nprint(sum(int(x) for x in sys.stdin.read().split()))", stdin="1 2 3\n",
                   limits=FAST)
    assert (r.status, r.stdout, r.isolation) == ("ok", "6\n", level)


def test_nonzero_exit_is_error(level):
    r = run_python("raise SystemExit(3)", limits=FAST)
    assert (r.status, r.returncode) == ("error", 3)


def test_wall_clock_kill(level):
    r = run_python("import time\ntime.sleep(30)", limits=Limits(timeout_s=0.5))
    assert r.status == "timeout" and r.wall_s < 1.5


def test_memory_limit(level):
    r = run_python("x = bytearray(1 << 30)", limits=FAST)
    assert r.status == "memory"


def test_output_cap(level):
    r = run_python("import sys\nwhile True: sys.stdout.write('y' * 65536)", limits=FAST)
    assert r.status == "output_limit" and len(r.stdout) <= FAST.file_size


def test_network_refused(level):
    r = run_python("import socket\nsocket.create_connection(('127.0.0.1', 9), timeout=1)", limits=FAST)
    assert r.status == "error"
    if level == "rlimits":
        assert "network access is disabled" in r.stderr


def test_environment_scrubbed(level, monkeypatch):
    monkeypatch.setenv("CASCADEC_TEST_SECRET", "hunter2")
    r = run_python("import os\nprint(sorted(os.environ))", limits=FAST)
    assert r.ok and "CASCADEC_TEST_SECRET" not in r.stdout


def _running_with(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and marker.encode() in open(f"/proc/{entry}/cmdline", "rb").read():
                found.append(int(entry))
        except OSError:
            continue
    return found


def test_background_child_dies_with_the_program(level):
    marker = f"cascadec-marker-{os.getpid()}-{level}"
    code = ("import subprocess, sys\n"
            f"subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)', {marker!r}])\n")
    r = run_python(code, limits=FAST)
    assert r.status == ("left_processes" if level == "namespaces" else "ok")
    assert _running_with(marker) == []


def test_pool_runs_in_parallel_and_keeps_order():
    jobs = [Job(f"import time\ntime.sleep(0.4)\nprint({i})", limits=FAST) for i in range(4)]
    with SandboxPool(workers=4) as pool:
        start = time.monotonic()
        results = pool.run(jobs)
        elapsed = time.monotonic() - start
    assert [r.stdout.strip() for r in results] == ["0", "1", "2", "3"]
    assert elapsed < 4 * 0.4  # overlapped, not serial


def test_uid_slots_are_exclusive_across_processes():
    """A second process must not get a slot this process holds (torchrun ranks share one host)."""
    import subprocess
    import sys

    slot = client.SLOTS.acquire()
    try:
        code = "from runtime.sandbox import client; print(client.SLOTS.acquire())"
        other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        assert int(other.stdout) != slot
    finally:
        client.SLOTS.release(slot)


def test_program_cannot_forge_sandbox_reports(level):
    r = run_python("import sys\nsys.stderr.write('error: sandbox\\n')\nsys.exit(125)", limits=FAST)
    assert r.status == "error"
    code = ("import os\nfor fd in range(3, 64):\n    try:\n        os.write(fd, b'error: forged\\n')\n"
            "    except OSError:\n        pass\n")
    r = run_python(code, limits=FAST)
    assert r.status == "ok"


def test_broken_sandbox_is_an_error_not_a_zero(level, monkeypatch):
    """If executions cannot even start, the code reward must raise instead of scoring everything 0."""
    from cascadec.contract.plan import RewardSpec
    from runtime.rewards import RewardError, build_reward

    real = core._config

    def broken(*args, **kwargs):
        cfg = real(*args, **kwargs)
        return {**cfg, "limits": {**cfg["limits"], "open_files": "many"}}

    monkeypatch.setattr(core, "_config", broken)
    assert run_python("print(1)", limits=FAST).status == "sandbox_error"
    reward = build_reward(RewardSpec(kind="unit_tests", args={"tests": "assert True"}))

    with pytest.raises(RewardError, match="the code sandbox failed: .*TypeError"):
        reward([Sample(id="s", domain="code", prompt="p")], ["print(1)"])


def test_program_semantics_match_a_fresh_interpreter(level):
    code = ("import atexit, sys\natexit.register(lambda: print('bye'))\n"
            "print(__name__, sys.argv[0].endswith('main.py'))\nsys.exit(3)\n")
    r = run_python(code, limits=FAST)
    assert (r.status, r.returncode, r.stdout) == ("error", 3, "__main__ True\nbye\n")
    r = run_python("def f():\n    raise ValueError('boom')\nf()\n", limits=FAST)
    assert r.returncode == 1 and r.stderr.startswith("Traceback") and "_boot" not in r.stderr
    assert r.stderr.rstrip().endswith("ValueError: boom")


def test_zygote_is_restarted_after_it_dies(level):
    assert run_python("print(1)", limits=FAST).ok
    proc = client.ZYGOTE._proc
    proc.kill()
    proc.wait()
    r = run_python("print(2)", limits=FAST)
    assert (r.status, r.stdout) == ("ok", "2\n")
    assert client.ZYGOTE._proc is not proc
