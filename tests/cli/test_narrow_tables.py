"""Tables adapt to narrow terminals without making names ambiguous (issue 21: at 90 columns `cascadec plan`
showed `rl_legs` and `rl_letters` both as `rl_le…`)."""

from __future__ import annotations

import io

from rich.console import Console
from rich.table import Table

from cascadec.contract.narrow import keep_names


def _table() -> Table:
    table = Table()
    for col in ("stage", "kind", "parent", "domains", "teachers", "until", "hash"):
        table.add_column(col)
    table.add_row("rl_legs", "grpo", "sft", "legs 0.5\nletters 0.5", "default=best(sft, rl_letters by legs.held)",
                  "legs.held >= 0.9", "abcdef12")
    table.add_row("rl_letters", "grpo", "rl_legs", "letters 1", "",
                  "plateau(letters.held, patience=3, min_delta=0.01)", "12345678")
    return table


def _printed(width: int, table: Table) -> str:
    console = Console(file=io.StringIO(), width=width, color_system=None)
    console.print(table)
    return console.file.getvalue()


def test_rich_alone_makes_two_names_the_same_at_narrow_widths() -> None:
    table = _table()
    for column in table.columns:
        column.no_wrap = True  # what a table of one-line rows does today
    assert "…" in _printed(60, table)


def test_names_stay_whole_and_nothing_is_cut() -> None:
    for width in (60, 70, 80, 90):
        text = _printed(width, keep_names(_table(), width, "stage", "parent"))
        assert "…" not in text
        assert all(len(line) <= width for line in text.splitlines())
        cells = [[c.strip() for c in line.split("│")[1:-1]] for line in text.splitlines() if line.startswith("│")]
        assert {"rl_legs", "rl_letters"} <= {row[0] for row in cells}, text  # each name on one line, whole
    # every character of a long cell is kept, folded over lines
    text = _printed(50, keep_names(_table(), 50, "stage"))
    until = "".join(line.split("│")[6].strip() for line in text.splitlines() if line.startswith("│"))
    assert "plateau(letters.held,patience=3,min_delta=0.01)" in until.replace(" ", "")


def test_a_terminal_too_narrow_for_the_names_folds_them_rather_than_cutting() -> None:
    text = _printed(40, keep_names(_table(), 40, "stage", "parent"))
    assert "…" not in text and all(len(line) <= 40 for line in text.splitlines())


def test_optional_columns_go_first_and_the_caption_says_so() -> None:
    table = _table()
    for extra in ("states GiB", "KV cache", "frozen"):
        table.add_column(extra)
        table.columns[-1]._cells.extend(["12.5", "3.25"])
    text = _printed(80, keep_names(table, 80, "stage", "parent", optional=("KV cache", "frozen", "hash")))
    assert "left out to fit 80 columns: KV cache, frozen, hash" in text
    assert "states" in text and "KV cache" not in text.split("left out")[0]  # the one not optional stays
    assert all(len(line) <= 80 for line in text.splitlines()) and "…" not in text
    cells = [[c.strip() for c in line.split("│")[1:-1]] for line in text.splitlines() if line.startswith("│")]
    assert {"rl_legs", "rl_letters"} <= {row[0] for row in cells}


def test_a_table_that_fits_is_left_alone() -> None:
    table = keep_names(_table(), 300, "stage", optional=("hash",))
    assert [str(c.header) for c in table.columns][-1] == "hash" and all(c.width is None for c in table.columns)
