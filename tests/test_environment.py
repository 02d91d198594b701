"""requirements.txt (pip) and environment.yml (conda) describe one environment."""

from __future__ import annotations

import re

import yaml
from conftest import ROOT

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([0-9][^\s;#]*)$")


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(lines: list[str], where: str) -> dict[str, str]:
    pins = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        m = PIN.match(line)
        assert m, f"{where}: {line!r} is not pinned as name==version"
        pins[_canonical(m.group(1))] = m.group(2)
    return pins


def requirements() -> dict[str, str]:
    lines = (ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines()
    return _pins(lines, "requirements.txt")


def environment() -> dict:
    return yaml.safe_load((ROOT / "environment.yml").read_text(encoding="utf-8"))


def test_requirements_pin_every_direct_dependency():
    pins = requirements()
    assert pins["torch"] == "2.13.0"
    for name in ["numpy", "jupyter", "nbconvert", "nbclient", "nbformat", "ipykernel", "pytest",
                 "pytest-xdist", "ruff", "matplotlib", "hypothesis", "pyyaml"]:  # fmt: skip
        assert name in pins, f"requirements.txt does not pin {name}"


def test_environment_yml_matches_requirements():
    env = environment()
    assert env["name"] == "hw4"
    deps = env["dependencies"]
    assert "python=3.11" in deps
    pip_sections = [d["pip"] for d in deps if isinstance(d, dict) and "pip" in d]
    assert len(pip_sections) == 1, "environment.yml needs exactly one pip: section"
    conda_pins = _pins(pip_sections[0], "environment.yml")
    req = requirements()
    missing = sorted(set(req) - set(conda_pins))
    extra = sorted(set(conda_pins) - set(req))
    differ = sorted(f"{n}: {req[n]} vs {conda_pins[n]}" for n in set(req) & set(conda_pins)
                    if req[n] != conda_pins[n])  # fmt: skip
    assert not (missing or extra or differ), (
        "requirements.txt and environment.yml drifted apart: "
        f"missing from environment.yml {missing}, only in environment.yml {extra}, "
        f"different versions {differ}"
    )
