"""The Node examples under examples/: installed (`npm ci`) when their node_modules is missing,
and run as processes on a free loopback port. Tests that need them skip, saying why, when
node or npm is not on PATH."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from shared.template import REPO_ROOT

EXAMPLES = REPO_ROOT / "examples"


def require_node() -> None:
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not on PATH: the Node examples need Node 20+ and npm")


def npm_ci(example: str) -> Path:
    """examples/<example>, its dependencies installed from its lockfile if they are not yet."""
    require_node()
    directory = EXAMPLES / example
    installed = directory / "node_modules" / ".package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < (directory / "package-lock.json").stat().st_mtime:
        result = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=directory, capture_output=True, text=True, timeout=300,
        )
        assert result.returncode == 0, f"npm ci in {directory} failed:\n{result.stdout}\n{result.stderr}"
    return directory


class NodeProcess:
    """`node <script>` in an example's directory, its output in `log`; stop() ends it."""

    def __init__(self, directory: Path, script: str, env: dict[str, str], log: Path) -> None:
        self.log = log
        with open(log, "wb") as out:
            self.process = subprocess.Popen(
                ["node", script], cwd=directory, env={**os.environ, **env},
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            )

    def wait_for(self, url: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"node exited with {self.process.returncode}:\n{self.output()}"
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"{url} did not answer within {timeout:.0f} s:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
