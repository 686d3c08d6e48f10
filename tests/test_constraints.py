"""constraints.txt: the versions the suite passed on, used by both README commands.

A fresh clone installs what the constraints pin, not whatever was released since; these
tests keep the file, pyproject.toml's ranges and the README's commands in step.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def pins() -> dict[str, Version]:
    out = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if not line:
            continue
        name, _, version = line.partition("==")
        assert version, f"constraints.txt pins exact versions: {line!r}"
        out[canonicalize_name(name)] = Version(version)
    return out


def requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    for extra, items in project["optional-dependencies"].items():
        if extra in ("brain-tribe", "gpu", "peers") or extra.startswith("qwen"):
            continue  # installed in other environments (their own venv, a GPU machine, on request)
        reqs += [Requirement(r) for r in items if not r.startswith("breachlab")]
    return reqs


def test_every_constrained_version_satisfies_pyproject():
    have = pins()
    for req in requirements():
        name = canonicalize_name(req.name)
        assert name in have, f"{req.name} is a dependency but not in constraints.txt (scripts/refresh_constraints.sh)"
        assert req.specifier.contains(have[name], prereleases=True), (
            f"constraints.txt pins {req.name}=={have[name]}, outside pyproject's {req.specifier}")


def test_every_direct_dependency_has_an_upper_bound_or_an_exact_pin():
    loose = [str(r) for r in requirements() if not any(s.operator in ("<", "<=", "==", "~=") for s in r.specifier)]
    # minor libraries with a stable API may stay open-ended; the heavy ones a break would hit may not
    heavy = {"numpy", "transformers", "peft", "accelerate", "llama-cpp-python", "torch", "typer", "pytest", "trl"}
    assert not [r for r in loose if canonicalize_name(Requirement(r).name) in heavy], loose


def test_both_readme_commands_install_with_the_constraints():
    readme = (ROOT / "README.md").read_text()
    installs = re.findall(r"pip install [^&\n]*-e \"\.\[[^\]]+\]\"", readme)
    assert any("[vuln,cpu]" in c for c in installs) and any("[all,cpu,test]" in c for c in installs), installs
    for cmd in installs:
        assert "-c constraints.txt" in cmd, cmd
    ci = (ROOT / ".ci" / "run").read_text()
    test_cmd = next(line for line in readme.splitlines() if "[all,cpu,test]" in line and "pytest" in line)
    assert test_cmd.strip() in ci, ".ci/run runs the README's test command verbatim"
