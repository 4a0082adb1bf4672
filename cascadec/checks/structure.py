"""File structure (CAS311, CAS313, CAS314), duplicate definitions (CAS303), unknown and misplaced keys
(CAS301, CAS302) and unknown stage kinds (CAS312)."""

from __future__ import annotations

import json
from typing import Iterable, Iterator

from cascadec import ast
from cascadec.checkpoints import declared
from cascadec.checks.context import CheckContext
from cascadec.codes import make
from cascadec.diagnostics import Diagnostic
from cascadec.contract.kinds import STAGE_KINDS
from cascadec.contract.plan import is_dir_name
from cascadec.model.keys import CASCADE_KEYS, DOMAIN_KEYS, EVAL_KEYS, RESOURCE_KEYS, stage_keys
from cascadec.contract.suggest import did_you_mean, suggest
from cascadec.units import UNITS, unit_guess


def check_structure(module: ast.Module, ctx: CheckContext) -> Iterator[Diagnostic]:
    """One cascade block in the main file, none in imported files, at least one stage, and `teachers`/
    `until` only where they mean something."""
    if not module.cascades:
        yield make("CAS311", "no `cascade` block in this file", module.span,
                   label="expected `cascade \"NAME\" { ... }`",
                   help='wrap the spec in `cascade "NAME" { ... }`; files without one can only be imported')
        return
    for extra in module.cascades[1:]:
        yield make("CAS311", "a second `cascade` block", extra.name.span, label="second cascade",
                   secondary=((module.cascades[0].name.span, "first cascade here"),),
                   help="put each cascade in its own file")
    for mod in ctx.view.modules:
        if mod is not module and mod.cascades:
            yield make("CAS311", "an imported file holds a `cascade` block", mod.cascades[0].name.span,
                       label="imported files hold only domains, defaults and resources",
                       help="move the shared domains into a file without a `cascade` block")
    name = module.cascades[0].name
    if not is_dir_name(name.value):
        yield make("CAS200", f"cascade name {json.dumps(name.value, ensure_ascii=False)} cannot name a directory",
                   name.span, label="used as `build/<name>/` and `runs/<name>/`",
                   help="use letters, digits, `-`, `_` or `.`, without `/`, `\\` or control characters")
    if not ctx.view.stages:
        yield make("CAS314", "the cascade declares no stage", module.cascades[0].name.span,
                   label="this cascade", help="add e.g. `stage sft = sft(base) { steps = 100  lr = 1e-5 }`")
    for d in ctx.view.defaults:
        for item in d.items:
            if isinstance(item, (ast.Teachers, ast.Until, ast.Resources)):
                word = {ast.Teachers: "teachers", ast.Until: "until", ast.Resources: "resources"}[type(item)]
                where = " or into the cascade's own `resources { }`, which every stage inherits" \
                    if word == "resources" else ""
                yield make("CAS313", f"`{word}` is not allowed in `defaults`", item.span,
                           label="only in a stage", help=f"move `{word}` into the stages that need it{where}")
    for st in ctx.view.stages:
        for item in st.items:
            kind = STAGE_KINDS.get(st.kind.name)
            if kind is None or kind.teachers:  # an unregistered kind is CAS312
                continue
            if isinstance(item, ast.Teachers):
                owners = [k.name for k in STAGE_KINDS.values() if k.teachers]
                yield make("CAS313", f"`teachers` in a `{st.kind.name}` stage", item.span,
                           label=f"only {' and '.join(f'`{o}`' for o in owners)} stages have teachers",
                           help=f"make `{st.name.name}` a `{owners[0]}(...)` stage or remove the block")
            if isinstance(item, ast.Until):
                for cond in item.conds:
                    if isinstance(cond, ast.Threshold) and cond.teacher is not None:
                        yield make("CAS313", "`teacher(...)` in a stop rule of a stage without teachers",
                                   cond.teacher.span, label="no teacher here",
                                   help="compare with a number, e.g. `math.gsm >= 0.8`")


