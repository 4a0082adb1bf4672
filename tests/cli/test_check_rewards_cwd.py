"""`lint --check-rewards` imports reward modules as `cascadec run` does (working directory first on sys.path)
and names the code sandbox's level."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from cli_helpers import invoke

SPEC = '''cascade "cwd-reward" {
  base = model(tiny(llama, hidden_size = 32, intermediate_size = 64, num_hidden_layers = 1,
      num_attention_heads = 2, num_key_value_heads = 1))
  domain d {
    train = inline([{prompt = "a?", answer = "yes"}, {prompt = "b?", answer = "yes"}])
    reward = py("cwd_reward_mod:score")
  }
  stage rl = grpo(base) on d { steps = 1  prompts_per_step = 2  rollouts_per_prompt = 2  lr = 1e-3 }
}
'''


def test_check_rewards_imports_a_module_from_the_working_directory(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "cwd_reward_mod.py").write_text("def score(samples, completions):\n"
                                                "    return [1.0 for _ in completions]\n")
    (tmp_path / "spec.cascade").write_text(SPEC)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".", str(tmp_path))])
    monkeypatch.delitem(sys.modules, "cwd_reward_mod", raising=False)
    result = invoke(["lint", "--check-rewards", "spec.cascade"])
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "code sandbox: " in result.stderr
