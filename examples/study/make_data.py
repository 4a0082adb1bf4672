"""Write the `json` domain's data of the issue-20 study (examples/study/study.cascade).

    python examples/study/make_data.py        # rewrites examples/study/data/json-*.jsonl

Each row is a reasoning-gym `chain_sum` item (two terms of 1-2 digits, the same problems as issue 7's `json`
domain) with three extra columns:

- ``completion``: ``{"answer": N}``, the target of the short SFT warm-up on B's format (`warm_json`), so that
  B's GRPO stage starts with a non-zero success rate in every seed;
- ``schema``: a JSON Schema that accepts only ``{"answer": N}`` with the right N, read per row by the reward's
  ``json_schema(schema = field("schema"))`` part (the value check);
- ``id``: the generator's index, so rows keep their identity.

Deterministic: the same seeds give the same files. The files are small (well under 2 MiB) and committed.
"""

from __future__ import annotations

import json
from pathlib import Path

import reasoning_gym

HERE = Path(__file__).resolve().parent
ARGS = {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 2}
# file -> (rows, generator seed); json-held-48 (the first 48 items of json-held) is the CPU smoke run's eval.
SPLITS = {"json-train.jsonl": (3000, 3), "json-held.jsonl": (256, 4), "json-held-48.jsonl": (48, 4)}
# The `digit` domain of study-digit.cascade: the same problems, answered with the result's last digit.
DIGIT_SPLITS = {"digit-train.jsonl": (3000, 3), "digit-held.jsonl": (256, 4)}


def rows(size: int, seed: int) -> list[dict]:
    """``size`` chain_sum items of generator seed ``seed`` as study rows."""
    out = []
    for i, entry in enumerate(reasoning_gym.create_dataset("chain_sum", size=size, seed=seed, **ARGS)):
        n = int(entry["answer"])
        out.append({
            "id": i,
            "prompt": entry["question"],
            "answer": str(n),
            "completion": json.dumps({"answer": n}),
            "schema": {"type": "object", "required": ["answer"], "properties": {"answer": {"const": n}}},
        })
    return out


def digit_rows(size: int, seed: int) -> list[dict]:
    """``size`` chain_sum items whose gold answer is the last digit of the result, target "Answer: D"."""
    out = []
    for r in rows(size, seed):
        digit = str(abs(int(r["answer"])) % 10)
        out.append({"id": r["id"], "prompt": r["prompt"], "answer": digit, "completion": f"Answer: {digit}"})
    return out


def main() -> None:
    out_dir = HERE / "data"
    out_dir.mkdir(exist_ok=True)
    splits = {name: (rows, size, seed) for name, (size, seed) in SPLITS.items()}
    splits |= {name: (digit_rows, size, seed) for name, (size, seed) in DIGIT_SPLITS.items()}
    for name, (make, size, seed) in splits.items():
        text = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in make(size, seed))
        tmp = out_dir / f".{name}.tmp"
        tmp.write_text(text)
        tmp.replace(out_dir / name)
        print(f"wrote {out_dir / name} ({len(text)} bytes)")


if __name__ == "__main__":
    main()
