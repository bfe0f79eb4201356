"""examples/typescript-client/: types generated from `todo-api openapi` (openapi-typescript),
type-checked (`tsc --noEmit`), and its script of the main flows run with openapi-fetch
against the served API. A document a TypeScript consumer cannot compile, or an API that
answers other than its document says, fails here."""

from __future__ import annotations

import subprocess

from tests.e2e.conftest import Serve, mint, todo_api_command
from tests.e2e.node_examples import npm_ci


def _run(command: list[str], cwd, what: str, **env: str) -> str:
    import os

    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=180, env={**os.environ, **env})
    assert result.returncode == 0, f"{what} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_the_generated_client_compiles_and_walks_the_main_flows(server: Serve):
    directory = npm_ci("typescript-client")
    document = _run([*todo_api_command(), "openapi"], directory, "todo-api openapi")
    (directory / "openapi.json").write_text(document)
    _run(["npm", "run", "--silent", "generate"], directory, "openapi-typescript")
    _run(["npm", "run", "--silent", "typecheck"], directory, "tsc --noEmit")
    _run(["npm", "run", "--silent", "build"], directory, "tsc (emit)")
    out = _run(["npm", "run", "--silent", "start"], directory, "the flows", API_URL=server.url, TOKEN=mint("ts-client"))
    assert "every flow passed" in out, out
