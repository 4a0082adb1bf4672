"""Attack suite: hostile programs against the sandbox. Each must be contained, score 0 through the
`unit_tests` reward, leave no process or file behind, and the test process must survive."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path

import pytest

from cascadec.contract.plan import RewardSpec
from runtime.data import Sample
from runtime.rewards import build_reward
from runtime.sandbox import Limits, isolation, run_python
from sandbox_helpers import own_processes

pytestmark = pytest.mark.skipif(isolation() != "namespaces",
                                reason="the full attack suite needs the namespaces isolation level (root)")

LIMITS = Limits(timeout_s=2.0, memory=256 << 20, processes=16, file_size=1 << 20, tmpfs_size=8 << 20)
SANDBOX_UIDS = range(61000, 61064)


@pytest.fixture
def planted(tmp_path):
    """A secret file outside the sandbox (world-readable, to show it is hidden, not just protected)."""
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-42")
    secret.chmod(0o644)
    tmp_path.chmod(0o755)
    return secret


@pytest.fixture
def listener():
    """A TCP server on the host's loopback that records whether anybody connected."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    srv.settimeout(0.2)
    hits: list[bool] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
                hits.append(True)
                conn.close()
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield srv.getsockname()[1], hits
    stop.set()
    t.join()
    srv.close()


def _attacks(secret: Path, port: int, tmp: Path) -> dict[str, str]:
    return {
        "fork_bomb": "import os\nwhile True:\n    try: os.fork()\n    except OSError: pass\n",
        "memory_hog": "x = []\nwhile True: x.append(bytearray(50 << 20))\n",
        "infinite_loop": "while True: pass\n",
        "huge_file": "with open('big', 'wb') as f:\n    while True: f.write(b'x' * (1 << 20))\n",
        "disk_fill_tmp": ("import os\nfor i in range(1000):\n"
                          "    open(f'/tmp/fill{i}', 'wb').write(b'x' * (512 << 10))\n"),
        "read_secret": f"print(open({str(secret)!r}).read())\n",
        "read_root_home": "import os\nprint(os.listdir('/root'))\nprint(open('/root/.bash_history').read())\n",
        "write_outside": (f"open({str(tmp / 'pwned.txt')!r}, 'w').write('x')\n"
                          "open('/var/tmp/pwned.txt', 'w').write('x')\n"),
        "network": f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1).send(b'hi')\n",
        "network_external": "import socket\nsocket.create_connection(('1.1.1.1', 80), timeout=1)\n",
        "env_secret": ("import os\nv = os.environ.get('CASCADEC_TEST_SECRET') or "
                       "open('/proc/1/environ').read()\nassert 'hunter2' in v\nprint(v)\n"),
        "kill_parent": f"import os, signal\nos.kill(os.getppid(), 9)\nos.kill({os.getpid()}, 9)\n",
        "daemon": ("import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
                   "        time.sleep(60)\n    os._exit(0)\ntime.sleep(0.2)\n"),
        "close_stdout": "import os, time\nos.close(1)\nos.close(2)\nwhile True: time.sleep(1)\n",
        "print_gigabytes": "import sys\nwhile True: sys.stdout.write('x' * (1 << 20))\n",
        "os_system": "import os\nos.system('sleep 60 &')\nos.system('yes > /dev/null &')\n",
        "ctypes_setuid": ("import ctypes\nlibc = ctypes.CDLL(None)\nassert libc.setuid(0) == 0\n"
                          f"print(open({str(secret)!r}).read())\n"),
        "ctypes_segfault": "import ctypes\nctypes.string_at(0)\n",
        "ignore_signals": ("import signal\nfor s in (signal.SIGTERM, signal.SIGINT, signal.SIGXCPU, signal.SIGHUP):\n"
                           "    signal.signal(s, signal.SIG_IGN)\nwhile True: pass\n"),
        "thread_bomb": ("import threading, time\nwhile True:\n"
                        "    threading.Thread(target=time.sleep, args=(60,)).start()\n"),
        "subprocess_python": ("import subprocess, sys\n"
                              "subprocess.Popen([sys.executable, '-c', 'while True: pass'])\n"),
    }


