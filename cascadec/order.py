"""Stage order: parent chains and the stable topological order (used by the checks and by lowering)."""

from __future__ import annotations

from typing import TypeVar

from cascadec.contract.plan import Stage

S = TypeVar("S", bound=Stage)


def ancestors(name: str, parent_of: dict[str, str]) -> list[str]:
    """Parent chain of ``name``, nearest first, ending at ``base`` (stops at a repeat or unknown name)."""
    chain: list[str] = []
    seen: set[str] = set()
    cur = parent_of.get(name)
    while cur is not None and cur not in seen:
        chain.append(cur)
        seen.add(cur)
        cur = parent_of.get(cur)
    return chain


def topological(stages: list[S]) -> list[S]:
    """Stable topological order: repeatedly take the first declared stage whose dependencies are done."""
    pending = list(stages)
    done: set[str] = {"base"}
    order: list[S] = []
    while pending:
        ready = next(st for st in pending if st.dependencies() <= done)
        pending.remove(ready)
        done.add(ready.name)
        order.append(ready)
    return order
