"""CAS325 for a base model that is a local directory (``model("./dir")``) without a model in it.

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


def check_base_model(module: ast.Module, ctx: CheckContext) -> Iterator[Diagnostic]:
    assert ctx.spec is not None
    base = ctx.spec.base
    if base.kind != "path" or os.path.isfile(os.path.join(base.name, "config.json")):
        return
    value = next(a.value for a in ctx.view.assigns if a.key.name == "base")
    span = value.args[0].span if isinstance(value, ast.Call) and value.args else value.span
    what = "has no config.json" if os.path.isdir(base.name) else "does not exist"
    written = value.args[0].value if isinstance(value, ast.Call) and isinstance(value.args[0], ast.Str) else ""
    close = _sibling(base.name)
    yield make("CAS325", f"base model directory `{shown(base.name)}` {what}", span, label="not found",
               notes=("a path starting with `./`, `../`, `/` or `~` is a local directory, resolved from the "
                      "spec's directory; other names are hub ids",),
               help=f"did you mean `{os.path.join(os.path.dirname(written), close)}`?" if close else
               f"{NOT_FOUND_HINT}, or a hub id such as `org/name`")


def _sibling(path: str) -> str | None:
    """The model directory next to ``path`` whose name is closest to its name."""
    parent = os.path.dirname(path)
    try:
        found = [e for e in os.listdir(parent) if os.path.isfile(os.path.join(parent, e, "config.json"))]
    except OSError:
        return None
    return suggest(os.path.basename(path), found)
