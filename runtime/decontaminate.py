"""Decontamination: a domain with ``decontaminate = on`` (``Domain.decontaminate``) trains without the rows
whose prompt equals an item of one of its own evals, so that its evals are held out by construction.

Two prompts are equal when their user-prompt texts are equal after whitespace normalisation: leading and
trailing whitespace stripped and every run of whitespace (Unicode, newlines included) made one space; case and
punctuation count. The user-prompt text is what the row gives before the chat template and system prompt are
applied: a text prompt as it is, a chat list's user turns joined by newlines. It is exact-match
decontamination of prompts, as in Tülu 3's and lm-eval-harness's overlap checks reduced to the whole prompt.
It is per domain: a domain's training rows against that domain's evals, never another domain's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cascadec.contract.plan import Plan
from runtime.data import DataError, Sample

if TYPE_CHECKING:
    from runtime.evals import EvalSet


def normalise(text: str) -> str:
    """``text`` stripped, with every run of whitespace one space (``str.split`` without a separator)."""
    return " ".join(text.split())


def prompt_key(sample: Sample) -> str:
    """The normalised user-prompt text of ``sample``: its chat list's user turns, else its text prompt."""
    if sample.messages:
        return normalise("\n".join(m["content"] for m in sample.messages if m["role"] == "user"))
    return normalise(sample.prompt)


@dataclass(frozen=True)
class Decontaminated:
    """What decontaminating one domain did: ``dropped`` of its ``rows`` training rows were equal to items of
    ``matched`` (``domain.eval`` names, sorted); ``checked`` are all the evals it was compared with."""

    domain: str
    rows: int
    dropped: int
    matched: tuple[str, ...]
    checked: tuple[str, ...]

    def line(self) -> str:
        """The line the stage prints, e.g. ``arith: decontaminated 312 of 2000 training rows (equal to an
        item of arith.held)``."""
        why = f"equal to an item of {' or '.join(self.matched)}" if self.dropped \
            else f"none equals an item of {' or '.join(self.checked)}"
        return f"{self.domain}: decontaminated {self.dropped} of {self.rows} training rows ({why})"

    def record(self) -> dict[str, Any]:
        """The entry kept in ``state.json`` (the stage's ``decontaminated`` object, keyed by domain)."""
        return {"rows": self.rows, "dropped": self.dropped, "evals": list(self.checked)}


def decontaminate(domain: str, rows: list[Sample],
                  evals: Mapping[str, list[Sample]]) -> tuple[list[Sample], Decontaminated]:
    """``rows`` without those whose :func:`prompt_key` equals that of an item of ``evals`` (eval name ->
    its items), in their order, and what was dropped. One hash set of the evals' keys: O(rows + items).

    Raises DataError when every row is dropped: the stage would have nothing to train on.
    """
    held: dict[str, set[str]] = {}
    for name, items in evals.items():
        for item in items:
            held.setdefault(prompt_key(item), set()).add(f"{domain}.{name}")
    kept: list[Sample] = []
    matched: set[str] = set()
    for row in rows:
        hits = held.get(prompt_key(row))
        if hits is None:
            kept.append(row)
        else:
            matched |= hits
    checked = tuple(f"{domain}.{name}" for name in evals)
    if not kept:
        raise DataError(f"every one of the {len(rows)} training rows of domain `{domain}` equals an item of its evals "
                        f"({', '.join(checked)}): its evals cover its whole training set\n"
                        "help: train on more or other data, evaluate on items generated apart from it, or remove "
                        f"`decontaminate` from domain `{domain}`")
    return kept, Decontaminated(domain, len(rows), len(rows) - len(kept), tuple(sorted(matched)), checked)


def decontaminate_domains(plan: Plan, data: Mapping[str, list[Sample]],
                          eval_sets: Iterable["EvalSet"]) -> tuple[dict[str, list[Sample]], list[Decontaminated]]:
    """The training rows of every domain of ``data`` with those of its decontaminated domains dropped against
    their evals (``eval_sets``, as ``runtime.evals.load_eval_sets`` loads them), and one report per such domain.

    Raises DataError when a domain would keep no row.
    """
    items: dict[str, dict[str, list[Sample]]] = {}
    for es in eval_sets:
        items.setdefault(es.domain, {})[es.spec.name] = es.samples
    out, reports = dict(data), []
    for name in sorted(data):
        if plan.domains[name].decontaminate and items.get(name):
            out[name], report = decontaminate(name, data[name], items[name])
            reports.append(report)
    return out, reports
