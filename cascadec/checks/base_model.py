"""CAS325 for a base model that is a local directory (``model("./dir")``) without a model in it, or whose
``tokenizer = "./dir"`` is a local directory that does not exist.

The path was resolved against the spec's directory when the model was built (`cascadec.model.calls`), and the
runtime loads exactly that absolute path (`runtime.models.load_checkpoint`, which needs its ``config.json``),
so both sides look at the same place. A hub id (``model("org/name")``) is not a path and is not looked up.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from cascadec import ast
from cascadec.checkpoints import NOT_FOUND_HINT, shown
from cascadec.checks.context import CheckContext
from cascadec.codes import make
from cascadec.contract.suggest import suggest
from cascadec.diagnostics import Diagnostic


_PATHS = ("a path starting with `./`, `../`, `/` or `~` is a local directory, resolved from the spec's directory; "
          "other names are hub ids",)


def check_base_model(module: ast.Module, ctx: CheckContext) -> Iterator[Diagnostic]:
    """CAS325 for a local base model without its `config.json`, or a local tokenizer directory that is missing."""
    assert ctx.spec is not None
    base = ctx.spec.base
    value = next(a.value for a in ctx.view.assigns if a.key.name == "base")
    if not isinstance(value, ast.Call):
        return
    if base.kind == "path" and not os.path.isfile(os.path.join(base.name, "config.json")):
        written: ast.Str = value.args[0]  # type: ignore[assignment]
        what = "has no config.json" if os.path.isdir(base.name) else "does not exist"
        close = _sibling(base.name, "config.json")
        yield make("CAS325", f"base model directory `{shown(base.name)}` {what}", written.span, label="not found",
                   notes=_PATHS, help=f"did you mean `{os.path.join(os.path.dirname(written.value), close)}`?"
                   if close else f"{NOT_FOUND_HINT}, or a hub id such as `org/name`")
    tokenizer = next((kw.value for kw in value.kwargs if kw.key.name == "tokenizer"), None)
    if isinstance(tokenizer, ast.Str) and os.path.isabs(base.tokenizer or "") and not os.path.isdir(base.tokenizer):
        close = _sibling(base.tokenizer, "tokenizer_config.json")
        yield make("CAS325", f"tokenizer directory `{shown(base.tokenizer)}` does not exist", tokenizer.span,
                   label="not found", notes=_PATHS,
                   help=f"did you mean `{os.path.join(os.path.dirname(tokenizer.value), close)}`?" if close else
                   "give a directory written by `save_pretrained` (with the tokenizer's files), a packaged model "
                   "name or a hub id")


def _sibling(path: str, marker: str) -> str | None:
    """The directory next to ``path`` that holds ``marker`` and whose name is closest to its name."""
    parent = os.path.dirname(path)
    try:
        found = [e for e in os.listdir(parent) if os.path.isfile(os.path.join(parent, e, marker))]
    except OSError:
        return None
    return suggest(os.path.basename(path), found)
