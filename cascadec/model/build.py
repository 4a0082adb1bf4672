"""Building the input model from the AST: values converted per key, then validated by pydantic.

Building goes in two steps: AST values are converted per key (types, units: CAS200/CAS202/CAS104), then
pydantic validates; every ``ValidationError`` location is mapped back to the span of the value that produced
it (`cascadec.model.errors`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from pydantic import ValidationError

from cascadec import ast
from cascadec.contract.kinds import TRAIN_METRICS, Key
from cascadec.contract.suggest import did_you_mean
from cascadec.diagnostics import Diagnostic, Span
from cascadec.model.calls import to_chat, to_data, to_model, to_reward
from cascadec.model.convert import Invalid, _bad, _chat, _shape, convert, to_bool, to_float, to_int, to_str
from cascadec.model.errors import Spans, validation_diagnostics
from cascadec.model.inputs import SpecIn
from cascadec.model.keys import EVAL_KEYS, RESOURCE_KEYS, stage_keys
from cascadec.routes import field_name, teacher_routes, teacher_weight, teacher_weights
from cascadec.tracking import to_tracking


@dataclass
class Built:
    """The raw input dict with a side table: location of a value → (span of its text, user's key)."""

    data: dict[str, Any] = field(default_factory=dict)
    spans: dict[tuple[Any, ...], tuple[Span, str]] = field(default_factory=dict)
    diagnostics: list[Diagnostic] = field(default_factory=list)

    def put(self, loc: tuple[Any, ...], value: Any, span: Span, key: str) -> None:
        node = self.data
        for part in loc[:-1]:
            node = node.setdefault(part, {}) if isinstance(node, dict) else node[part]
        node[loc[-1]] = value
        self.spans[loc] = (span, key)

    def guard(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Invalid as exc:
            self.diagnostics.append(exc.diagnostic)


def _stage_assign(b: Built, i: int, a: ast.Assign, keys: dict[str, Key],
                  block: dict[tuple[Any, ...], str]) -> None:
    """Put one key of a block; ``block`` maps what the block's keys set so far to the key that set it, so that
    two keys setting one field (`lr = 1e-5 -> 1e-6 cosine warmup 10` and `warmup = 20`) are an error, not a
    silent choice of the later one."""
    spec = keys.get(a.key.name)
    if spec is None:  # reported by the key check
        return
    value = convert(a.value, a.key.name, spec)
    loc = ("stages", i, *spec.target)
    if spec.kind == "schedule":
        writes = [(loc + (k,), val) for k, val in value.items()]
    elif spec.kind == "overlong":  # one rule sets the overlong fields next to `overlong`
        writes = [(loc[:-1] + (k,), val) for k, val in value.items()]
    else:
        writes = [(loc, value)]
    for where, _ in writes:
        other = block.get(where)
        if other is not None and other != a.key.name:
            shown = a.key.name if spec.kind not in ("schedule", "overlong") else other
            raise _bad("CAS303", f"`{other}` and `{a.key.name}` in this block both set `{shown}`", a.key.span,
                       label="set a second time here", help=f"set `{shown}` once in this block")
    for where, val in writes:
        block[where] = a.key.name
        b.put(where, val, a.value.span, a.key.name)


def _stage(b: Built, i: int, st: ast.Stage, view: ast.SpecView, seed: int, seed_span: Span) -> None:
    kind = st.kind.name
    b.put(("stages", i, "name"), st.name.name, st.name.span, "stage")
    b.put(("stages", i, "kind"), kind, st.kind.span, "kind")
    b.put(("stages", i, "parent"), st.parent.name, st.parent.span, "parent")
    b.put(("stages", i, "params", "kind"), kind, st.kind.span, "kind")
    b.put(("stages", i, "seed"), seed, seed_span, "seed")  # the cascade's seed unless the stage sets one
    b.spans[("stages", i)] = (st.name.span, st.name.name)
    b.spans[("stages", i, "params")] = (st.name.span, st.name.name)
    b.spans[("stages", i, "params", "optim")] = (st.name.span, "lr")
    domain_names = [d.name.name for d in view.domains]
    if st.on is None:
        for d in domain_names:
            b.put(("stages", i, "domains", d), 1.0, st.name.span, "on")
    elif isinstance(st.on, ast.Ident):
        b.put(("stages", i, "domains", st.on.name), 1.0, st.on.span, "on")
    else:
        for item in st.on.items:
            if isinstance(item, ast.Pair):
                b.guard(lambda item=item: b.put(("stages", i, "domains", item.key.name),
                                                to_float(item.value, "weight"), item.value.span, "weight"))
            elif isinstance(item, ast.Ident):
                b.put(("stages", i, "domains", item.name), 1.0, item.span, "on")
    keys = stage_keys(kind)
    for res in view.resources:
        block: dict[tuple[Any, ...], str] = {}
        for a in res.assigns:
            b.guard(lambda a=a, block=block: _stage_assign(b, i, a, RESOURCE_KEYS, block))
    for d in view.defaults:
        if d.kind.name == kind:
            block = {}
            for a in d.items:
                if isinstance(a, ast.Assign):
                    b.guard(lambda a=a, block=block: _stage_assign(b, i, a, keys, block))
    own: dict[tuple[Any, ...], str] = {}
    for item in st.items:
        if isinstance(item, ast.Assign):
            b.guard(lambda a=item: _stage_assign(b, i, a, keys, own))
        elif isinstance(item, ast.Resources):
            block = {}
            for a in item.assigns:
                b.guard(lambda a=a, block=block: _stage_assign(b, i, a, RESOURCE_KEYS, block))
        elif isinstance(item, ast.Teachers):
            by, routes = teacher_routes(item)
            if by is not None:
                b.guard(lambda by=by: b.put(("stages", i, "teacher_field"), field_name(by.value, "`teachers`"),
                                            by.value.span, "by"))
            for a in routes:
                b.guard(lambda a=a: b.put(("stages", i, "teachers", a.key.name), _teacher(a.value),
                                          a.value.span, a.key.name))
            for key, w in teacher_weights(item):
                b.guard(lambda key=key, w=w: b.put(("stages", i, "teacher_weights", key), _route_weight(kind, w),
                                                   w.span, "weight"))
        elif isinstance(item, ast.Until):
            b.data.setdefault("stages", {}).setdefault(i, {}).setdefault("until", [])
            for cond in item.conds:
                b.guard(lambda c=cond: _condition(b, i, c))


def to_checkpoints(v: ast.Value, key: str) -> dict[str, Any]:
    from cascadec.checkpoints import to_checkpoints as convert_checkpoints  # builds on the call converters

    return convert_checkpoints(v, key)


def _teacher(v: ast.Value) -> dict[str, Any]:
    if isinstance(v, ast.Ident):
        return {"kind": "stage", "stage": v.name}
    if isinstance(v, ast.Call) and v.func.name == "best" and v.by is not None and not v.kwargs \
            and all(isinstance(a, ast.Ident) for a in v.args):
        return {"kind": "best", "candidates": [a.name for a in v.args],  # type: ignore[union-attr]
                "domain": v.by.first.name, "eval": v.by.second.name}
    raise _bad("CAS200", f"a teacher is a stage name or `best(...)`, found {_shape(v)}", v.span,
               help="write `math = sft` or `math = best(sft, rl by math.gsm)`")


def _route_weight(kind: str, v: ast.Value) -> float:
    if kind != "distill":  # offline_distill trains on cached teacher targets with no per-row loss weight
        raise _bad("CAS200", f"teacher route weights scale the loss of `distill` stages, not of `{kind}`", v.span,
                   help="drop `weight = ...`, or give the rows their own stage")
    return teacher_weight(v)


def _condition(b: Built, i: int, c: ast.Cond) -> None:
    until = b.data["stages"][i]["until"]
    loc = ("stages", i, "until", len(until))
    if isinstance(c, ast.StepsCond):
        out = {"kind": "steps", "op": c.op, "value": float(to_int(c.value, "steps"))}
        b.spans[loc + ("value",)] = (c.value.span, "steps")
    elif isinstance(c, ast.Threshold) and c.ref.first.name == TRAIN_METRICS:
        if c.value is None:
            raise _bad("CAS200", "a training-metric stop rule compares with a number", c.span,
                       label="not a number", help=f"write e.g. `{TRAIN_METRICS}.{c.ref.second.name} {c.op} 0.1`")
        out = {"kind": "metric", "metric": c.ref.second.name, "op": c.op, "value": to_float(c.value, "threshold")}
        b.spans[loc + ("value",)] = (c.value.span, "threshold")
    elif isinstance(c, ast.Threshold):
        out = {"kind": "threshold", "domain": c.ref.first.name, "eval": c.ref.second.name, "op": c.op,
               "value": to_float(c.value, "threshold") if c.value is not None else 1.0}
        if c.teacher is not None:
            out["relative_to"] = c.teacher.domain.name
        if c.value is not None:
            b.spans[loc + ("value",)] = (c.value.span, "threshold")
    else:
        out = {"kind": "plateau", "domain": c.ref.first.name, "eval": c.ref.second.name}
        for kw in c.kwargs:
            if kw.key.name == "patience":
                out["patience"] = to_int(kw.value, "patience")
            elif kw.key.name == "min_delta":
                out["min_delta"] = to_float(kw.value, "min_delta")
            else:
                raise _bad("CAS301", f"unknown argument `{kw.key.name}` of `plateau(...)`", kw.key.span,
                           help=did_you_mean(kw.key.name, ("patience", "min_delta"), "arguments"))
            b.spans[loc + (kw.key.name,)] = (kw.value.span, kw.key.name)
        # the runtime stops after `patience` eval points without a gain (Keras EarlyStopping); 0 means nothing
        if "patience" not in out:
            raise _bad("CAS203", "`plateau(...)` needs `patience`", c.span, label="how many eval points to wait",
                       help=f"write e.g. `plateau({c.ref.first.name}.{c.ref.second.name}, patience = 3)`")
        if out["patience"] < 1:
            raise _bad("CAS201", f"`plateau(...)` needs `patience` of at least 1, found {out['patience']}",
                       b.spans[loc + ("patience",)][0], label="eval points to wait for a gain",
                       help="write e.g. `patience = 3`")
    b.spans[loc] = (c.span, "until")
    until.append(out)


def _domain(b: Built, d: ast.Domain) -> None:
    name = d.name.name
    loc = ("domains", name)
    b.put(loc + ("name",), name, d.name.span, "domain")
    b.spans[loc] = (d.name.span, name)
    # `decontaminate = on` without an eval has nothing to drop rows against (CAS411): the help says so
    flag = (None if d.evals else f"domain `{name}` has no eval to drop training rows against: write "
            f"`decontaminate = off`, or add an `eval NAME = ...` to it and write `decontaminate = on`")
    converters = {"train": to_data, "reward": to_reward, "system": to_str, "chat": _chat,
                  "decontaminate": lambda v, key: to_bool(v, key, help=flag)}
    for a in d.assigns:
        fn = converters.get(a.key.name)
        if a.key.name == "overlong":  # one rule sets the domain's four overlong fields
            b.guard(lambda a=a: [b.put(loc + (k,), val, a.value.span, a.key.name)
                                 for k, val in convert(a.value, a.key.name, Key((), "overlong")).items()])
        elif fn is not None:
            b.guard(lambda a=a, fn=fn: b.put(loc + (a.key.name,), fn(a.value, a.key.name), a.value.span,
                                              a.key.name))
            _note_call_arguments(b, loc + (a.key.name,), a.value)
    evals: list[dict[str, Any]] = []
    b.put(loc + ("evals",), evals, d.name.span, "eval")
    for j, ev in enumerate(d.evals):
        entry: dict[str, Any] = {"name": ev.name.name}
        evals.append(entry)
        b.spans[loc + ("evals", j)] = (ev.name.span, ev.name.name)

        def fill(ev: ast.EvalDecl = ev, entry: dict[str, Any] = entry, j: int = j) -> None:
            entry["data"] = to_data(ev.data, "eval")
            b.spans[loc + ("evals", j, "data")] = (ev.data.span, "eval")
            _note_call_arguments(b, loc + ("evals", j, "data"), ev.data)
            for a in ev.body:
                spec = EVAL_KEYS.get(a.key.name)
                if spec is not None:
                    value = convert(a.value, a.key.name, spec)
                    # `metric = avg@4` sets two fields (metric and k); every other key sets one
                    fields = value if isinstance(value, dict) else {spec.target[0]: value}
                    entry.update(fields)
                    for k in fields:
                        b.spans[loc + ("evals", j, k)] = (a.value.span, a.key.name)
        b.guard(fill)


def _note_call_arguments(b: Built, loc: tuple[Any, ...], v: ast.Value) -> None:
    """Record the span of each keyword argument of a call (`gym(..., size = -5)`), so that a range error
    on one argument points at its value rather than at the whole call."""
    if isinstance(v, ast.Call):
        for kw in v.kwargs:
            b.spans[loc + (kw.key.name,)] = (kw.value.span, kw.key.name)


def _listify(data: dict[str, Any]) -> None:
    """Stages are collected under integer keys while being built; pydantic wants a list."""
    stages = data.get("stages", {})
    data["stages"] = [stages[i] for i in sorted(stages)]


def _tracking(v: ast.Value, key: str) -> list[str]:
    names = to_tracking(v, key)
    if isinstance(names, Diagnostic):
        raise Invalid(names)
    return names


def _convert(view: ast.SpecView) -> Built:
    b = Built()
    cascade = view.cascade
    assert cascade is not None  # CAS311 stops the pipeline before the model is built
    b.put(("name",), cascade.name.value, cascade.name.span, "cascade")
    converters = {"base": to_model, "chat": to_chat, "seed": to_int, "tracking": _tracking,
                  "checkpoints": to_checkpoints}
    for a in view.assigns:
        fn = converters.get(a.key.name)
        if fn is not None:
            b.guard(lambda a=a, fn=fn: b.put((a.key.name,), fn(a.value, a.key.name), a.value.span, a.key.name))
    seed = b.data.get("seed", 0)
    seed_span = b.spans[("seed",)][0] if ("seed",) in b.spans else cascade.name.span
    b.data["domains"] = {}
    for d in view.domains:
        _domain(b, d)
    b.data["stages"] = {}
    for i, st in enumerate(view.stages):
        _stage(b, i, st, view, seed, seed_span)
    return b


def build(view: ast.SpecView) -> tuple[SpecIn | None, list[Diagnostic], Spans]:
    """AST view → validated `SpecIn` (or None) with CAS1xx/CAS2xx diagnostics, and the location → span
    table of every value (used by later checks and for origins)."""
    b = _convert(view)
    if b.diagnostics:
        # `resources` and `defaults` values are converted once per stage: report each mistake once
        return None, list(dict.fromkeys(b.diagnostics)), b.spans
    _listify(b.data)
    try:
        return SpecIn.model_validate(b.data), [], b.spans
    except ValidationError as exc:
        assert view.cascade is not None
        return None, validation_diagnostics(b.spans, exc, view.cascade.name.span), b.spans


def build_rest(view: ast.SpecView) -> tuple[SpecIn | None, Spans]:
    """The spec built from the values that convert, each value that does not left out (at its default), or
    None when that does not validate: the rest of a spec whose :func:`build` failed, for the checks that look
    at other parts of it (`cascadec.compiler._independent`)."""
    b = _convert(view)
    _listify(b.data)
    try:
        return SpecIn.model_validate(b.data), b.spans
    except ValidationError:
        return None, b.spans
