"""The benchmark scripts: --help answers without running a benchmark; the README's tables
have the columns the scripts print. In-process: the scripts' main() parses the arguments."""

from __future__ import annotations

import importlib.util

import pytest
from conftest import ROOT


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["notebooks", "numerical_gradient"])
def test_help_does_not_run_the_benchmark(name, monkeypatch, capsys):
    script = _script(name)
    ran = []
    for fn in ("run", "compare", "measure"):  # what would run a benchmark
        if hasattr(script, fn):
            monkeypatch.setattr(script, fn, lambda *a, **k: ran.append(a))
    with pytest.raises(SystemExit) as exit_:
        script.main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage:") and not ran and "| " not in out, out


def test_readme_tables_have_the_scripts_columns():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert _script("numerical_gradient").HEADER in readme, (
        "README's numerical-gradient table differs from the script's"
    )
    notebooks = (ROOT / "benchmarks" / "notebooks.py").read_text(encoding="utf-8")
    header = "| notebook | time s | floor s | ratio | peak MB | floor MB | ratio |"
    assert header in notebooks and header in readme