def test_attack_suite(planted, listener, tmp_path, monkeypatch):
    port, hits = listener
    monkeypatch.setenv("CASCADEC_TEST_SECRET", "hunter2")
    attacks = _attacks(planted, port, tmp_path)
    assert len(attacks) >= 15
    test_code = "assert solve(2) == 4\n"
    reward = build_reward(RewardSpec(kind="unit_tests", args={"tests": test_code, "timeout": 2.0,
                                                              "memory": 256 << 20, "workers": 2}))
    samples = [Sample(id=name, domain="code", prompt="write solve") for name in attacks]
    completions = [f"```python\n{code}\ndef solve(x):\n    return x * 2\n```" for code in attacks.values()]
    start = time.monotonic()
    scores = reward(samples, completions)
    elapsed = time.monotonic() - start
    assert dict(zip(attacks, scores)) == dict.fromkeys(attacks, 0.0)
    assert elapsed < 60
    assert hits == []
    assert not (tmp_path / "pwned.txt").exists() and not Path("/var/tmp/pwned.txt").exists()
    assert not any(Path("/tmp").glob("fill*"))
    time.sleep(0.2)
    assert own_processes() == []


def test_benign_solution_passes_the_same_reward():
    reward = build_reward(RewardSpec(kind="unit_tests", args={"tests": "assert solve(2) == 4\n"}))
    s = Sample(id="ok", domain="code", prompt="write solve")
    assert reward([s, s], ["```python\ndef solve(x):\n    return x * 2\n```", "def solve(x): return x"]) == [1.0, 0.0]


@pytest.mark.parametrize("name, status", [
    ("fork_bomb", {"timeout"}), ("memory_hog", {"memory"}), ("infinite_loop", {"timeout"}),
    ("huge_file", {"output_limit"}), ("print_gigabytes", {"output_limit"}), ("ignore_signals", {"timeout"}),
    ("read_secret", {"error"}), ("network", {"error"}), ("env_secret", {"error"}),
    ("ctypes_setuid", {"error"}), ("close_stdout", {"timeout"}),
])
def test_each_attack_is_contained_with_the_expected_status(name, status, planted, listener, tmp_path, monkeypatch):
    port, hits = listener
    monkeypatch.setenv("CASCADEC_TEST_SECRET", "hunter2")
    result = run_python(_attacks(planted, port, tmp_path)[name], limits=LIMITS)
    assert result.status in status, (result.status, result.stderr[-500:])
    assert "TOP-SECRET" not in result.stdout and "hunter2" not in result.stdout
    assert result.wall_s < LIMITS.timeout_s + 1.5
    assert len(result.stdout.encode()) <= LIMITS.file_size
    assert hits == []
    assert own_processes() == []


def test_daemon_and_background_jobs_are_killed(planted, listener, tmp_path):
    port, _ = listener
    for name in ("daemon", "os_system", "subprocess_python"):
        result = run_python(_attacks(planted, port, tmp_path)[name], limits=LIMITS)
        assert result.wall_s < LIMITS.timeout_s + 1.5
        assert own_processes() == [], name


def test_sandbox_sees_a_private_filesystem():
    code = ("import json, os\n"
            "pids = [p for p in os.listdir('/proc') if p.isdigit()]\n"
            "print(json.dumps([os.getuid(), sorted(os.listdir('/')), os.listdir('/tmp'), os.listdir('/run'), "
            "os.path.exists('/root') and os.listdir('/root'), len(pids)]))\n")
    result = run_python(code, limits=LIMITS)
    assert result.ok, result.stderr
    uid, top, tmp, run, root, nproc = json.loads(result.stdout)
    assert uid in SANDBOX_UIDS
    assert set(top) <= {"bin", "dev", "etc", "lib", "lib32", "lib64", "libx32", "proc", "run", "sbin", "tmp", "usr",
                        "var", *(p.split("/")[1] for p in (os.path.realpath(__import__("sys").executable),))}
    assert tmp == ["sandbox"] and run == []
    assert not root or root == [".pyenv"]  # only the path down to the interpreter, when it lives under /root
    assert nproc <= 3  # a fresh /proc of the sandbox's own pid namespace, not the host's
