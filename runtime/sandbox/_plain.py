"""Plain data across the sandbox boundary: a tagged JSON codec for call arguments and return values.

Standalone (no imports from `runtime`): loaded by the trusted judge (`_judge.py`) and, inside the sandbox, by
the call server (`_serve.py`). Only None, bool, int, float, str, bytes, complex, list, tuple, set, frozenset
and dict (any plain keys) cross; JSON lists are lists, and tuples, sets, frozensets, dicts, bytes and complex
numbers are one-key objects (`{"$t": [...]}` ...). `decode` builds exact built-in types only, so whatever the
untrusted side sends, the judge compares plain values (an object whose `__eq__` is always true cannot cross).
"""

import json

_TAGS = {tuple: "$t", set: "$s", frozenset: "$f"}
_KINDS = {"$t": tuple, "$s": set, "$f": frozenset}


class NotPlain(TypeError):
    """A value that is not plain data (an instance of a program's class, a generator, ...)."""


def _enc(value, depth):
    if depth > 200:
        raise NotPlain("value nested more than 200 levels deep")
    kind = type(value)
    if value is None or kind in (bool, str, float):
        return value
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int.__index__(value)
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, (bytes, bytearray)):
        return {"$b": bytes(value).hex()}
    if isinstance(value, complex):
        return {"$c": [value.real, value.imag]}
    if isinstance(value, list):
        return [_enc(v, depth + 1) for v in value]
    for base, tag in _TAGS.items():
        if isinstance(value, base):
            return {tag: [_enc(v, depth + 1) for v in value]}
    if isinstance(value, dict):
        return {"$d": [[_enc(k, depth + 1), _enc(v, depth + 1)] for k, v in value.items()]}
    raise NotPlain(f"a value of type {kind.__name__} is not plain data")


def dumps(value):
    """One line of JSON for `value`. Raises NotPlain for anything but plain data."""
    return json.dumps(_enc(value, 0), separators=(",", ":"))


def _dec(obj):
    kind = type(obj)
    if obj is None or kind in (bool, int, float, str):
        return obj
    if kind is list:
        return [_dec(v) for v in obj]
    if kind is dict and len(obj) == 1:
        (tag, body), = obj.items()
        if tag in _KINDS and type(body) is list:
            return _KINDS[tag](_dec(v) for v in body)
        if tag == "$d" and type(body) is list and all(type(p) is list and len(p) == 2 for p in body):
            return {_dec(k): _dec(v) for k, v in body}
        if tag == "$b" and type(body) is str:
            return bytes.fromhex(body)
        if tag == "$c" and type(body) is list and len(body) == 2:
            return complex(float(body[0]), float(body[1]))
    raise NotPlain("malformed plain-data message")


def loads(text):
    """The plain value of one `dumps` line. Raises NotPlain (or ValueError) for anything else."""
    return _dec(json.loads(text))
