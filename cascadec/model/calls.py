"""Call parsers: data sources, rewards, model sources and chat templates (`jsonl(...)`, `math_verify()`, ...)."""

from __future__ import annotations

import os
from typing import Any

from cascadec import ast
from cascadec.contract.kinds import REWARD_KINDS
from cascadec.contract.suggest import did_you_mean
from cascadec.diagnostics import Diagnostic, Span
from cascadec.model.convert import Invalid, _bad, _shape, to_float, to_int, to_plain, to_str
from cascadec.model.keys import PACKAGED_MODELS
from cascadec.reward_args import check_reward_args


#: How `model(...)` and its `tokenizer` tell a local directory from a hub id (CAS325's note says the same).
LOCAL_PREFIXES = ("./", "../", "/", "~")


def is_local(name: str) -> bool:
    """Whether ``name`` in `model(...)` or its `tokenizer` is a local directory rather than a hub id."""
    return name.startswith(LOCAL_PREFIXES)


def is_hub_id(name: str) -> bool:
    """Whether the Hugging Face Hub accepts ``name`` as a repository id: ``name`` or ``org/name`` of letters,
    digits, `-`, `_` and `.`, at most 96 characters a part, not starting or ending with `-` or `.`, without `--`,
    `..` or a `.git` ending. The rule is `huggingface_hub.utils.validate_repo_id` (no network), so the compiler
    accepts what `from_pretrained` will."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id  # ~0.1 s, only where a hub id is written

    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def _resolve(path: str, span: Span) -> str:
    """A path written in the file at ``span.path``, made absolute relative to that file's directory."""
    base = os.path.dirname(os.path.abspath(span.path)) if not span.path.startswith("<") else os.getcwd()
    return os.path.normpath(os.path.join(base, os.path.expanduser(path)))


def _call(v: ast.Value, what: str, kinds: tuple[str, ...], example: str) -> ast.Call:
    if not isinstance(v, ast.Call):
        raise _bad("CAS200", f"{what} must be a call such as `{example}`, found {_shape(v)}", v.span,
                   help=f"write e.g. `{example}`")
    if v.func.name not in kinds:
        raise _bad("CAS312", f"unknown {what} `{v.func.name}`", v.func.span, label=f"not a {what}",
                   help=did_you_mean(v.func.name, kinds, f"{what}s"))
    if v.by is not None:
        raise _bad("CAS200", "`by` is only valid inside `best(...)`", v.by.span, help="remove `by ...`")
    _positional_order(v)
    return v


def _positional_order(call: ast.Call) -> None:
    """Positional arguments come before keyword ones; `size = 1,000` is the usual way to break that."""
    if not call.kwargs:
        return
    first_kw = call.kwargs[0]
    late = [a for a in call.args if a.span.start > first_kw.span.start]
    if not late:
        return
    arg = late[0]
    before = max((kw for kw in call.kwargs if kw.span.start < arg.span.start), key=lambda kw: kw.span.start)
    if isinstance(arg, ast.Num) and isinstance(before.value, ast.Num) and arg.span.start == before.value.span.end + 1:
        raise _bad("CAS200", "`,` is not a thousands separator", arg.span, label="read as another argument",
                   help=f"write `{before.value.text}{arg.text}` or `{before.value.text}_{arg.text}`")
    raise _bad("CAS200", f"a positional argument after `{before.key.name} = ...` in `{call.func.name}(...)`", arg.span,
               label="positional argument", help="put positional arguments first, or name this one")


def _one_string(call: ast.Call, what: str) -> str:
    if len(call.args) != 1 or not isinstance(call.args[0], ast.Str):
        raise _bad("CAS200", f"`{call.func.name}(...)` takes one string ({what}) as its first argument",
                   call.span, help=f'write `{call.func.name}("...")`')
    return call.args[0].value


def to_data(v: ast.Value, key: str) -> dict[str, Any]:
    from cascadec.sources import to_data as convert_data  # sources builds on this module's call helpers

    return convert_data(v, key)


_REWARD_POSITIONAL = {k.name: n for k in REWARD_KINDS.values() for n, a in k.args.items() if a.positional}


# A local reward model is resolved against the spec's directory, as the base model is (`_local_models`)
_REWARD_MODEL_NOTE = ("a name starting with `./`, `../`, `/` or `~` is a local directory, relative to the spec's "
                      "directory; other names are hub ids (`name` or `org/name`)")


def written_models(call: ast.Call) -> list[tuple[str, ast.Str]]:
    """A reward call's model arguments written as strings (`reward_model("m")`, `judge(model = "m")`), with their
    names; none for a call that is not a reward kind with a model argument."""
    kind = REWARD_KINDS.get(call.func.name)
    out = []
    for name, arg in (kind.args.items() if kind is not None else ()):
        value = call.args[0] if arg.positional and call.args else \
            next((kw.value for kw in call.kwargs if kw.key.name == name), None)
        if arg.model and isinstance(value, ast.Str):
            out.append((name, value))
    return out


def _model_name_problem(call: ast.Call) -> Diagnostic | None:
    """CAS325 for a reward's model (`reward_model("m")`, `judge("m")`) that is not written as a local path and
    that the Hub rejects as a repository id: the base model's rule (`cascadec.checkpoints.hub_id_problem`)."""
    from cascadec.checkpoints import hub_id_problem  # it builds on this module's converters

    for _, value in written_models(call):
        if not is_local(value.value):
            return hub_id_problem(f"`{call.func.name}` model", value, _REWARD_MODEL_NOTE)
    return None


