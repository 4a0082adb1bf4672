"""`template(...)`: the chat template of the cascade (``chat = template(...)``), of a domain or of a stage
(``chat = template(...)`` inside the block; a `ChatOverride`).

Arguments: ``thinking`` / ``no_thinking`` (mode prefixes; cascade level only), ``system`` (system prompt),
``jinja = "..."`` (an inline Jinja chat template) or ``file = "chat.jinja"`` (read now, relative to the
spec, so its text is in the plan and its hash), and ``kwargs = {enable_thinking = false}`` (variables passed
to the template, as ``apply_chat_template(**kwargs)`` does). The Jinja source is parsed here: a syntax error
is CAS200 at the argument, not a failure at the first rollout.
"""

from __future__ import annotations

import os
from typing import Any

from cascadec import ast
from cascadec.model.calls import _call, _resolve
from cascadec.model.convert import _bad, to_plain, to_str
from cascadec.contract.suggest import did_you_mean

CASCADE_ARGS = ("thinking", "no_thinking", "system", "jinja", "file", "kwargs")
OVERRIDE_ARGS = ("system", "jinja", "file", "kwargs")
_EXAMPLE = 'template(file = "chat.jinja", kwargs = {enable_thinking = false})'


def _jinja(text: str, span: Any) -> str:
    import jinja2

    try:
        jinja2.Environment(extensions=["jinja2.ext.loopcontrols"]).parse(text)
    except jinja2.TemplateSyntaxError as e:
        raise _bad("CAS200", f"the chat template does not parse: {e.message} (template line {e.lineno})", span,
                   label="Jinja syntax error", help="fix the template; it is rendered by `apply_chat_template`") \
            from None
    return text


def _file(v: ast.Value) -> str:
    path = _resolve(to_str(v, "file"), v.span)
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        raise _bad("CAS200", f"cannot read chat template file `{os.path.relpath(path)}`: {e.strerror or e}", v.span,
                   label="unreadable", help="give a Jinja file, relative to the spec's directory") from None


def to_template(v: ast.Value, key: str, allowed: tuple[str, ...] = CASCADE_ARGS) -> dict[str, Any]:
    """The `ChatTemplate` (``allowed`` = CASCADE_ARGS) or `ChatOverride` (OVERRIDE_ARGS) dict of a call."""
    call = _call(v, "chat template", ("template",), _EXAMPLE)
    if call.args:
        raise _bad("CAS200", "`template(...)` takes keyword arguments only", call.args[0].span, help=f"write `{_EXAMPLE}`")
    out: dict[str, Any] = {}
    names = {kw.key.name for kw in call.kwargs}
    for kw in call.kwargs:
        name = kw.key.name
        if name not in allowed:
            where = "" if allowed is CASCADE_ARGS else " here (mode prefixes are set once, at cascade level)"
            raise _bad("CAS301", f"unknown argument `{name}` of `template(...)`{where}", kw.key.span,
                       label="unknown argument", help=did_you_mean(name, allowed, "arguments"))
        if name == "kwargs":
            if not isinstance(kw.value, ast.Record):
                raise _bad("CAS200", "`kwargs` takes a record", kw.value.span, help="write `kwargs = {enable_thinking = false}`")
            out["kwargs"] = to_plain(kw.value, name)
        elif name in ("jinja", "file"):
            if {"jinja", "file"} <= names:
                raise _bad("CAS200", "`template(...)` takes `jinja` or `file`, not both", kw.key.span,
                           help="keep one of them")
            text = to_str(kw.value, name) if name == "jinja" else _file(kw.value)
            out["template"] = _jinja(text, kw.value.span)
        else:
            out[name] = to_str(kw.value, name)
    return out


def to_override(v: ast.Value, key: str) -> dict[str, Any]:
    return to_template(v, key, OVERRIDE_ARGS)
