"""Hostile "solutions" that try to fake a pass instead of solving the task (issue 15): each must score 0
under the `unit_tests` reward, at strict binary and at fraction scoring, while honest controls score 1."""

from __future__ import annotations

import json

import pytest

from cascadec.contract.plan import RewardSpec
from runtime.data import Sample
from runtime.rewards import build_reward
from runtime.sandbox import CallTest, Limits, isolation, run_python
from sandbox_helpers import own_processes

pytestmark = pytest.mark.skipif(isolation() != "namespaces", reason="the fakes need the namespaces level (root)")

SECRET = 987654321  # the expected value only the tests know
TESTS = f"assert solve(2) == {SECRET}\nassert solve(3) == {SECRET + 1}\n"
WRONG = "def solve(x):\n    return 0\n"
RIGHT = f"def solve(x):\n    return {SECRET} + x - 2\n"

FIND_TESTS = f'''
import gc, os, re, sys
found = None
def look(text):
    global found
    m = re.search(r"== (\\d{{6,}})", text)
    if m and found is None:
        found = int(m.group(1))
for o in gc.get_objects():
    if isinstance(o, dict):
        for v in list(o.values()):
            if isinstance(v, str):
                look(v)
f = sys._getframe()
while f is not None:
    for v in list(f.f_locals.values()) + list(f.f_globals.values()):
        if isinstance(v, (str, bytes)):
            look(v if isinstance(v, str) else v.decode("latin-1"))
    f = f.f_back
for top in ("/tmp", "/run", "/var/tmp", "/dev/shm", os.getcwd()):
    for d, _, files in os.walk(top):
        for name in files:
            try:
                look(open(os.path.join(d, name), encoding="latin-1").read(1 << 20))
            except OSError:
                pass
try:
    with open("/proc/self/maps") as maps, open("/proc/self/mem", "rb") as mem:
        for line in maps:
            span, perms = line.split()[:2]
            if perms.startswith("rw"):
                lo, hi = (int(x, 16) for x in span.split("-"))
                mem.seek(lo)
                look(mem.read(min(hi - lo, 64 << 20)).decode("latin-1"))
except (OSError, ValueError, OverflowError):
    pass
def solve(x):
    return (found or 0) + x - 2
'''

FAKES = {
    "sys_exit_before_tests": "import sys\nsys.exit(0)\n" + WRONG,
    "atexit_os_exit": "import atexit, os\natexit.register(lambda: os._exit(0))\n" + WRONG,
    "patch_os_exit": "import os\n_real = os._exit\nos._exit = lambda code: _real(0)\n" + WRONG,
    "patch_sys_exit_and_excepthook": ("import sys\nsys.exit = lambda *a: None\nsys.excepthook = lambda *a: None\n"
                                      + WRONG),
    "eq_always_true": "class Yes:\n    def __eq__(self, other):\n        return True\n"
                      "def solve(x):\n    return Yes()\n",
    "int_subclass_eq_always_true": "class Yes(int):\n    def __eq__(self, other):\n        return True\n"
                                   "    __hash__ = int.__hash__\ndef solve(x):\n    return Yes(0)\n",
    "read_own_tests": FIND_TESTS,
    "patch_assertion_error": "import builtins\nbuiltins.AssertionError = type('AE', (Exception,), {})\n" + WRONG,
    "kill_judge": "import os, signal\nfor pid in range(1, 4000):\n    try: os.kill(pid, signal.SIGKILL)\n"
                  "    except OSError: pass\n" + WRONG,
}

CONTROLS = {
    "plain": RIGHT,
    "prints_and_atexit": "import atexit\natexit.register(print, 'bye')\nprint('hello')\n" + RIGHT,
    "main_guard": RIGHT + "if __name__ == '__main__':\n    raise SystemExit(solve(input()))\n",
    "helper_and_recursion": ("import functools\n@functools.lru_cache(None)\ndef base(n):\n"
                             f"    return {SECRET} if n == 0 else base(n - 1)\ndef solve(x):\n"
                             "    return base(50) + x - 2\n"),
}


