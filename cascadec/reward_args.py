"""The arguments each reward kind accepts, checked at compile time (CAS200/CAS202/CAS203/CAS301).

Each kind's arguments are its entry in the registry (`cascadec.contract.kinds.REWARD_KINDS`), which mirrors
the keyword parameters of the reward classes in `runtime/rewards/` (docs/rewards.md);
`tests/compiler/test_reward_args.py` compares them with their signatures so the two cannot drift apart.
The compiler does not import the runtime: a plain `cascadec lint` must stay fast and torch-free.
"""

from __future__ import annotations

from cascadec import ast
from cascadec.codes import make
from cascadec.diagnostics import Diagnostic
from cascadec.contract.kinds import REWARD_KINDS, Arg
from cascadec.contract.suggest import did_you_mean, listed, suggest
from cascadec.units import UNITS, unit_missing


_EXAMPLE = {"str": '"..."', "int": "8", "bool": "on", "time": "6s", "memory": "1GiB"}


def check_reward_args(call: ast.Call, named: dict[str, ast.Value]) -> Diagnostic | None:
    """The first problem with the arguments of reward ``call``, or None.

    ``named`` maps each argument name to its value, positional ones already named (`py("m:f")` → ``fn``).
    Composite kinds (`weighted`, `combined_if_rm`) are checked part by part by the caller.
    """
    kind = call.func.name
    entry = REWARD_KINDS.get(kind)
    if entry is None or entry.parts:
        return None
    table = entry.args
    keys = {kw.key.name: kw.key for kw in call.kwargs}
    for name, value in named.items():
        arg = table.get(name)
        if arg is None:
            if entry.open_args:
                continue
            return _unknown(kind, name, keys.get(name), value, table)
        problem = _check_value(kind, name, arg, value)
        if problem is not None:
            return problem
    for name, arg in table.items():
        if arg.required and name not in named:
            example = f'{kind}("...")' if arg.positional else f"{kind}({name} = ...)"
            return make("CAS203", f"reward `{kind}` needs argument `{name}`", call.func.span,
                        label=f"`{name}` is not set", help=f"write `{example}`; see docs/rewards.md")
    fn = named.get("fn")
    if kind == "py" and isinstance(fn, ast.Str) and ":" not in fn.value:
        return make("CAS200", f"`py(...)` names a function as `package.module:function`, found `{fn.value}`",
                    fn.span, label="no `:` before the function name", help='write e.g. `py("my_rewards:score")`')
    return None


def _unknown(kind: str, name: str, key: ast.Ident | None, value: ast.Value, table: dict[str, Arg]) -> Diagnostic:
    # the help line lists every argument unless it names a close match; then a note lists them
    notes = (f"`{kind}` takes " + ", ".join(f"`{n}`" for n in table),) if suggest(name, table) else ()
    return make("CAS301", f"reward `{kind}` has no argument `{name}`", key.span if key else value.span,
                label="unknown argument", notes=notes, help=did_you_mean(name, tuple(table), "arguments"))


def _check_value(kind: str, name: str, arg: Arg, value: ast.Value) -> Diagnostic | None:
    where = f"argument `{name}` of reward `{kind}`"
    if arg.kind == "any":
        return None
    if arg.kind in ("str", "enum") and isinstance(value, ast.Str):
        if arg.kind == "str" or value.value in arg.choices:
            return None
    if arg.kind == "enum" and isinstance(value, ast.Ident) and value.name in arg.choices:
        return None
    if arg.kind == "bool" and isinstance(value, ast.Ident) and value.name in ("on", "off", "true", "false"):
        return None
    if arg.kind in ("int", "time", "memory") and isinstance(value, ast.Num):
        dims = {"int": ("count",), "time": ("time",), "memory": ("memory",)}[arg.kind]
        dim = UNITS[value.unit][0] if value.unit in UNITS else None
        if value.unit is not None and dim not in dims:
            return make("CAS202", f"{where} takes {_words(arg)}, found a {dim or 'unknown'} quantity `{value.text}`",
                        value.span, label="wrong unit", help=f"write e.g. `{name} = {_EXAMPLE[arg.kind]}`")
        if unit_missing(dims[0], value.unit):
            return make("CAS202", f"{where} takes {_words(arg)} with its unit, found the plain number `{value.text}`",
                        value.span, label="no unit", help=f"write e.g. `{name} = {_EXAMPLE[arg.kind]}`")
        if arg.kind == "int" and not (value.is_int or value.unit is not None):
            return make("CAS200", f"{where} takes an integer, found `{value.text}`", value.span,
                        label="not an integer", help=f"write e.g. `{name} = {_EXAMPLE[arg.kind]}`")
        if value.value <= 0:
            return make("CAS201", f"{where} must be positive, found `{value.text}`", value.span,
                        label="this value", help=f"write e.g. `{name} = {_EXAMPLE[arg.kind]}`")
        return None
    if arg.kind == "enum":
        shown = value.name if isinstance(value, ast.Ident) else value.value if isinstance(value, ast.Str) else None
        return make("CAS200", f"{where} cannot be " + (f"`{shown}`" if shown is not None else "this value"),
                    value.span, label="not a valid choice",
                    help=did_you_mean(shown, arg.choices, "values") if shown else
                    "valid values: " + listed(arg.choices))
    return make("CAS200", f"{where} takes {_words(arg)}", value.span, label="wrong type",
                help=f"write e.g. `{name} = {_EXAMPLE[arg.kind]}`")


def _words(arg: Arg) -> str:
    return {"str": "a string", "int": "an integer", "bool": "`on` or `off`", "time": "a time such as `6s`",
            "memory": "a memory size"}[arg.kind]