def to_reward(v: ast.Value, key: str) -> dict[str, Any]:
    call = _call(v, "reward", tuple(REWARD_KINDS), "math_verify()")
    kind = call.func.name
    if kind == "route":
        from cascadec.routes import to_route

        return to_route(call, to_reward)
    out: dict[str, Any] = {"kind": kind, "args": {}}
    if REWARD_KINDS[kind].parts:
        out["parts"] = [to_reward(a, key) for a in call.args]
        want = 2 if kind == "combined_if_rm" else None
        if (want and len(call.args) != want) or len(call.args) < 1:
            raise _bad("CAS200", f"`{kind}(...)` takes {want or 'one or more'} rewards", call.span,
                       help="write `combined_if_rm(instructions(), reward_model(\"rm\"))`" if want else
                       "write `weighted(math_verify(), exact(), weights = [0.7, 0.3])`")
    elif kind in _REWARD_POSITIONAL and call.args:
        out["args"][_REWARD_POSITIONAL[kind]] = _one_string(call, _REWARD_POSITIONAL[kind])
    elif call.args:
        raise _bad("CAS200", f"`{kind}(...)` takes keyword arguments only", call.args[0].span,
                   help=f"name the argument, e.g. `{kind}(answer = field(\"answer\"))`")
    named: dict[str, ast.Value] = {kw.key.name: kw.value for kw in call.kwargs
                                   if kw.key.name not in ("code_switch_penalty", "weights")}
    if kind in _REWARD_POSITIONAL and call.args:
        named[_REWARD_POSITIONAL[kind]] = call.args[0]
    problem = check_reward_args(call, named) or _model_name_problem(call)
    if problem is not None:
        raise Invalid(problem)
    for kw in call.kwargs:
        name = kw.key.name
        if name == "code_switch_penalty":
            out["code_switch_penalty"] = to_float(kw.value, name)
        elif name == "weights" and kind == "weighted":
            if not isinstance(kw.value, ast.ListV):
                raise _bad("CAS200", "`weights` takes a list of numbers", kw.value.span, help="write `weights = [0.7, 0.3]`")
            out["weights"] = [to_float(w, name) for w in kw.value.items]  # type: ignore[arg-type]
        else:
            out["args"][name] = to_plain(kw.value, name)
    if kind == "weighted" and len(out.get("weights", [])) != len(out["parts"]):
        raise _bad("CAS200", f"`weighted(...)` has {len(out['parts'])} rewards but "
                   f"{len(out.get('weights', []))} weights", call.span, help="give one weight per reward")
    out["args"].update(_local_models(call))
    return out


def _local_models(call: ast.Call) -> dict[str, str]:
    """A reward's model arguments that name a local directory, made absolute against the spec's directory (the
    base model's rule), so that a run started from any directory loads the same model."""
    return {name: _resolve(value.value, value.span) for name, value in written_models(call) if is_local(value.value)}


def to_model(v: ast.Value, key: str) -> dict[str, Any]:
    call = _call(v, "model source", ("model",), 'model("org/name")')
    out: dict[str, Any] = {}
    for kw in call.kwargs:
        if kw.key.name != "tokenizer":
            raise _bad("CAS301", f"unknown argument `{kw.key.name}` of `model(...)`", kw.key.span,
                       help="`model(...)` takes only `tokenizer = \"...\"`")
        name = to_str(kw.value, "tokenizer")
        if not name.strip():
            raise _bad("CAS200", "`tokenizer` names no tokenizer", kw.value.span, label="empty string",
                       help='write `tokenizer = "org/name"` or `tokenizer = "./dir"`, or remove it to use the '
                       "model's own tokenizer")
        out["tokenizer"] = _resolve(name, kw.value.span) if is_local(name) else name
    if len(call.args) != 1:
        raise _bad("CAS200", "`model(...)` takes one source", call.span,
                   help='write `model("org/name")`, `model("./dir")`, `model(packaged("...\"))` or `model(tiny(llama))`')
    src = call.args[0]
    if isinstance(src, ast.Str) and not src.value.strip():
        raise _bad("CAS200", "`model(...)` names no model", src.span, label="empty string",
                   help='write `model("org/name")`, `model("./dir")` or `model(packaged("smollm2-135m-instruct"))`')
    if isinstance(src, ast.Str):
        local = is_local(src.value)
        out.update(kind="path" if local else "hub", name=_resolve(src.value, src.span) if local else src.value)
        return out
    inner = _call(src, "model source", ("packaged", "tiny"), 'packaged("smollm2-135m-instruct")')
    if inner.func.name == "packaged":
        name = _one_string(inner, "a package key")
        if name not in PACKAGED_MODELS:
            raise _bad("CAS312", f"unknown packaged model `{name}`", inner.args[0].span, label="not packaged",
                       help=did_you_mean(name, PACKAGED_MODELS, "packaged models"))
        out.update(kind="packaged", name=name)
        return out
    if len(inner.args) > 1 and isinstance(inner.args[0], (ast.Ident, ast.Str)):
        raise _bad("CAS200", "`tiny(...)` takes one positional argument, the architecture family",
                   inner.args[1].span, label="a value without its key",
                   help="write the sizes as keys, e.g. `tiny(llama, hidden_size = 64)`")
    if len(inner.args) != 1 or not isinstance(inner.args[0], (ast.Ident, ast.Str)):
        raise _bad("CAS200", "`tiny(...)` takes an architecture family first", inner.span,
                   help="write `tiny(llama, hidden_size = 64)`")
    family = inner.args[0]
    out.update(kind="tiny", name=family.name if isinstance(family, ast.Ident) else family.value,
               config={kw.key.name: to_plain(kw.value, kw.key.name) for kw in inner.kwargs})
    return out


def to_chat(v: ast.Value, key: str) -> dict[str, Any]:
    from cascadec.chatspec import to_template  # chatspec builds on this module's call helpers

    return to_template(v, key)
