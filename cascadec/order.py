"""Stage order: parent chains and the stable topological order (used by the checks and by lowering)."""

from __future__ import annotations

import heapq
from collections.abc import Iterable
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


def topological(stages: list[S], roots: Iterable[str] = ()) -> list[S]:
    """Stable topological order: repeatedly take the first declared stage whose dependencies are done
    (Kahn's algorithm, the ready stages in a heap by declaration index, so a long chain stays linear up to
    the log factor; a stage whose dependencies never complete is left out, as before). ``base`` and the
    ``roots`` (the named checkpoints) are done from the start."""
    deps = [st.dependencies() - {"base", *roots} for st in stages]
    waiting = [len(d) for d in deps]
    users: dict[str, list[int]] = {}
    for i, d in enumerate(deps):
        for name in d:
            users.setdefault(name, []).append(i)
    ready = [i for i, n in enumerate(waiting) if n == 0]
    heapq.heapify(ready)
    order: list[S] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(stages[i])
        for j in users.get(stages[i].name, ()):
            waiting[j] -= 1
            if waiting[j] == 0:
                heapq.heappush(ready, j)
    return order
