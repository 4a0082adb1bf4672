"""The shipped `.pre-commit-hooks.yaml`, run for real by the `pre-commit` package (`pre-commit try-repo`).

pre-commit builds the hook's environment with `pip install .` of this repository; the environment variables
below keep that offline and quick (the dependencies already installed here are reused through the
system site-packages), but the hook definitions, the package build and the entry points are the real ones.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("pre_commit", reason="pre-commit is not installed (pip install -e '.[dev]')")

ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT / "tests" / "cli" / "specs"
UNFORMATTED = 'cascade "f" {\n  base = model(packaged("smollm2-135m-instruct"))\n' \
              '  domain a { train = gym("basic_arithmetic", size = 8)   reward = gym() }\n' \
              '      stage s = sft(base) { steps = 1    lr = 1e-5 }\n}\n'


@pytest.fixture(scope="module")
def hook_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("pre-commit-home")
    return {**os.environ, "PRE_COMMIT_HOME": str(home), "VIRTUALENV_SYSTEM_SITE_PACKAGES": "1",
            "PIP_NO_DEPS": "1", "PIP_NO_INDEX": "1", "PIP_NO_BUILD_ISOLATION": "0"}


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def _repo(tmp_path: Path, files: dict[str, str]) -> Path:
    repo = tmp_path / "user-repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    for name, text in files.items():
        (repo / name).write_text(text, encoding="utf-8")
    _git(repo, "add", ".")
    return repo


def _try_repo(repo: Path, hook: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["pre-commit", "try-repo", str(ROOT), hook, "--all-files", "--color", "never"],
                          cwd=repo, env=env, capture_output=True, text=True, timeout=300)


def test_lint_hook_passes_a_good_spec_and_fails_a_bad_one(tmp_path: Path, hook_env: dict[str, str]) -> None:
    repo = _repo(tmp_path, {"good.cascade": (SPECS / "mini.cascade").read_text()})
    ok = _try_repo(repo, "cascadec-lint", hook_env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "cascadec lint" in ok.stdout and "Passed" in ok.stdout
    shutil.copy(SPECS / "bad.cascade", repo / "bad.cascade")
    _git(repo, "add", "bad.cascade")
    bad = _try_repo(repo, "cascadec-lint", hook_env)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "Failed" in bad.stdout
    assert "error[CAS300]" in bad.stdout and "bad.cascade:10:19" in bad.stdout  # unknown parent `stf`
    assert "error[CAS301]" in bad.stdout and "temprature" in bad.stdout


def test_fmt_hook_rewrites_then_passes(tmp_path: Path, hook_env: dict[str, str]) -> None:
    repo = _repo(tmp_path, {"f.cascade": UNFORMATTED})
    first = _try_repo(repo, "cascadec-fmt", hook_env)
    assert first.returncode == 1, first.stdout + first.stderr
    assert "files were modified by this hook" in first.stdout
    formatted = (repo / "f.cascade").read_text()
    assert formatted != UNFORMATTED and "  stage s = sft(base) { steps = 1  lr = 1e-5 }" in formatted
    _git(repo, "add", "f.cascade")
    second = _try_repo(repo, "cascadec-fmt", hook_env)
    assert second.returncode == 0, second.stdout + second.stderr
