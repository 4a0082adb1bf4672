"""Nothing of the host reaches the sandbox (issue 15): not the working directory or the project, not the
host's /run, /tmp or Unix sockets; memory is bounded per execution; it works from any working directory;
only allow-listed packages are importable; the weaker level is refused unless opted in."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from cascadec.contract.plan import RewardSpec
from runtime.data import Sample
from runtime.rewards import RewardError, build_reward
from runtime.sandbox import Limits, levels, run_python
from sandbox_helpers import own_processes

ROOT = Path(__file__).resolve().parents[2]
NS = pytest.mark.skipif(levels.isolation() != "namespaces", reason="needs the namespaces level (root)")
LIMITS = Limits(timeout_s=4.0, memory=256 << 20)


def _run(code: str, **kw) -> dict:
    r = run_python(code, limits=kw.pop("limits", LIMITS), **kw)
    assert r.ok, r.stderr
    return json.loads(r.stdout)


@NS
def test_working_directory_project_and_data_are_not_mounted(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text("HF_TOKEN=hf_secret123\n")
    (tmp_path / ".env").chmod(0o644)
    tmp_path.chmod(0o755)
    monkeypatch.chdir(tmp_path)
    code = (f"import os, sys\npaths = [{str(tmp_path / '.env')!r}, {str(ROOT)!r}, {str(ROOT / 'runtime')!r}]\n"
            "seen = [p for p in paths + sys.path[1:] if p and os.path.exists(p) and 'python3' not in p]\n"
            "hits = []\nfor d, _, files in os.walk('/'):\n"
            "    if d.startswith(('/proc', '/usr', '/dev')):\n        continue\n"
            "    hits += [os.path.join(d, f) for f in files if f == '.env']\n"
            "import json\nprint(json.dumps([seen, hits, os.getcwd()]))\n")
    seen, hits, cwd = _run(code)
    assert (seen, hits, cwd) == ([], [], "/tmp/sandbox")


@NS
def test_run_and_tmp_are_private_and_do_not_persist():
    marker = f"cascadec-leak-{os.getpid()}"
    code = ("import json, os\nbefore = [os.path.exists(p) for p in ('/run/lock/M', '/run/M', '/tmp/M', '/dev/shm/M')]\n"
            "for p in ('/run/lock', ):\n    os.makedirs(p, exist_ok=True) if os.access('/run', os.W_OK) else None\n"
            "wrote = []\nfor p in ('/run/lock/M', '/run/M', '/tmp/M', '/dev/shm/M', '/var/tmp/M'):\n"
            "    try:\n        open(p, 'w').write('x')\n        wrote.append(p)\n    except OSError:\n        pass\n"
            "print(json.dumps([before, wrote]))\n").replace("M", marker)
    first_before, _ = _run(code)
    second_before, wrote = _run(code)
    assert first_before == second_before == [False] * 4  # nothing carries over between executions
    assert "/tmp/" + marker in wrote
    for p in ("/run/lock", "/run", "/tmp", "/dev/shm", "/var/tmp"):
        assert not Path(p, marker).exists()


@NS
def test_host_unix_sockets_are_unreachable(tmp_path):
    tmp_path.chmod(0o755)
    hits: list[str] = []
    servers = []
    for address in (str(tmp_path / "svc.sock"), f"/run/cascadec-test-{os.getpid()}.sock",
                    f"\0cascadec-test-{os.getpid()}"):
        srv = socket.socket(socket.AF_UNIX)
        srv.bind(address)
        if not address.startswith("\0"):
            os.chmod(address, 0o777)
        srv.listen(4)
        srv.settimeout(0.1)
        servers.append((srv, address))
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            for srv, address in servers:
                try:
                    srv.accept()[0].close()
                    hits.append(address)
                except OSError:
                    pass

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    code = ("import json, socket\nout = []\nfor a in ADDRS:\n    s = socket.socket(socket.AF_UNIX)\n"
            "    try:\n        s.connect(a)\n        out.append(a)\n    except OSError as e:\n        pass\n"
            "print(json.dumps(out))\n").replace("ADDRS", repr([a for _, a in servers]))
    try:
        assert _run(code) == []
    finally:
        stop.set()
        t.join()
        for srv, address in servers:
            srv.close()
            if not address.startswith("\0"):
                os.unlink(address)
    assert hits == []


@NS
def test_memory_is_bounded_per_execution_not_per_process():
    """Three children of 150 MB each stay under a 256 MiB per-process limit but not under the execution's."""
    code = ("import os, time\nkids = []\nfor _ in range(3):\n    pid = os.fork()\n    if pid == 0:\n"
            "        block = bytearray(150 << 20)\n        block[::4096] = b'x' * len(block[::4096])\n"
            "        time.sleep(5)\n        os._exit(0)\n    kids.append(pid)\nfor pid in kids:\n"
            "    os.waitpid(pid, 0)\n")
    r = run_python(code, limits=Limits(timeout_s=6.0, memory=256 << 20))
    assert r.status == "memory", (r.status, r.stderr)
    assert "together" in r.stderr and r.wall_s < 5
    assert own_processes() == []


