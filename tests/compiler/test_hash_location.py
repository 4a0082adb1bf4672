"""Stage hashes depend on what a spec says, not on where the checkout lies."""

import shutil
from pathlib import Path

from cascadec.compiler import compile_file

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "examples" / "quickstart.cascade"
WITH_PATHS = ROOT / "tests" / "golden" / "valid" / "branches.cascade"  # jsonl data paths


def test_stage_hashes_do_not_change_when_the_spec_moves(tmp_path):
    plans = []
    for where in (tmp_path / "a" / "x", tmp_path / "b" / "deeper" / "x"):
        where.mkdir(parents=True)
        shutil.copy(WITH_PATHS, where / WITH_PATHS.name)
        plans.append(compile_file(str(where / WITH_PATHS.name)).plan)
    assert all(p is not None for p in plans)
    paths = [d.train.path for p in plans for d in p.domains.values() if d.train.path]
    assert paths and len(set(paths)) == len(paths)  # the plans do hold different absolute paths
    assert [s.hash for s in plans[0].stages] == [s.hash for s in plans[1].stages]


def test_stage_hash_changes_when_a_data_path_changes(tmp_path):
    text = SPEC.read_text()
    (tmp_path / "a.cascade").write_text(text)
    changed = text.replace('gym("products", size = 2000', 'gym("products", size = 2001')
    assert changed != text
    (tmp_path / "b.cascade").write_text(changed)
    a, b = (compile_file(str(tmp_path / n)).plan for n in ("a.cascade", "b.cascade"))
    assert a.stages[0].hash != b.stages[0].hash


RM_SPEC = ('cascade "rm" {\n  base = model(tiny(llama, hidden_size = 32, intermediate_size = 64,\n'
           '      num_hidden_layers = 1, num_attention_heads = 2, num_key_value_heads = 1))\n'
           '  domain d {\n    train = inline([{prompt = "a?", answer = "yes"}])\n'
           '    reward = combined_if_rm(exact(answer = field("answer")), reward_model("./rm"))\n  }\n'
           '  stage s = grpo(base) on d { steps = 1  lr = 1e-3 }\n}\n')


def _reward_model(plan) -> str:
    return plan.domains["d"].reward.model_dump()["parts"][1]["args"]["model"]


def test_a_local_reward_model_is_read_from_the_specs_directory(tmp_path, monkeypatch):
    """`reward_model("./rm")` names the `rm` beside the spec, as `model("./m")` does, whatever directory the run
    starts in; the stage hash does not change when the spec and its model move together."""
    plans = []
    for where in (tmp_path / "a", tmp_path / "b" / "deeper"):
        where.mkdir(parents=True)
        (where / "s.cascade").write_text(RM_SPEC)
        (where / "rm").mkdir()
        (where / "rm" / "config.json").write_text("{}")
        monkeypatch.chdir(tmp_path)
        plans.append(compile_file(str((where / "s.cascade").relative_to(tmp_path))).plan)
        assert _reward_model(plans[-1]) == str(where / "rm")
    assert plans[0].stages[0].hash == plans[1].stages[0].hash
    (tmp_path / "c.cascade").write_text(RM_SPEC.replace('"./rm"', '"./a"'))
    (tmp_path / "a" / "config.json").write_text("{}")
    assert compile_file(str(tmp_path / "c.cascade")).plan.stages[0].hash != plans[0].stages[0].hash