def _dupes(named: Iterable[tuple[str, object]], what: str, help: str | None = None) -> Iterator[Diagnostic]:
    """CAS303 for every repeated name; ``named`` yields (name, node with .span or Ident)."""
    first: dict[str, object] = {}
    for name, node in named:
        if name in first:
            yield make("CAS303", f"{what} `{name}` is defined twice", node.span,  # type: ignore[attr-defined]
                       label="defined again here",
                       secondary=((first[name].span, "first defined here"),),  # type: ignore[attr-defined]
                       help=help or f"rename one of them or remove the second {what}")
        else:
            first[name] = node


def _assign_dupes(assigns: Iterable[ast.Assign]) -> Iterator[Diagnostic]:
    yield from _dupes(((a.key.name, a.key) for a in assigns), "key")


def _checkpoint_stage_clashes(view: ast.SpecView) -> Iterator[Diagnostic]:
    """CAS303 for a stage named like a checkpoint: the runtime resolves a parent or teacher among the checkpoints
    first, so a stage `grpo(s)` would start from the checkpoint and not from the stage `s` trained here."""
    checkpoints = {e.key.name: e.key for e in declared(view).values()}
    for st in view.stages:
        ckpt = checkpoints.get(st.name.name)
        if ckpt is None:
            continue
        first, second = sorted((ckpt, st.name), key=lambda i: (i.span.path != st.name.span.path, i.span.start))
        yield make("CAS303", f"`{st.name.name}` names both a checkpoint and a stage", second.span,
                   label="defined again here",
                   secondary=((first.span, f"{'checkpoint' if first is ckpt else 'stage'} defined here"),),
                   help=f"rename the checkpoint (e.g. `{st.name.name}_ckpt`) or the stage, here and where it is "
                   "used: a parent or teacher name must say which one it means")


def check_duplicates(module: ast.Module, ctx: CheckContext) -> Iterator[Diagnostic]:
    view = ctx.view
    yield from _dupes(((s.name.name, s.name) for s in view.stages), "stage")
    yield from _checkpoint_stage_clashes(view)
    yield from _dupes(((d.name.name, d.name) for d in view.domains), "domain")
    for mod in view.modules:
        defaults = [d for d in view.defaults if d.span.path == mod.path]
        yield from _dupes(((d.kind.name, d.kind) for d in defaults), "defaults block")
    yield from _assign_dupes(view.assigns)
    for call in view.calls:
        # without this the last value won silently: `gym(..., size = 200, size = 100)` loaded 100 rows
        yield from _dupes(((k.key.name, k.key) for k in call.kwargs), f"`{call.func.name}(...)` keyword",
                          help="remove one of them: a call takes each keyword once")
    for d in view.domains:
        yield from _assign_dupes(d.assigns)
        yield from _dupes(((e.name.name, e.name) for e in d.evals), "eval")
        for e in d.evals:
            yield from _assign_dupes(e.body)
    for mod in view.modules:
        # one file's cascade-level `resources` blocks are one table; the main file may override an import's
        yield from _assign_dupes(a for res in view.resources if res.span.path == mod.path for a in res.assigns)
    for block in (*view.stages, *view.defaults):
        yield from _assign_dupes(i for i in block.items if isinstance(i, ast.Assign))
        for kind, word in ((ast.Teachers, "teachers"), (ast.Until, "until"), (ast.Resources, "resources")):
            blocks = [i for i in block.items if isinstance(i, kind)]
            for extra in blocks[1:]:
                yield make("CAS303", f"a second `{word}` in one block", extra.span, label="second one",
                           secondary=((blocks[0].span, "first defined here"),),
                           help=f"merge them into one `{word}`" + (" with `or`" if word == "until" else ""))
        for item in block.items:
            if isinstance(item, (ast.Teachers, ast.Resources)):
                yield from _assign_dupes(item.assigns)
            if isinstance(item, ast.Teachers):
                for a in item.assigns:
                    if isinstance(a.value, ast.Call) and a.value.func.name == "best":
                        yield from _dupes(((c.name, c) for c in a.value.args if isinstance(c, ast.Ident)),
                                          "`best(...)` candidate")


