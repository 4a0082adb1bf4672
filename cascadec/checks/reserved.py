"""CAS331: stages, domains, evals and named checkpoints whose name is a reserved word of the grammar, or a
name the language gives a meaning of its own (`base`, a domain `default` or `train`)."""

from __future__ import annotations

from typing import Iterator

from cascadec import ast
from cascadec.checkpoints import declared
from cascadec.checks.context import CheckContext
from cascadec.codes import make
from cascadec.contract.kinds import TRAIN_METRICS
from cascadec.diagnostics import Diagnostic
from cascadec.parser import reserved_words
from cascadec.routes import DEFAULT

# names that parse but already mean something where the same kind of name is read
_MEANINGS = {
    "stage": {"base": "`base` is the base model wherever a stage name is expected"},
    "checkpoint": {"base": "`base` is the base model wherever a stage name is expected"},
    "domain": {DEFAULT: "`default` in `teachers { }` is the route of every other domain",
               TRAIN_METRICS: f"`{TRAIN_METRICS}.METRIC` in a stop rule reads a training metric, not an eval"},
}


def _declared(ctx: CheckContext) -> Iterator[tuple[str, ast.Ident]]:
    """(what, name) of every stage, domain, eval and named checkpoint the spec declares."""
    yield from (("stage", st.name) for st in ctx.view.stages)
    for d in ctx.view.domains:
        yield "domain", d.name
        yield from (("eval", e.name) for e in d.evals)
    yield from (("checkpoint", entry.key) for entry in declared(ctx.view).values())


def _other_name(word: str, what: str, taken: set[str]) -> str:
    """`eval_stage` for a stage named `eval`: a name that keeps the user's word and is free."""
    name, n = f"{word}_{what}", 2
    while name in taken:
        name, n = f"{word}_{what}{n}", n + 1
    return name


def check_reserved(module: ast.Module, ctx: CheckContext) -> Iterator[Diagnostic]:
    reserved = reserved_words()
    names = list(_declared(ctx))
    taken = {ident.name for _, ident in names}
    for what, ident in names:
        word = ident.name
        meaning = _MEANINGS.get(what, {}).get(word)
        if word not in reserved and meaning is None:
            continue
        why = meaning or f"`{word}` is a reserved word of the language"
        article = "an" if what[0] in "aeiou" else "a"
        yield make("CAS331", f"{article} {what} named `{word}`", ident.span, label=why,
                   help=f"rename the {what}, e.g. `{_other_name(word, what, taken)}`, here and where it is used")
