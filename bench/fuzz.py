"""Compiler fuzzer: mutated and generated specs through `lint` and `compile`; no traceback, ever.

    python bench/fuzz.py [--count 10000] [--seed 0] [--out bench/results/fuzz.md]

Inputs (deterministic for a seed), from every shipped spec (`specs/`, `examples/`, `tests/golden/`):

- token-level mutations of a shipped spec (tokens from Lark's lexer, so comments and strings stay whole):
  delete, duplicate, swap neighbours, replace by a token of another spec, insert one, change a number to an
  edge value (0, -1, 2^53 + 1, 2^63 - 1, 2^63, 1e999, 4,301 digits), change a string (empty, 1 MB, escapes,
  unterminated, unicode), truncate, nest brackets deeply;
- grammar-level: specs generated from the language's shape (domains, stages of every kind with random
  parents, keys, values, teachers, `until` rules), and crossovers that splice items of two specs.

Each input is linted (`compile_source`, every diagnostic rendered in all formats) and, when clean, compiled
(`render_files`, the launch files). Counted: tracebacks (an exception escaping, or CAS999, an internal
error), diagnostics whose primary span is missing or not inside the file it names, and the slowest input.
Writes the figures to `--out` (atomically). Exit status 1 when a traceback or a bad span was found.
"""

from __future__ import annotations

import argparse
import platform
import random
import sys
import time
import traceback
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cascadec.compiler import compile_source  # noqa: E402
from cascadec.contract.fsutil import atomic_write_text  # noqa: E402
from cascadec.parser import build_parser  # noqa: E402
from cascadec.render import render_files  # noqa: E402
from cascadec.report_diagnostics import RENDERERS  # noqa: E402

EDGE_NUMBERS = ["0", "-1", "1", str(2**53 + 1), str(2**63 - 1), str(2**63), "1e999", "-1e999", "1" * 4301,
                "0.0", "1e-400", "49k", "1GiB", "6s", "9Ki", "3.5", "1_000"]
EDGE_STRINGS = ['""', '"' + "x" * (1 << 20) + '"', '"\\u0000"', '"\\q"', '"', '"日本語"', '"a\\"b"',
                '"../../etc/passwd"', '"%s{{}}$(x)"']
KINDS = ["sft", "grpo", "distill", "dpo", "ppo"]
KEYS = ["steps", "lr", "prompts_per_step", "rollouts_per_prompt", "temperature", "top_p", "kl", "max_response",
        "batch_size", "max_seq", "micro_batch", "warmup", "dynamic_filter", "overlong", "seed", "eval_every",
        "loss", "betas", "entropy", "is_band", "unknown_key"]


def seeds() -> dict[str, str]:
    """Every shipped spec that is UTF-8 text (a golden case is not, on purpose): path -> text."""
    files = sorted([*ROOT.glob("specs/**/*.cascade"), *ROOT.glob("examples/**/*.cascade"),
                    *ROOT.glob("tests/golden/**/*.cascade")])
    out = {}
    for p in files:
        try:
            out[str(p)] = p.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
    return out


def tokens(text: str) -> list[tuple[int, int, str]]:
    """(start, end, type) of each token of `text` (lexing stops at the first character no token matches)."""
    out = []
    try:
        for tok in build_parser().lex(text):
            out.append((tok.start_pos, tok.end_pos, tok.type))
    except Exception:  # noqa: BLE001 - a partly lexable text keeps the tokens before the error
        pass
    return out


def _random_value(rng: random.Random, depth: int = 0) -> str:
    pick = rng.randrange(9 if depth < 3 else 4)
    if pick == 0:
        return rng.choice(EDGE_NUMBERS[:-7]) if rng.random() < 0.3 else rng.choice(["8", "3e-6", "0.9", "49k", "2"])
    if pick == 1:
        return rng.choice(['"x"', '"data/a.jsonl"', '""'])
    if pick == 2:
        return rng.choice(["on", "off", "cosine", "token_mean", "penalty", "filter", "math", "base"])
    if pick == 3:
        return rng.choice(["avg@4", "pass@1", "(0.9, 0.95)", "5e-5 -> 5e-6 cosine warmup 200"])
    inner = ", ".join(_random_value(rng, depth + 1) for _ in range(rng.randrange(4)))
    if pick == 4:
        return f"[{inner}]"
    if pick == 5:
        return f"({inner})"
    if pick == 6:
        return f"{rng.choice(['gym', 'jsonl', 'inline', 'field', 'model', 'tiny', 'exact', 'unit_tests'])}({inner})"
    if pick == 7:
        return "{" + "  ".join(f"{rng.choice(KEYS)} = {_random_value(rng, depth + 1)}"
                               for _ in range(rng.randrange(3))) + "}"
    return f"[a: 0.5, b: {_random_value(rng, depth + 1)}]"


