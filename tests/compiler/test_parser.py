"""Grammar, parser and AST: conflict-free LALR grammar, spans, values, syntax diagnostics."""

from __future__ import annotations

import pytest

from cascadec import ast
from cascadec.parser import MAX_SYNTAX_ERRORS, build_parser, parse


def test_grammar_is_conflict_free_under_lark_strict_mode() -> None:
    # strict=True rejects shift/reduce conflicts and colliding terminals
    build_parser.cache_clear()
    try:
        assert build_parser(strict=True) is not None
    finally:
        build_parser.cache_clear()


def _stage(text: str) -> ast.Stage:
    module, diagnostics = parse('cascade "x" {\n' + text + "\n}", "t.cascade")
    assert module is not None, diagnostics
    return next(i for i in module.cascades[0].items if isinstance(i, ast.Stage))


def _value(stage: ast.Stage, key: str) -> ast.Value:
    return next(i.value for i in stage.items if isinstance(i, ast.Assign) and i.key.name == key)


def test_spans_are_one_based_with_exclusive_end() -> None:
    st = _stage("stage rl = grpo(sft) on math { steps = 12 }")
    assert (st.name.span.line, st.name.span.column, st.name.span.end_column) == (2, 7, 9)
    steps = _value(st, "steps")
    assert isinstance(steps, ast.Num)
    assert (steps.span.column, steps.span.end_column) == (40, 42)
    assert steps.span.path == "t.cascade"


def test_schedules_parse_with_kind_and_inline_warmup() -> None:
    st = _stage("stage s = sft(base) { lr = 5e-5 -> 5e-6 cosine warmup 200 from 1e-7  warmup = 3 }")
    lr = _value(st, "lr")
    assert isinstance(lr, ast.Schedule)
    assert (lr.peak.value, lr.end.value, lr.kind.name) == (5e-5, 5e-6, "cosine")  # type: ignore[union-attr]
    assert lr.warmup.value == 200 and lr.warmup_from.value == 1e-7  # type: ignore[union-attr]
    # `warmup = 3` right after is a separate key, not part of the schedule
    assert isinstance(_value(st, "warmup"), ast.Num)


def test_quantities_metrics_tuples_and_weighted_lists() -> None:
    st = _stage("stage s = grpo(a) on [m: 0.5, c: 1] { max_response = 48Ki  is_band = (0.5, 2.0) }")
    q = _value(st, "max_response")
    assert isinstance(q, ast.Num) and (q.value, q.unit) == (48.0, "Ki")
    assert isinstance(_value(st, "is_band"), ast.TupleV)
    assert isinstance(st.on, ast.ListV) and all(isinstance(p, ast.Pair) for p in st.on.items)


def test_until_conditions() -> None:
    st = _stage("stage d = distill(a) { until m.g >= 0.9 * teacher(m).g or plateau(m.g, patience = 2) or steps >= 5 }")
    until = next(i for i in st.items if isinstance(i, ast.Until))
    kinds = [type(c).__name__ for c in until.conds]
    assert kinds == ["Threshold", "Plateau", "StepsCond"]
    first = until.conds[0]
    assert isinstance(first, ast.Threshold) and first.teacher is not None and first.value.value == 0.9  # type: ignore[union-attr]


def test_comments_are_ignored() -> None:
    module, diagnostics = parse('# top\ncascade "x" { # inline\n seed = 1 # after\n}\n')
    assert module is not None and not diagnostics


def test_syntax_error_points_at_the_token_with_an_expected_hint() -> None:
    module, diagnostics = parse('cascade "x" {\n  seed 1\n}\n', "f.cascade")
    assert module is None
    (d,) = diagnostics
    assert d.code == "CAS100" and d.message == "unexpected `1`"
    assert d.span is not None and (d.span.line, d.span.column, d.span.end_column) == (2, 8, 9)
    assert d.help == "expected `=`"


def test_unexpected_character_and_end_of_file() -> None:
    _, (bad,) = parse('cascade "x" { seed = 1; }')
    assert bad.code == "CAS101" and bad.span is not None and bad.span.column == 23
    _, (eof,) = parse('cascade "x" { seed = 1')
    assert eof.code == "CAS102" and eof.span is not None and eof.span.end <= len('cascade "x" { seed = 1')


def test_invalid_string_escape() -> None:
    _, (d,) = parse('cascade "x" { base = model("a\\qb") }')
    assert d.code == "CAS103"


def test_a_lone_surrogate_escape_is_cas103_at_its_string_and_a_pair_is_one_character() -> None:
    # a lone surrogate cannot be written as UTF-8: `compile` crashed writing the plan, others carried it along
    for text, column in (('cascade "\\ud800" { }', 9), ('cascade "x" { system = "hi \\udc00 there" }', 24),
                         ('cascade "x" { d = inline([{prompt = "1+\\ud83d"}]) }', 37)):
        _, (d,) = parse(text, "t.cascade")
        assert d.code == "CAS103" and d.span is not None and d.span.column == column, (text, d)
        assert "half of a surrogate pair" in d.message and d.help
    module, diagnostics = parse('cascade "\\ud83d\\ude00" { }', "t.cascade")
    assert module is not None and not diagnostics and module.cascades[0].name.value == "\U0001f600"


def test_empty_file_parses_to_an_empty_module() -> None:
    module, diagnostics = parse("", "empty.cascade")
    assert module is not None and not diagnostics and not module.cascades


def test_end_of_file_names_the_bracket_left_open() -> None:
    _, (d,) = parse('cascade "x" {\n  stage s = sft(base) { steps = 1\n', "f.cascade")
    assert d.code == "CAS102"
    (opened,) = [label for label in d.labels if not label.primary]
    assert (opened.span.line, opened.span.column) == (2, 23) and "never closed" in opened.text


