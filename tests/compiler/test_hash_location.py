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
