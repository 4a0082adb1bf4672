"""CAS325 for a base model that is a local directory (``model("./dir")``) without a model in it, or whose
``tokenizer = "./dir"`` is a local directory without a tokenizer in it, or a base model or tokenizer that is
neither local nor a hub id the Hub accepts (``org/name/extra``, ``org/na me``); and for a reward's model
(``reward_model("./rm")``, ``judge("./j")``) that is a local directory without a model in it.

The path was resolved against the spec's directory when the model was built (`cascadec.model.calls`), and the
runtime loads exactly that absolute path (`runtime.models.load_checkpoint`, which needs its ``config.json``),
so both sides look at the same place. A hub id (``model("org/name")``) is not a path and is not looked up. One
rule tells the two apart for the model, its tokenizer and a checkpoint (`cascadec.model.calls.is_local`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Callable

from cascadec import ast
from cascadec.checkpoints import (LOCAL_NOTE, NOT_FOUND_HINT, TOKENIZER_FILES, has_model, has_tokenizer, hub_id_problem,
                                  shown)
from cascadec.checks.context import CheckContext
from cascadec.codes import make
from cascadec.contract.suggest import suggest
from cascadec.diagnostics import Diagnostic
from cascadec.model.calls import _resolve, is_local, written_models


_PATHS = (LOCAL_NOTE,)


def check_base_model(module: ast.Module, ctx: CheckContext) -> Iterator[Diagnostic]:
    """CAS325 for a local base model without its `config.json`, or a local tokenizer directory that is missing."""
    assert ctx.spec is not None
    base = ctx.spec.base
    value = next(a.value for a in ctx.view.assigns if a.key.name == "base")
    if not isinstance(value, ast.Call):
        return
    written = value.args[0] if value.args else None
    if base.kind == "hub" and isinstance(written, ast.Str) and (bad := hub_id_problem("base model", written)):
        yield bad
    if base.kind == "path" and not has_model(base.name):
        assert isinstance(written, ast.Str)
        what = "has no config.json" if os.path.isdir(base.name) else "does not exist"
        close = _sibling(base.name, has_model)
        yield make("CAS325", f"base model directory `{shown(base.name)}` {what}", written.span, label="not found",
                   notes=_PATHS, help=f"did you mean `{_beside(written.value, close)}`?" if close else
                   f"{NOT_FOUND_HINT}, or a hub id such as `org/name`")
    tokenizer = next((kw.value for kw in value.kwargs if kw.key.name == "tokenizer"), None)
    if isinstance(tokenizer, ast.Str) and not os.path.isabs(base.tokenizer or "") \
            and (bad := hub_id_problem("tokenizer", tokenizer)):
        yield bad
    if isinstance(tokenizer, ast.Str) and os.path.isabs(base.tokenizer or "") and not has_tokenizer(base.tokenizer):
        there = os.path.isdir(base.tokenizer)
        close = _sibling(base.tokenizer, has_tokenizer)
        yield make("CAS325", f"tokenizer directory `{shown(base.tokenizer)}` "
                   f"{'has no tokenizer files' if there else 'does not exist'}", tokenizer.span,
                   label="no tokenizer in it" if there else "not found",
                   notes=_PATHS + (f"a tokenizer directory holds one of {', '.join(TOKENIZER_FILES)}",),
                   help=f"did you mean `{_beside(tokenizer.value, close)}`?" if close else
                   "give a directory written by `save_pretrained` (with the tokenizer's files), a packaged model "
                   "name or a hub id")


def check_reward_models(module: ast.Module, ctx: CheckContext) -> Iterator[Diagnostic]:
    """CAS325 for a reward's model written as a local directory (resolved from the spec's directory, as the plan
    holds it) without its `config.json`: the reward loads it only at its first batch, well into a run."""
    for call in ctx.view.calls:
        for _, written in written_models(call):
            path = _resolve(written.value, written.span) if is_local(written.value) else None
            if path is None or has_model(path):
                continue
            what = "has no config.json" if os.path.isdir(path) else "does not exist"
            close = _sibling(path, has_model)
            yield make("CAS325", f"`{call.func.name}` model directory `{shown(path)}` {what}", written.span,
                       label="not found", notes=_PATHS,
                       help=f"did you mean `{_beside(written.value, close)}`?" if close else
                       f"{NOT_FOUND_HINT}, or a hub id such as `org/name`")


def _sibling(path: str, holds: Callable[[str], bool]) -> str | None:
    """The directory next to ``path`` for which ``holds`` is true and whose name is closest to its name."""
    parent = os.path.dirname(path)
    try:
        found = [e for e in os.listdir(parent) if holds(os.path.join(parent, e))]
    except OSError:
        return None
    return suggest(os.path.basename(path), found)


def _beside(written: str, sibling: str) -> str:
    """The directory ``sibling`` next to the one ``written`` names, spelled as a local path (`./` kept)."""
    near = os.path.normpath(os.path.join(written, os.pardir, sibling))
    return near if near.startswith(("/", "../", "~")) else f"./{near}"
