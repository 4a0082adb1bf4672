"""Tables that stay unambiguous in a narrow terminal (shared by the CLI's and the runtime's rich tables).

Rich fits a table to the terminal by shrinking columns and cutting what no longer fits with an ellipsis, so
at 90 columns two stages `rl_legs` and `rl_letters` both showed as `rl_le…`. :func:`keep_names` makes every
cell wrap between words, or fold inside a word, instead of being cut, so a narrow table grows taller, never
ambiguous; and the columns that hold names (stages, parents) keep the width of their longest name when the
other columns can still have a few characters each.
"""

from __future__ import annotations

from rich.cells import cell_len
from rich.table import Table

# characters the other columns keep at least, beside the names, for the names to be kept whole
_OTHER_MIN = 4


def keep_names(table: Table, width: int, *names: str) -> Table:
    """``table`` (rows added) laid out for a terminal ``width`` columns wide: every column folds instead of
    truncating, and the columns headed ``names`` are as wide as their longest word when that fits; returns it."""
    named = [c for c in table.columns if str(c.header) in names]
    longest = {id(c): max((cell_len(w) for cell in c.cells for w in str(cell).split()), default=1) for c in named}
    others = len(table.columns) - len(named)
    fits = sum(longest.values()) + others * _OTHER_MIN + 3 * len(table.columns) + 1 <= width
    for column in table.columns:
        column.overflow = "fold"
        if fits and id(column) in longest:
            column.min_width = longest[id(column)]
    return table
