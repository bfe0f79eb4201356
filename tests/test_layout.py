"""The layer installs exactly the run-time pins that pyproject.toml declares.

(That no function needs the development tooling is proven by tests/test_sam_build.py,
which runs every built function from the layer alone.)
"""

from __future__ import annotations

import tomllib

from shared.template import REPO_ROOT


def _pins(lines: list[str]) -> set[str]:
    return {line.strip().lower() for line in lines if line.strip() and not line.strip().startswith("#")}


def test_layer_requirements_are_the_runtime_pins_of_pyproject():
    dependencies = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    runtime = dependencies[: dependencies.index("alembic==1.20.1")]  # the tooling pins follow
    layer = (REPO_ROOT / "infra" / "layer" / "requirements.txt").read_text().splitlines()
    assert _pins(layer) == _pins(runtime)