def _reward(mode: str, tests=TESTS):
    return build_reward(RewardSpec(kind="unit_tests", args={"tests": tests, "timeout": 3.0, "mode": mode,
                                                            "memory": 512 << 20, "workers": 2}))


@pytest.mark.parametrize("mode", ["binary", "fraction"])
def test_fakes_score_zero_and_controls_one(mode):
    programs = {**FAKES, **CONTROLS, "wrong": WRONG}
    samples = [Sample(id=name, domain="code", prompt="write solve") for name in programs]
    scores = dict(zip(programs, _reward(mode)(samples, [f"```python\n{c}```" for c in programs.values()])))
    assert scores == {**dict.fromkeys(FAKES, 0.0), **dict.fromkeys(CONTROLS, 1.0), "wrong": 0.0}
    assert own_processes() == []


@pytest.mark.parametrize("name", ["sys_exit_before_tests", "atexit_os_exit", "eq_always_true",
                                  "read_own_tests"])
def test_each_fake_would_pass_an_exit_code_verdict(name):
    """The fakes are real: with program and tests in one interpreter and "exit 0 = pass", each passes."""
    assert run_python(f"{FAKES[name]}\n{TESTS}", limits=Limits(timeout_s=5)).status == "ok"


def test_mbpp_style_list_of_asserts_scores_each_test_outside():
    tests = [f"assert solve(2) == {SECRET}", f"assert solve(3) == {SECRET + 1}", "assert solve(4) == 0"]
    s = Sample(id="mbpp", domain="code", prompt="p")
    assert _reward("fraction", tests)([s, s, s], [RIGHT, FAKES["eq_always_true"], FAKES["patch_os_exit"]]) == \
        pytest.approx([2 / 3, 0.0, 1 / 3])  # `solve(4) == 0` really holds for the fake's wrong `solve`


def test_stdin_stdout_fakes_score_zero():
    tests = json.dumps({"inputs": ["2\n", "3\n"], "outputs": [f"{SECRET}\n", f"{SECRET + 1}\n"]})
    right = f"print({SECRET} + int(input()) - 2)\n"
    fakes = ["import sys\nsys.exit(0)\n", "import atexit, os\natexit.register(lambda: os._exit(0))\n",
             FIND_TESTS + "print(solve(int(input())))\n"]
    reward = _reward("binary", {"field": "tests"})
    samples = [Sample(id=f"io{i}", domain="code", prompt="p", meta={"tests": tests}) for i in range(4)]
    assert reward(samples, [right, *fakes]) == [1.0, 0.0, 0.0, 0.0]


def test_the_judge_sees_only_plain_data():
    r = run_python("def f():\n    return {(1, 2): {3, 4}, 'b': b'x', 'c': 1+2j, 'l': [1.5, None, True]}\n",
                   test=CallTest("assert f() == {(1, 2): {3, 4}, 'b': b'x', 'c': 1+2j, 'l': [1.5, None, True]}\n"
                                 "assert type(f()['l'][2]) is bool"), limits=Limits(timeout_s=3))
    assert r.passed, r.stderr
    r = run_python("def f():\n    return (x for x in [1])\n", test=CallTest("assert list(f()) == [1]"),
                   limits=Limits(timeout_s=3))
    assert r.passed is False and "not plain data" in r.stderr


def test_exceptions_cross_as_builtin_types():
    code = "def f(x):\n    if x < 0:\n        raise ValueError('negative')\n    return x\n"
    test = "try:\n    f(-1)\nexcept ValueError:\n    pass\nelse:\n    raise AssertionError('no error')\nassert f(2) == 2"
    assert run_python(code, test=CallTest(test), limits=Limits(timeout_s=3)).passed
