"""Shared data for compiler tests: the repository root, the shipped specs and a small valid spec."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted([*ROOT.glob("specs/**/*.cascade"), *ROOT.glob("examples/**/*.cascade")])

SMALL = '''cascade "small" {
  base = model(tiny(llama, hidden_size = 32))
  domain math {
    train  = gym("basic_arithmetic", size = 100, seed = 1)
    reward = gym()
    eval held = gym("basic_arithmetic", size = 16, seed = 2) { metric = pass@1  max_tokens = 8 }
  }
  domain code { train = jsonl("data/code.jsonl")  reward = unit_tests(tests = field("tests"), timeout = 2s) }
  stage sft = sft(base) on [math, code] { steps = 2  batch_size = 2  lr = 1e-4 }
  stage side = grpo(sft) on code { steps = 2  prompts_per_step = 2  rollouts_per_prompt = 2  lr = 1e-5 }
  stage rl = grpo(sft) on [math: 2, code: 1] { steps = 2  prompts_per_step = 2  rollouts_per_prompt = 2  lr = 1e-5 }
  stage opd = distill(rl) { steps = 2  prompts_per_step = 2  lr = 1e-6  teachers { code = side  default = sft } }
}
'''


def with_data(folder: Path, name: str = "small.cascade") -> str:
    """The path of a spec ``name`` in ``folder`` beside the data file `SMALL` reads (one row that SFT and the
    unit-test reward can use), so that a test of something else sees no CAS320 for it."""
    (folder / "data").mkdir(exist_ok=True)
    (folder / "data" / "code.jsonl").write_text('{"prompt": "Write f() returning 1.", "completion": '
                                                '"def f():\\n    return 1", "tests": ["assert f() == 1"]}\n')
    return str(folder / name)