def generated(rng: random.Random) -> str:
    """A spec of the language's shape with random names, keys and values (often wrong on purpose)."""
    domains = [f"d{i}" for i in range(rng.randrange(0, 4))]
    lines = [f'cascade "gen{rng.randrange(1000)}" {{', f"  seed = {rng.choice(EDGE_NUMBERS[:6])}",
             '  base = model(tiny(llama, hidden_size = 32, intermediate_size = 64, num_hidden_layers = 1, '
             'num_attention_heads = 2, num_key_value_heads = 1))']
    for d in domains:
        lines.append(f'  domain {d} {{ train = inline([{{prompt = "a", answer = "b"}}]) '
                     f'reward = exact(answer = field("answer"))'
                     + (f'  eval e = inline([{{prompt = "q", answer = "a"}}]) {{ metric = pass@1 }}'
                        if rng.random() < 0.5 else "") + " }")
    stages: list[str] = []
    for i in range(rng.randrange(1, 12)):
        name = f"s{i}"
        parent = rng.choice(stages + ["base", "nope"] + ([f"s{i + 1}"] if rng.random() < 0.1 else []))
        kind = rng.choice(KINDS)
        on = f" on {rng.choice(domains)}" if domains and rng.random() < 0.8 else ""
        body = [f"{rng.choice(KEYS)} = {_random_value(rng)}" for _ in range(rng.randrange(5))]
        body.append("steps = 2  lr = 1e-3")
        if kind == "distill":
            body.append(f"teachers {{ default = {rng.choice(stages + ['base', 'nope'])} }}")
        if rng.random() < 0.2 and domains:
            body.append(f"until {domains[0]}.e >= 0.5 or steps >= 4")
        lines.append(f"  stage {name} = {kind}({parent}){on} {{ {'  '.join(body)} }}")
        stages.append(name)
    return "\n".join(lines) + "\n}\n"


def mutated(rng: random.Random, text: str, pool: list[str]) -> str:
    """One token-level mutation of `text` (`pool`: token texts of every seed spec)."""
    toks = tokens(text)
    if not toks:
        return text[: rng.randrange(len(text) + 1)]
    start, end, kind = toks[rng.randrange(len(toks))]
    op = rng.randrange(10)
    if op == 0:
        return text[:start] + text[end:]
    if op == 1:
        return text[:end] + " " + text[start:end] + text[end:]
    if op == 2:
        return text[:start] + rng.choice(pool) + text[end:]
    if op == 3:
        return text[:start] + rng.choice(pool) + " " + text[start:]
    if op == 4:
        numbers = [t for t in toks if t[2] == "NUM"] or [(start, end, kind)]
        s, e, _ = rng.choice(numbers)
        return text[:s] + rng.choice(EDGE_NUMBERS) + text[e:]
    if op == 5:
        strings = [t for t in toks if t[2] == "STRING"] or [(start, end, kind)]
        s, e, _ = rng.choice(strings)
        return text[:s] + rng.choice(EDGE_STRINGS) + text[e:]
    if op == 6:
        return text[: rng.randrange(len(text) + 1)]
    if op == 7:
        depth = rng.choice([10, 70, 2000])
        return text[:start] + "[" * depth + "1" + "]" * depth + text[end:]
    if op == 8 and len(toks) > 1:
        i = rng.randrange(len(toks) - 1)
        (s1, e1, _), (s2, e2, _) = toks[i], toks[i + 1]
        return text[:s1] + text[s2:e2] + text[e1:s2] + text[s1:e1] + text[e2:]
    return text[:start] + chr(rng.choice([0, 7, 0x202E, 0xFEFF, 0x1F600, 39, 96, 92])) + text[start:]


def crossover(rng: random.Random, a: str, b: str) -> str:
    """The first lines of `a` and the last lines of `b` (items of two specs spliced together)."""
    la, lb = a.splitlines(keepends=True), b.splitlines(keepends=True)
    return "".join(la[: rng.randrange(len(la) + 1)] + lb[rng.randrange(len(lb) + 1):])


