"""The stage graph: parent cycles (CAS304) and teacher availability (CAS305, CAS310, CAS315)."""

from __future__ import annotations

from typing import Iterator

from cascadec import ast
from cascadec.checks.context import CheckContext
from cascadec.codes import make
from cascadec.routes import teacher_routes
from cascadec.contract.kinds import STAGE_KINDS
from cascadec.diagnostics import Diagnostic
from cascadec.order import ancestors


def parents(view: ast.SpecView) -> dict[str, str]:
    """Stage name → parent name (first declaration wins; duplicates are CAS303)."""
    out: dict[str, str] = {}
    for st in view.stages:
        if st.name.name != "base":  # a stage named `base` is CAS303; `base` stays the root here
            out.setdefault(st.name.name, st.parent.name)
    return out


class Ancestry:
    """O(1) "is A an ancestor of S" for the stage tree (entry and exit times of one depth-first walk from the
    roots), so that teacher checks stay linear on long chains. Stages on a parent cycle (CAS304) are not
    reached from a root; for them the answer comes from walking the parent chain."""

    def __init__(self, parent_of: dict[str, str]) -> None:
        self.parent_of = parent_of
        children: dict[str, list[str]] = {}
        for child, parent in parent_of.items():
            children.setdefault(parent, []).append(child)
        self._enter: dict[str, int] = {}
        self._leave: dict[str, int] = {}
        clock = 0
        for root in [p for p in children if p not in parent_of]:
            stack = [(root, iter(children.get(root, ())))]
            self._enter[root] = clock
            while stack:
                node, todo = stack[-1]
                nxt = next(todo, None)
                clock += 1
                if nxt is None:
                    self._leave[node] = clock
                    stack.pop()
                elif nxt not in self._enter:
                    self._enter[nxt] = clock
                    stack.append((nxt, iter(children.get(nxt, ()))))

    def is_ancestor(self, a: str | None, s: str) -> bool:
        """True when `a` is a proper ancestor of stage `s`."""
        if a is None:
            return False
        if s not in self._enter:
            return a in ancestors(s, self.parent_of)
        return a in self._enter and self._enter[a] < self._enter[s] and self._leave[s] <= self._leave[a]


def parent_cycles(parent_of: dict[str, str], order: list[str]) -> list[list[str]]:
    """Every cycle of the parent relation, each starting at its member declared first, in declaration order.

    Linear in the number of stages: each stage is walked once (a walk stops at the first stage an earlier
    walk has finished).
    """
    rank = {name: i for i, name in reversed(list(enumerate(order)))}
    done: set[str] = set()
    cycles = []
    for start in order:
        path: list[str] = []
        where: dict[str, int] = {}
        cur: str | None = start
        while cur is not None and cur in parent_of and cur not in done and cur not in where:
            where[cur] = len(path)
            path.append(cur)
            cur = parent_of[cur]
        if cur is not None and cur in where:
            ring = path[where[cur]:]
            first = min(range(len(ring)), key=lambda i: rank[ring[i]])
            cycles.append(ring[first:] + ring[:first])
        done.update(path)
    return sorted(cycles, key=lambda ring: rank[ring[0]])


def check_cycles(module: ast.Module, ctx: CheckContext) -> Iterator[Diagnostic]:
    parent_of = parents(ctx.view)
    decl = {st.name.name: st for st in reversed(ctx.view.stages)}
    for path in parent_cycles(parent_of, [st.name.name for st in ctx.view.stages]):
        name, st = path[0], decl[path[0]]
        ring = " -> ".join(path + [name])
        others = tuple((decl[p].parent.span, f"`{p}` starts from `{parent_of[p]}`") for p in path[1:])
        yield make("CAS304", f"stages form a cycle: {ring}", st.parent.span,
                   label=f"`{name}` starts from `{st.parent.name}`", secondary=others,
                   help="every chain of parents must end at `base`; start one of these stages from an earlier one")


def check_teachers(module: ast.Module, ctx: CheckContext) -> Iterator[Diagnostic]:
    view = ctx.view
    parent_of = parents(view)
    tree = Ancestry(parent_of)
    index = ctx.stage_index()
    for i, st in enumerate(view.stages):
        kind = STAGE_KINDS.get(st.kind.name)
        if kind is None or not kind.teachers:
            continue
        blocks = [item for item in st.items if isinstance(item, ast.Teachers)]
        by, assigns = teacher_routes(blocks[0]) if blocks else (None, [])
        if not assigns:
            yield make("CAS310", f"{kind.name} stage `{st.name.name}` has no teachers", st.name.span,
                       label="no `teachers { ... }`",
                       help="add `teachers { default = STAGE }` naming an earlier checkpoint")
            continue
        routes = {a.key.name for a in assigns}
        yield from _unrouted(st, routes if by is None else set())
        trained = set(domains_of(st, view))
        # routed by a field, rows are checked against the data (CAS323), not against domain names
        uncovered = sorted(trained - routes) if "default" not in routes and by is None else []
        if uncovered:
            listed = ", ".join(f"`{d}`" for d in uncovered)
            yield make("CAS317", f"distill stage `{st.name.name}` trains on {listed} but routes no teacher there",
                       blocks[0].span, label="no route for " + listed + " and no `default`",
                       help=f"add `{uncovered[0]} = STAGE` or `default = STAGE` to the `teachers` block, or drop "
                       "the domain from the stage's `on` list")
        for a in assigns:
            refs = [a.value] if isinstance(a.value, ast.Ident) else \
                [c for c in a.value.args if isinstance(c, ast.Ident)] if isinstance(a.value, ast.Call) else []
            taken = {ref.name for ref in refs}
            for ref in refs:
                yield from _available(ref, st, i, tree, index, view, taken)
            if by is None and a.key.name != "default" and st.on is not None and a.key.name not in trained:
                yield make("CAS315", f"teacher route for `{a.key.name}`, which `{st.name.name}` does not train on",
                           a.key.span, label="no prompt of this domain reaches the teacher",
                           help=f"add `{a.key.name}` to the stage's `on` list or remove the route")


