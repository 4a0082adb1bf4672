"""Tables that stay unambiguous in a narrow terminal (shared by the CLI's and the runtime's rich tables).

Rich fits a table to the terminal by shrinking columns and cutting what no longer fits with an ellipsis, so
at 90 columns two stages `rl_legs` and `rl_letters` both showed as `rl_le…`. :func:`keep_names` makes every
cell wrap between words, or fold inside a word, instead of being cut, so a narrow table grows taller, never
ambiguous; leaves out the columns a caller marks optional, in its order, while the table could not
otherwise show each column's longest word (and says which in the caption); and gives the columns that hold
names (stages, parents) the width of their longest name when the other columns can still have a few
characters each.
"""

from __future__ import annotations

from rich.cells import cell_len
from rich.table import Column, Table

# characters the other columns keep at least, beside the names, for the names to be kept whole
_OTHER_MIN = 4
# a word longer than this may be folded when the table is measured for leaving columns out
_WORD_CAP = 10


def _longest(column: Column) -> int:
    return max((cell_len(w) for cell in column.cells for w in str(cell).split()), default=1)


def _needed(table: Table, names: tuple[str, ...]) -> int:
    """Width at which every name is whole and every other column shows a word of up to `_WORD_CAP`."""
    inner = sum(_longest(c) if str(c.header) in names else min(_longest(c), _WORD_CAP) for c in table.columns)
    return inner + 3 * len(table.columns) + 1


def _natural(column: Column) -> int:
    return max(cell_len(line) for cell in [column.header, *column.cells] for line in str(cell).splitlines() or [""])


def _fill(naturals: list[int], budget: int) -> list[int]:
    """Widths summing to at most ``budget`` (each at least 1): every column its natural width when that fits,
    else an equal share, the share of a column that needs less going to the others (water filling)."""
    widths, left, open_ = [0] * len(naturals), budget, sorted(range(len(naturals)), key=naturals.__getitem__)
    while open_:
        share = max(1, left // len(open_))
        i = open_.pop(0)
        widths[i] = min(naturals[i], share)
        left -= widths[i]
    return widths


def keep_names(table: Table, width: int, *names: str, optional: tuple[str, ...] = ()) -> Table:
    """``table`` (rows added) laid out for a terminal ``width`` columns wide (see the module docstring):
    columns headed ``names`` are kept whole, those headed ``optional`` go first when space is short; returns
    it. A table that fits is left as rich lays it out."""
    dropped = []
    for header in optional:
        if _needed(table, names) <= width:
            break
        column = next((c for c in table.columns if str(c.header) == header), None)
        if column is not None:
            table.columns.remove(column)
            dropped.append(header)
    if dropped:
        table.caption = (f"left out to fit {width} columns: {', '.join(dropped)} (a wider terminal, or a pipe, "
                         "shows every column)")
    for column in table.columns:
        column.overflow = "fold"
    columns, frame = table.columns, 3 * len(table.columns) + 1
    naturals = [_natural(c) for c in columns]
    if sum(naturals) + frame <= width:
        return table
    named = [i for i, c in enumerate(columns) if str(c.header) in names]
    kept = {i: _longest(columns[i]) for i in named}
    others = [i for i in range(len(columns)) if i not in kept]
    budget = width - frame - sum(kept.values())
    if budget < _OTHER_MIN * len(others):
        kept, others, budget = {}, list(range(len(columns))), width - frame
    for i, w in zip(others, _fill([naturals[i] for i in others], budget)):
        columns[i].width = w
    for i, w in kept.items():
        columns[i].width = w
    return table