def test_pathologically_deep_nesting_is_a_diagnostic_not_a_recursion_error() -> None:
    module, (d,) = parse('cascade "x" { seed = ' + "[" * 5000 + "]" * 5000 + " }")
    assert module is None and d.code == "CAS105"


def test_brackets_in_strings_and_comments_do_not_nest_and_the_level_past_the_limit_is_located() -> None:
    quoted = '"' + "[(" * 40 + '"'
    module, diagnostics = parse('cascade "x" {\n  #\n  seed = [' + quoted + ']  # ' + "{" * 80 + "\n}")
    assert module is not None and diagnostics == []
    text = 'cascade "x" {\n  seed = ' + "[" * 70 + "]" * 70 + "\n}"
    module, (d,) = parse(text, "t.cascade")
    # the cascade block's `{` is level 1: the 64th `[` is level 65
    assert module is None and d.code == "CAS105" and (d.span.line, d.span.column) == (2, 10 + 63)
    assert text[d.span.start] == "[" and d.labels[0].text == "level 65"


def _errors(text: str) -> list[tuple[int, int, str]]:
    module, diagnostics = parse(text, "x.cascade")
    assert module is None
    return [(d.span.line, d.span.column, d.message) for d in diagnostics if d.span is not None]


def test_several_syntax_errors_are_reported_in_order() -> None:
    text = ('cascade "x" {\n'
            '  domain d { train = gym("a" size = 2)  reward = gym() }\n'
            '  stage s grpo(base) { steps = 2 }\n'
            '  seed = $\n'
            '  stage t = grpo(base) { steps 2 }\n'
            '}\n')
    found = _errors(text)
    assert [(line, col) for line, col, _ in found] == [(2, 30), (3, 11), (4, 10), (5, 32)]
    assert found[0][2] == "missing `,` before `size`" and found[2][2] == "unexpected character `$`"


def test_recovery_stops_at_unbalanced_brackets() -> None:
    text = 'cascade "x" {\n  stage s = grpo(base) { steps = 2\n  stage t = grpo(base) { steps 2 }\n}\n'
    (only,) = _errors(text)
    assert only[:2] == (3, 3) and "not closed" in only[2]


def test_recovery_reports_at_most_the_limit() -> None:
    body = "".join(f"  stage s{i} grpo(base) {{ steps = 1 }}\n" for i in range(3 * MAX_SYNTAX_ERRORS))
    assert len(_errors('cascade "x" {\n' + body + "}\n")) == MAX_SYNTAX_ERRORS


def test_missing_value_before_a_keyword() -> None:
    (only,) = _errors('cascade "x" {\n  base =\n  stage s = grpo(base) { steps = 2 }\n}\n')
    assert only == (2, 8, "missing value after `=`")


def test_the_reserved_words_docs_list_are_the_grammars_keywords() -> None:
    from pathlib import Path

    from cascadec.parser import reserved_words

    text = (Path(__file__).parents[2] / "docs" / "language.md").read_text(encoding="utf-8")
    listed = text.split("Reserved words: `", 1)[1].split("`", 1)[0].split()
    assert sorted(listed) == sorted(reserved_words())


@pytest.mark.parametrize(("char", "name", "fix"), [
    ("\uff1d", "U+FF1D FULLWIDTH EQUALS SIGN", "write `=`"),
    ("\u201c", "U+201C LEFT DOUBLE QUOTATION MARK", 'write `"`'),
    ("\u2013", "U+2013 EN DASH", "write `-`"),
    ("\u00a0", "U+00A0 NO-BREAK SPACE", "write a space (U+0020)"),
    ("\u3000", "U+3000 IDEOGRAPHIC SPACE", "write a space (U+0020)"),
    ("\u2265", "U+2265 GREATER-THAN OR EQUAL TO", "write `>=`"),
    ("\u202e", "U+202E RIGHT-TO-LEFT OVERRIDE", "delete it"),
    ("\u200b", "U+200B ZERO WIDTH SPACE", "delete it"),
    ("\uff1b", "U+FF1B FULLWIDTH SEMICOLON", "the language has no `;` either"),
    ("\u00e9", "U+00E9 LATIN SMALL LETTER E WITH ACUTE", "names, keys and numbers are ASCII"),
])
def test_a_non_ascii_character_outside_strings_is_named_with_its_ascii_look_alike(char: str, name: str,
                                                                                   fix: str) -> None:
    text = f'cascade "x" {{\n  seed {char}= 1\n}}\n'
    module, (d, *_) = parse(text, "t.cascade")
    assert module is None and d.code == "CAS101" and (d.span.line, d.span.column) == (2, 8)
    assert name in d.help and fix in d.help, d.help
    if not char.isprintable() or char.isspace():
        assert char not in d.message + d.help and f"U+{ord(char):04X}" in d.message


def test_a_parse_turns_the_cycle_collector_off_only_while_it_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    import gc

    from cascadec import parser

    seen: list[bool] = []
    real = parser.ToAst.transform
    monkeypatch.setattr(parser.ToAst, "transform", lambda self, tree: seen.append(gc.isenabled()) or real(self, tree))
    assert gc.isenabled()
    for text in ('cascade "x" { seed = 1 }', 'cascade "x" { seed = $ }'):
        parse(text)
        assert gc.isenabled()
    assert seen == [False]
    gc.disable()
    try:
        parse('cascade "x" { seed = 1 }')
        assert not gc.isenabled()  # a caller's choice is kept
    finally:
        gc.enable()
