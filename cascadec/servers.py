"""Served roles in `resources`: `rollout = vllm(...) | endpoint(...)` and
`teacher_servers = { NAME = vllm(...) | endpoint(...) }`.

`vllm(gpus = 2, tensor_parallel = 2, memory = 0.9)` is a vLLM OpenAI-compatible server that `cascadec run`
starts on its own GPUs of each node (with `nodes = K`: on K whole nodes of its own, beside the training nodes, in a
Slurm job); `endpoint("http://host:8000", model = "name")` is a server that already
runs. As `rollout`, `vllm(memory = 0.3)` (no `gpus`) is the colocated in-process engine of `engine = vllm`. Every argument is one the runtime honours (`runtime.serving`); ranges are checked here so that a wrong
value is located at itself (CAS201), an unknown argument is CAS301 with did-you-mean.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from cascadec import ast
from cascadec.contract.suggest import did_you_mean
from cascadec.model.calls import _call
from cascadec.model.convert import _bad, _in_units, _shape, to_float, to_int, to_str

SERVER_KINDS = ("vllm", "endpoint")
# keyword -> (plan field, converter, lowest valid value, whether the lowest is allowed)
_COMMON = {
    "timeout": ("timeout_s", "time", 0.0, False),
    "retries": ("retries", "int", 0, True),
    "concurrency": ("concurrency", "int", 1, True),
}
_ARGS = {
    "vllm": {"gpus": ("gpus", "int", 0, True), "nodes": ("nodes", "int", 1, True), "tensor_parallel": ("tensor_parallel", "int", 1, True),
             "memory": ("memory", "share", 0.0, False), "startup": ("startup_s", "time", 0.0, False), **_COMMON},
    "endpoint": {"model": ("model", "str", None, True), **_COMMON},
}
# the first port of the teacher servers a stage starts (one port per served teacher, in the order written)
FIRST_PORT = 8100
# the port of the rollout server a stage starts (`rollout = vllm(gpus = N)`), just below the teachers'
ROLLOUT_PORT = FIRST_PORT - 1


def _time(v: ast.Value, key: str) -> float:
    """Seconds, or a time quantity (`10min`)."""
    return float(_in_units(v, key, "time", "a duration", "a duration", "300s", "use `s`, `min` or `h`"))


def _value(v: ast.Value, key: str, kind: str) -> Any:
    if kind == "str":
        return to_str(v, key)
    if kind == "int":
        return to_int(v, key)
    if kind == "time":
        return _time(v, key)
    return to_float(v, key)


def _argument(kw: ast.KwArg, kind: str, func: str) -> tuple[str, Any]:
    table = _ARGS[kind]
    if kw.key.name not in table:
        raise _bad("CAS301", f"unknown argument `{kw.key.name}` of `{func}(...)`", kw.key.span,
                   help=did_you_mean(kw.key.name, tuple(table), "arguments"))
    target, conv, low, inclusive = table[kw.key.name]
    value = _value(kw.value, kw.key.name, conv)
    if low is not None and (value < low or (value == low and not inclusive)):
        bound = f"at least {low}" if inclusive else f"more than {low}"
        raise _bad("CAS201", f"`{kw.key.name}` must be {bound}, found {value}", kw.value.span,
                   help="a share of GPU memory lies in (0, 1], e.g. `memory = 0.9`" if conv == "share" else
                   f"write e.g. `{kw.key.name} = {max(1, int(low) + 1) if conv != 'time' else '300s'}`")
    if conv == "share" and value > 1:
        raise _bad("CAS201", f"`{kw.key.name}` must be at most 1, found {value}", kw.value.span,
                   help="`memory` is vLLM's `gpu_memory_utilization`, a share of each GPU, e.g. `memory = 0.9`")
    return target, value


def _url(v: ast.Value) -> str:
    url = to_str(v, "url")
    parts = urlparse(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _bad("CAS200", f"`{url}` is not an http(s) URL", v.span, label="not a server address",
                   help='write `endpoint("http://host:8000", model = "served-name")`')
    return url.rstrip("/")


def to_server(v: ast.Value, key: str) -> dict[str, Any]:
    """``vllm(...)`` or ``endpoint(...)`` -> the fields of `cascadec.contract.plan.Server`."""
    call = _call(v, "server", SERVER_KINDS, "vllm(gpus = 1)")
    kind = call.func.name
    out: dict[str, Any] = {"kind": kind}
    if kind == "endpoint":
        if len(call.args) != 1:
            raise _bad("CAS200", "`endpoint(...)` takes the server's URL as its first argument", call.span,
                       help='write `endpoint("http://host:8000", model = "served-name")`')
        out["url"] = _url(call.args[0])
    elif call.args:
        raise _bad("CAS200", "`vllm(...)` takes only named arguments", call.args[0].span,
                   help="write e.g. `vllm(gpus = 2, tensor_parallel = 2, memory = 0.9)`")
    for kw in call.kwargs:
        target, value = _argument(kw, kind, kind)
        out[target] = value
    if kind == "endpoint" and "model" not in out:
        raise _bad("CAS203", "`endpoint(...)` needs `model`, the name the server serves the model under",
                   call.span, help='add e.g. `model = "c2-sft"` (the server\'s `--served-model-name`)')
    if kind == "vllm" and out.get("gpus", 0) % out.get("tensor_parallel", 1):
        raise _bad("CAS201", f"`gpus = {out['gpus']}` is not a multiple of `tensor_parallel = "
                   f"{out['tensor_parallel']}`", call.span, label="replicas of `tensor_parallel` GPUs each",
                   help="give `gpus` as a multiple of `tensor_parallel` (each replica takes `tensor_parallel` GPUs)")
    return out


def to_rollout(v: ast.Value, key: str) -> dict[str, Any]:
    """``rollout = vllm(...) | endpoint(...)`` -> `Server` fields; a started server gets `ROLLOUT_PORT`."""
    out = to_server(v, key)
    if out["kind"] == "vllm" and (out.get("gpus", 0) > 0 or out.get("nodes", 0) > 0):
        out["port"] = ROLLOUT_PORT
    return out


def to_servers(v: ast.Value, key: str) -> dict[str, dict[str, Any]]:
    """``{ sft = vllm(...), rl = endpoint(...) }`` -> teacher name -> `Server` fields, with one port each."""
    if not isinstance(v, ast.Record):
        raise _bad("CAS200", f"`{key}` takes a record of teacher = server, found {_shape(v)}", v.span,
                   help="write e.g. `teacher_servers = { sft = vllm(gpus = 2), rl = endpoint(\"http://h:8000\", "
                   "model = \"rl\") }`")
    out: dict[str, dict[str, Any]] = {}
    for entry in v.entries:
        if entry.key.name in out:
            raise _bad("CAS200", f"teacher `{entry.key.name}` is served twice", entry.key.span,
                       help="keep one server per teacher")
        server = to_server(entry.value, entry.key.name)
        if server["kind"] == "vllm":
            server["port"] = FIRST_PORT + len(out)
        out[entry.key.name] = server
    return out