def domains_of(st: ast.Stage, view: ast.SpecView) -> list[str]:
    """The domains a stage trains on: its `on` list, or every domain without one."""
    if st.on is None:
        return [d.name.name for d in view.domains]
    if isinstance(st.on, ast.Ident):
        return [st.on.name]
    return [(i.key.name if isinstance(i, ast.Pair) else i.name) for i in st.on.items
            if isinstance(i, (ast.Pair, ast.Ident))]


def _available(ref: ast.Ident, st: ast.Stage, i: int, tree: Ancestry, index: dict[str, int],
               view: ast.SpecView, taken: set[str]) -> Iterator[Diagnostic]:
    """A teacher is ``base``, a named checkpoint, an ancestor, or a finished branch: declared before the
    student, not its ancestor, and started from one of its ancestors (so it shares the student's tokenizer
    and history). Unknown names are CAS300 (`checks.names`). ``taken``: the names the route already holds."""
    name, student, parent_of = ref.name, st.name.name, tree.parent_of
    if name == "base" or name not in index or tree.is_ancestor(name, student):  # or a named checkpoint
        return
    if name == st.name.name:
        other = _instead_of_self(i, tree, view, taken)
        yield make("CAS305", f"stage `{name}` cannot be its own teacher", ref.span, label="the student itself",
                   help=f"name an earlier checkpoint instead, e.g. `{other}`" if other else
                   f"name a checkpoint other than the student and its start `{st.parent.name}` (e.g. one "
                   "declared in `checkpoints = { ... }`), or drop the stage")
        return
    t = view.stages[index[name]]
    if tree.is_ancestor(student, name):
        reason, note = f"is trained from the student `{student}`", "descends from the student"
    elif index[name] > i:
        reason, note = "is declared after the student", "declared after the student"
    elif not tree.is_ancestor(parent_of.get(name), student):
        reason, note = "is not an ancestor or a branch off the student's parent chain", "starts from " \
            f"`{parent_of.get(name)}`"
    else:
        return
    yield make("CAS305", f"teacher `{name}` {reason}", ref.span, label="not available when this stage starts",
               secondary=((t.name.span, f"`{name}` {note}"),),
               notes=(f"ancestors of `{student}`: " + _listing(ancestors(student, parent_of)),),
               help="use an ancestor, or a stage declared earlier that starts from one of the ancestors")


def _instead_of_self(i: int, tree: Ancestry, view: ast.SpecView, taken: set[str]) -> str | None:
    """A teacher to write where stage ``i`` names itself: the nearest earlier stage it may learn from (an
    ancestor or a branch off its parent chain), else `base`. Never its parent (a distill stage taught only by
    its own start is CAS420) nor a name the route already holds (a repeated `best(...)` candidate is CAS303)."""
    student = view.stages[i].name.name
    parent = tree.parent_of.get(student)
    for st in reversed(view.stages[:i]):
        name = st.name.name
        if name not in taken and name != parent and (tree.is_ancestor(name, student)
                                                     or tree.is_ancestor(tree.parent_of.get(name), student)):
            return name
    return None if "base" in taken or parent == "base" else "base"


def _listing(chain: list[str], shown: int = 12) -> str:
    """The nearest `shown` names of a parent chain (a 10,000-stage chain is not printed whole)."""
    more = f", ... ({len(chain) - shown} more)" if len(chain) > shown else ""
    return ", ".join(f"`{c}`" for c in chain[:shown]) + more


def _unrouted(st: ast.Stage, routes: set[str]) -> Iterator[Diagnostic]:
    if "default" in routes:
        return
    for until in (i for i in st.items if isinstance(i, ast.Until)):
        for cond in until.conds:
            t = cond.teacher if isinstance(cond, ast.Threshold) else None
            if t is not None and t.domain.name not in routes:
                yield make("CAS316", f"`teacher({t.domain.name})` but `{st.name.name}` routes no teacher for "
                           f"`{t.domain.name}`", t.domain.span, label="no teacher for this domain",
                           help=f"add `{t.domain.name} = STAGE` or `default = STAGE` to the `teachers` block")