def inputs(count: int, seed: int) -> list[tuple[str, str, str]]:
    """(kind, path, text) of `count` inputs; the path is a shipped spec's, so imports resolve beside it."""
    rng = random.Random(seed)
    corpus = seeds()
    paths = list(corpus)
    pool = sorted({corpus[p][s:e] for p in paths for s, e, _ in tokens(corpus[p])})
    out = [("seed", p, corpus[p]) for p in paths]
    while len(out) < count:
        path = rng.choice(paths)
        roll = rng.random()
        if roll < 0.6:
            text = corpus[path]
            for _ in range(rng.choice([1, 1, 1, 2, 3, 8])):
                text = mutated(rng, text, pool)
            out.append(("token", path, text))
        elif roll < 0.85:
            out.append(("generated", path, generated(rng)))
        else:
            out.append(("crossover", path, crossover(rng, corpus[path], corpus[rng.choice(paths)])))
    return out


def bad_span(diag, sources: dict[str, str]) -> str | None:
    """Why the primary span of `diag` is not inside the file it names, or None."""
    span = diag.span
    if span is None:
        return "no span"
    if span.path not in sources:
        return f"span in `{span.path}`, not a file of this compilation"
    lines = sources[span.path].split("\n")
    if not (1 <= span.line <= len(lines) and 1 <= span.end_line <= len(lines)):
        return f"line {span.line}-{span.end_line} of a {len(lines)}-line file"
    if not (1 <= span.column <= len(lines[span.line - 1]) + 1):
        return f"column {span.column} of a {len(lines[span.line - 1])}-character line"
    if (span.end_line, span.end_column) < (span.line, span.column):
        return "end before start"
    return None


def check(path: str, text: str) -> tuple[list[str], list[str], bool]:
    """(tracebacks, bad spans, clean) of one input through lint and compile."""
    tracebacks, spans = [], []
    try:
        result = compile_source(text, path)
        for diag in result.diagnostics:
            if diag.code == "CAS999":
                tracebacks.append(f"{diag.message} ({'; '.join(diag.notes)})")
            why = bad_span(diag, result.sources)
            if why:
                spans.append(f"{diag.code} {diag.message[:80]!r}: {why}")
        for render in RENDERERS.values():
            render(result.diagnostics, result.sources)
        if result.ok and result.plan is not None:
            render_files(result.plan)
    except Exception:  # noqa: BLE001 - this is what the fuzzer looks for
        tracebacks.append(traceback.format_exc(limit=-3).strip().splitlines()[-1])
        return tracebacks, spans, False
    return tracebacks, spans, result.ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "fuzz.md"))
    args = ap.parse_args()
    cases = inputs(args.count, args.seed)
    kinds, clean = Counter(k for k, _, _ in cases), Counter()
    found_tb: list[tuple[str, str, str]] = []
    found_span: list[tuple[str, str, str]] = []
    slowest = (0.0, "", "")
    start = time.perf_counter()
    for i, (kind, path, text) in enumerate(cases):
        t = time.perf_counter()
        tbs, spans, ok = check(path, text)
        took = time.perf_counter() - t
        if took > slowest[0]:
            slowest = (took, kind, f"{Path(path).name}, {len(text):,} characters")
        clean[kind] += ok
        found_tb += [(kind, Path(path).name, m) for m in tbs]
        found_span += [(kind, Path(path).name, m) for m in spans]
        if (i + 1) % 1000 == 0:
            print(f"{i + 1}/{len(cases)}: {len(found_tb)} tracebacks, {len(found_span)} bad spans", flush=True)
    total = time.perf_counter() - start
    lines = [
        "# Compiler fuzzing", "",
        f"Command: `python bench/fuzz.py --count {args.count} --seed {args.seed}`", "",
        f"Machine: {platform.machine()}, Python {platform.python_version()}, {platform.system()} "
        f"{platform.release()} (shared with other jobs: times are upper bounds).", "",
        f"- inputs: {len(cases):,} ({', '.join(f'{k} {n:,}' for k, n in sorted(kinds.items()))}); clean "
        f"(compiled to launch files): {sum(clean.values()):,}",
        f"- tracebacks (exception or CAS999): **{len(found_tb)}**",
        f"- diagnostics without a span inside the file: **{len(found_span)}**",
        f"- slowest input: {slowest[0] * 1000:.0f} ms ({slowest[1]}, {slowest[2]}); all inputs: {total:.0f} s, "
        f"{total / len(cases) * 1000:.1f} ms each on average",
    ]
    for title, found in (("Tracebacks", found_tb), ("Bad spans", found_span)):
        if found:
            lines += ["", f"## {title} (first 20)", ""] + [f"- {k} of {p}: {m}" for k, p, m in found[:20]]
    atomic_write_text(Path(args.out), "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 1 if found_tb or found_span else 0


if __name__ == "__main__":
    sys.exit(main())
