"""The `tracking = [...]` key of a cascade: which experiment trackers receive each stage's metrics.

A value is one tracker name or a list of them (``[]`` turns tracking off; TensorBoard is the default).
Unknown or repeated names are CAS200 errors at their own span. The runtime side is `runtime.tracking`.
"""

from __future__ import annotations

from cascadec import ast
from cascadec.contract import plan
from cascadec.codes import make
from cascadec.diagnostics import Diagnostic
from cascadec.contract.suggest import did_you_mean

# one docs line per tracker (hover docs of the language server, docs/language.md)
TRACKER_DOCS = {
    "tensorboard": "TensorBoard event files under `RUN_DIR/tb/<stage>/` (the default)",
    "wandb": "Weights & Biases (`pip install 'cascadec[wandb]'`); `WANDB_MODE=offline` writes `RUN_DIR/wandb/`",
    "mlflow": "MLflow (`pip install 'cascadec[mlflow]'`); `MLFLOW_TRACKING_URI`, else a file store in `RUN_DIR/mlruns`",
    "trackio": "trackio (`pip install 'cascadec[trackio]'`), a local store under `TRACKIO_DIR`",
}

_WORDS = {ast.Str: "a string (tracker names are written bare)", ast.Num: "a number", ast.Call: "a call",
          ast.Pair: "a `name: value` pair", ast.Record: "a record", ast.TupleV: "a tuple"}


def to_tracking(v: ast.Value, key: str = "tracking") -> list[str] | Diagnostic:
    """``tracking = wandb`` or ``tracking = [tensorboard, wandb]`` → tracker names in written order, or a
    CAS200 diagnostic for a value that is not a name or a list of names, an unknown tracker, or a tracker
    named twice."""
    items = v.items if isinstance(v, ast.ListV) else (v,)
    names: list[str] = []
    for item in items:
        if not isinstance(item, ast.Ident):
            return make("CAS200", f"`{key}` lists tracker names, found {_WORDS.get(type(item), 'a value')}",
                        item.span, label="not a tracker name", help="write e.g. `tracking = [tensorboard, wandb]`")
        if item.name not in plan.TRACKERS:
            return make("CAS200", f"unknown tracker `{item.name}`", item.span, label="not a tracker",
                        help=did_you_mean(item.name, plan.TRACKERS, "trackers"))
        if item.name in names:
            return make("CAS200", f"tracker `{item.name}` is listed twice", item.span, label="listed again here",
                        help="list each tracker once")
        names.append(item.name)
    return names