def _home(name: str) -> str | None:
    """Where a key that is valid elsewhere belongs, for the help line of CAS301."""
    if name in ("data", "domains", "dataset", "datasets"):
        return "a stage picks its domains with `on` after its parent: `stage NAME = sft(base) on [math, code] { ... }`"
    if name in RESOURCE_KEYS:
        return f"`{name}` belongs in a `resources {{ }}` block"
    if name in DOMAIN_KEYS:
        return f"`{name}` is a domain key: set it inside `domain NAME {{ }}`"
    if any(name in k.all_keys() for k in STAGE_KINDS.values()):
        return f"`{name}` is a stage key: set it in a stage or in `defaults KIND {{ }}`"
    if name in CASCADE_KEYS:
        return f"`{name}` is set once, directly inside the `cascade` block"
    return None


def meant_key(name: str, valid: Iterable[str]) -> str | None:
    """The valid key that CAS301's help says an unknown key ``name`` means (`reward` for `rewad`), or None
    when the help points elsewhere (a key of another block) or finds no close key."""
    return None if name in valid or _home(name) else suggest(name, valid)


def _unknown(key: ast.Ident, valid: Iterable[str], where: str, value: ast.Value | None = None) -> Diagnostic:
    """CAS301; an unknown key's value is never converted, so its unknown unit (`memory = 80gb`) is told here."""
    home, close = _home(key.name), suggest(key.name, valid)
    help = home or did_you_mean(key.name, tuple(valid), "keys")
    guess = unit_guess(value.text, value.unit) if isinstance(value, ast.Num) and value.unit not in (None, *UNITS) \
        else None
    if guess is not None:
        help = f"did you mean `{close} = {guess[0]}`?{guess[1]}" if close and not home else \
            f"{help}; write the value as `{guess[0]}`{guess[1]}"
    return make("CAS301", f"unknown key `{key.name}` in {where}", key.span, label="unknown key", help=help)


def _stage_key_diags(items: Iterable[object], kind: str, where: str) -> Iterator[Diagnostic]:
    valid = stage_keys(kind)
    for item in items:
        if isinstance(item, ast.Resources):
            for a in item.assigns:
                if a.key.name not in RESOURCE_KEYS:
                    yield _unknown(a.key, RESOURCE_KEYS, "`resources`", a.value)
        if not isinstance(item, ast.Assign) or item.key.name in valid:
            continue
        owners = [k.name for k in STAGE_KINDS.values() if item.key.name in k.keys]
        if owners:
            yield make("CAS302", f"`{item.key.name}` is not a key of `{kind}` stages", item.key.span,
                       label=f"only valid in {' and '.join(f'`{o}`' for o in owners)} stages",
                       help=f"remove `{item.key.name}` from {where}, or move it to a "
                            f"{' or '.join(owners)} stage")
        else:
            yield _unknown(item.key, valid, where, item.value)


def check_keys(module: ast.Module, ctx: CheckContext) -> Iterator[Diagnostic]:
    view = ctx.view
    for a in view.assigns:
        if a.key.name not in CASCADE_KEYS:
            yield _unknown(a.key, CASCADE_KEYS, "the cascade block", a.value)
    for d in view.domains:
        for a in d.assigns:
            if a.key.name not in DOMAIN_KEYS:
                yield _unknown(a.key, DOMAIN_KEYS, f"domain `{d.name.name}`", a.value)
        for e in d.evals:
            for a in e.body:
                if a.key.name not in EVAL_KEYS:
                    yield _unknown(a.key, EVAL_KEYS, f"eval `{e.name.name}`", a.value)
    for res in view.resources:
        for a in res.assigns:
            if a.key.name not in RESOURCE_KEYS:
                yield _unknown(a.key, RESOURCE_KEYS, "`resources`", a.value)
    for st in view.stages:
        if st.kind.name not in STAGE_KINDS:
            yield make("CAS312", f"unknown stage kind `{st.kind.name}`", st.kind.span, label="not a stage kind",
                       help=did_you_mean(st.kind.name, STAGE_KINDS, "stage kinds"))
            continue
        yield from _stage_key_diags(st.items, st.kind.name, f"stage `{st.name.name}`")
    for d in view.defaults:
        if d.kind.name not in STAGE_KINDS:
            yield make("CAS312", f"unknown stage kind `{d.kind.name}` in `defaults`", d.kind.span,
                       label="not a stage kind", help=did_you_mean(d.kind.name, STAGE_KINDS, "stage kinds"))
            continue
        yield from _stage_key_diags(d.items, d.kind.name, f"`defaults {d.kind.name}`")
