"""`lint --check-rewards` template checks: a format reward against a pre-filled `<think>` (CAS501), multi-turn
prefix stability (CAS502), and reward modules found next to the spec from another working directory."""

from __future__ import annotations

import json
from pathlib import Path

from cascadec.compiler import compile_file
from runtime.rewards.contracts import check_rewards

FORMAT = '''import re

def format_reward(completions, **kwargs):
    texts = [c[0]["content"] if isinstance(c, list) else c for c in completions]
    return [1.0 if re.match(r"^<think>\\n.*?\\n</think>\\n<answer>\\n.*?\\n</answer>$", t, re.S) else 0.0 for t in texts]


def lenient(completions, **kwargs):
    texts = [c[0]["content"] if isinstance(c, list) else c for c in completions]
    return [1.0 if "</answer>" in t else 0.0 for t in texts]
'''
TEMPLATE = ("{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}"
            "{% if add_generation_prompt %}<assistant>{% if think %}<think>\\n{% endif %}{% endif %}")


def _spec(tmp_path: Path, reward: str, think: str, chat_rows: bool = False) -> Path:
    (tmp_path / "spec").mkdir(parents=True)
    (tmp_path / "spec" / "fmt_rewards.py").write_text(FORMAT)
    rows = [{"prompt": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                        {"role": "user", "content": "c"}], "answer": "2"}] if chat_rows else [{"prompt": "q", "answer": "2"}]
    (tmp_path / "spec" / "d.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    spec = tmp_path / "spec" / "s.cascade"
    spec.write_text(f'''cascade "p" {{
  base = model(tiny(llama))
  chat = template(jinja = "{TEMPLATE}", kwargs = {{think = {think}}})
  domain d {{ train = jsonl("d.jsonl")  reward = py("fmt_rewards:{reward}", contract = trl) }}
  stage s = grpo(base) {{ steps = 1  lr = 1e-6  prompts_per_step = 2  rollouts_per_prompt = 2 }}
}}
''')
    return spec


def _codes(tmp_path: Path, monkeypatch, **kw) -> list[tuple[str, str]]:
    spec = _spec(tmp_path, **kw)
    monkeypatch.chdir(tmp_path)  # not the spec's directory: the module is found next to the spec
    result = compile_file(spec)
    assert result.plan is not None, [d.message for d in result.diagnostics]
    return [(p.code, p.message) for p in check_rewards(result.plan)]


def test_format_reward_against_a_prefilled_think(tmp_path, monkeypatch):
    (code, message), = _codes(tmp_path, monkeypatch, reward="format_reward", think="true")
    assert code == "CAS501" and "'<think>\\n'" in message


def test_no_finding_without_prefill_or_with_a_lenient_reward(tmp_path, monkeypatch):
    assert _codes(tmp_path / "a", monkeypatch, reward="format_reward", think="false") == []
    assert _codes(tmp_path / "b", monkeypatch, reward="lenient", think="true") == []


def test_template_that_is_not_prefix_stable_on_multi_turn_rows(tmp_path, monkeypatch):
    global TEMPLATE
    saved = TEMPLATE
    TEMPLATE = "{{ messages|length }}" + saved  # the turn count changes the start of every rendering
    try:
        found = _codes(tmp_path, monkeypatch, reward="lenient", think="false", chat_rows=True)
    finally:
        TEMPLATE = saved
    assert [c for c, _ in found] == ["CAS502"] and "turn 1" in found[0][1]