@NS
@pytest.mark.parametrize("cwd", ["/", os.path.expanduser("~")])
def test_code_reward_works_from_any_working_directory(cwd):
    script = ("from cascadec.contract.plan import RewardSpec\nfrom runtime.data import Sample\n"
              "from runtime.rewards import build_reward\n"
              "r = build_reward(RewardSpec(kind='unit_tests', args={'tests': 'assert f(2) == 4'}))\n"
              "s = Sample(id='a', domain='code', prompt='p')\n"
              "print(r([s, s], ['import traceback, json\\ndef f(x):\\n    return 2 * x\\n', 'def f(x): return x']))\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", script], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.stdout.strip() == "[1.0, 0.0]", done.stderr[-2000:]


@NS
def test_only_allow_listed_packages_are_importable():
    pytest.importorskip("numpy")
    code = "import numpy\nprint(numpy.arange(3).sum())\n"
    assert run_python(code, limits=LIMITS).status == "error"
    r = run_python(code, limits=LIMITS, packages=("numpy",))
    assert (r.status, r.stdout) == ("ok", "3\n"), r.stderr
    r = run_python("import pytest\n", limits=LIMITS, packages=("numpy",))
    assert "No module named 'pytest'" in r.stderr


def test_unknown_allow_listed_package_is_a_reward_error():
    with pytest.raises(RewardError, match="no_such_pkg_xyz"):
        build_reward(RewardSpec(kind="unit_tests", args={"tests": "assert True", "packages": ["no_such_pkg_xyz"]}))


def test_rlimits_level_is_refused_unless_opted_in(monkeypatch):
    monkeypatch.delenv(levels.ENV, raising=False)
    monkeypatch.setattr(levels, "probe", lambda: ("rlimits", "the process is not root (euid 1000); the sandbox "
                                                  "does not use user namespaces"))
    with pytest.raises(RewardError) as err:
        build_reward(RewardSpec(kind="unit_tests", args={"tests": "assert True"}))
    assert "user namespaces" in str(err.value) and "CASCADEC_SANDBOX=rlimits" in str(err.value)
    assert "CAP_SYS_ADMIN" in str(err.value) and "sandbox = rlimits" in str(err.value)
    spec = build_reward(RewardSpec(kind="unit_tests", args={"tests": "assert f() == 1", "sandbox": "rlimits"}))
    assert spec.level == "rlimits"
    monkeypatch.setenv(levels.ENV, "rlimits")
    reward = build_reward(RewardSpec(kind="unit_tests", args={"tests": "assert f() == 1"}))
    s = Sample(id="a", domain="code", prompt="p")
    assert reward([s, s], ["def f(): return 1", "def f(): return 2"]) == [1.0, 0.0]
    assert "rlimits" in levels.describe()
