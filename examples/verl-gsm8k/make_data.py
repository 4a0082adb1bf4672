"""Writes data/{train,test}-00000-of-00001.parquet: small arithmetic word problems in the layout veRL's
preprocessing scripts give hub datasets (nested `reward_model.ground_truth`, chat-list `prompt`,
`extra_info`), from two sources that need different rewards. Run from this folder: python make_data.py"""

import random

import pyarrow as pa
import pyarrow.parquet as pq

INSTRUCTION = "Let's think step by step and output the final answer after \"####\"."


def gsm8k_row(i: int, rng: random.Random, split: str) -> dict:
    a, b, c = rng.randint(2, 9), rng.randint(2, 9), rng.randint(1, 20)
    question = f"Ann has {a} bags with {b} apples each and eats {c % (a * b)} of them. How many apples are left?"
    answer = a * b - c % (a * b)
    return {"data_source": "openai/gsm8k", "ability": "math",
            "prompt": [{"role": "user", "content": f"{question} {INSTRUCTION}"}],
            "reward_model": {"style": "rule", "ground_truth": str(answer)},
            "extra_info": {"split": split, "index": i, "solution": f"{a} * {b} = {a * b}; "
                                                                    f"{a * b} - {c % (a * b)} = {answer}\n#### {answer}"}}


def math_row(i: int, rng: random.Random, split: str) -> dict:
    a, b = rng.randint(10, 99), rng.randint(10, 99)
    return {"data_source": "lighteval/MATH", "ability": "math",
            "prompt": [{"role": "system", "content": "Put the final answer in \\boxed{}."},
                       {"role": "user", "content": f"Compute ${a} + {b}$."}],
            "reward_model": {"style": "rule", "ground_truth": str(a + b)},
            "extra_info": {"split": split, "index": i, "solution": f"${a} + {b} = \\boxed{{{a + b}}}$"}}


def write(split: str, n: int, seed: int) -> None:
    rng = random.Random(seed)
    rows = [(gsm8k_row if i % 2 == 0 else math_row)(i, rng, split) for i in range(n)]
    pq.write_table(pa.Table.from_pylist(rows), f"data/{split}-00000-of-00001.parquet")


if __name__ == "__main__":
    write("train", 64, 0)
    write("test", 32, 1)
