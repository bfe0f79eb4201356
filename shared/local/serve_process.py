"""`todo-api serve` as a child process: started on a free loopback port, waited for, stopped.

The one launcher of the end-to-end tests (tests/e2e/conftest.py) and the soak benchmark
(bench/soak.py). Development tooling like the rest of shared/local/: no function imports it.

    serve = ServeProcess(clean_env(local_dir, DATABASE_URL=url), log_dir=local_dir)
    serve.start()          # returns once GET /health answers 200
    ...                    # serve.url, serve.stdout(), serve.stderr()
    serve.stop()           # SIGTERM, then SIGKILL; returns the exit code
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from shared.local.settings import LOCAL_DIR_ENV, child_environment
from shared.template import REPO_ROOT

START_TIMEOUT = 60.0
# Settings a serve process must not inherit from whoever starts it: its own are given.
INHERITED_NOT = ("DATABASE_URL", "JWT_ISSUER", "JWT_AUDIENCE", "JWT_JWKS_URL", "CORS_ALLOW_ORIGINS")


class ServeFailed(AssertionError):
    """serve exited, never answered /health, or ignored the signal that should stop it.

    An AssertionError, so that pytest shows it as a failed expectation; the message carries
    the tail of serve's output.
    """


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def todo_api_command() -> list[str]:
    """The `todo-api` entry point next to this interpreter, else `python -m shared.cli`."""
    script = Path(sys.executable).parent / "todo-api"
    return [str(script)] if script.exists() else [sys.executable, "-m", "shared.cli"]


def make_local_dir(prefix: str = "todo-serve-") -> Path:
    """A fresh TODO_API_LOCAL_DIR that a service user (when we run as root) can pass through."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


def clean_env(local_dir: Path, **extra: str) -> dict[str, str]:
    """The environment for a serve process: no inherited database, issuer or CORS setting."""
    return child_environment(without=INHERITED_NOT, **{LOCAL_DIR_ENV: str(local_dir), "PYTHONUNBUFFERED": "1", **extra})


@dataclass
class ServeProcess:
    """One `todo-api serve` process; its stdout and stderr go to files in `log_dir`.

    merged:      stdout and stderr into one file, in the order written (serve-<n>.log)
    own_session: a new session, so the starter's Ctrl-C does not reach it: only stop() does
    """

    env: dict[str, str]
    log_dir: Path
    port: int = field(default_factory=free_port)
    merged: bool = False
    own_session: bool = False
    process: subprocess.Popen[bytes] | None = None
    runs: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def stdout_path(self) -> Path:
        return self.log_dir / f"serve-{self.runs}.{'log' if self.merged else 'out'}"

    @property
    def stderr_path(self) -> Path:
        return self.stdout_path if self.merged else self.log_dir / f"serve-{self.runs}.err"

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.stdout() if self.merged else f"{self.stdout()}\n{self.stderr()}"
        except OSError:
            return "(no output)"
        return "\n".join(text.splitlines()[-lines:])

    def start(self, timeout: float = START_TIMEOUT) -> None:
        self.runs += 1
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "ab") as err:
            self.process = subprocess.Popen(
                [*todo_api_command(), "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                cwd=REPO_ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT if self.merged else err,
                start_new_session=self.own_session,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code, self.process = self.process.returncode, None
                raise ServeFailed(f"serve exited with {code}:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop(signal.SIGKILL)
        raise ServeFailed(f"serve did not answer /health within {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int | None:
        """Signal it and wait; SIGKILL (then ServeFailed) when it does not go. Its exit code."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return process.returncode if process else None
        process.send_signal(sig)
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
            raise ServeFailed(f"serve ignored signal {sig} for {timeout:.0f} s:\n{self.log_tail()}") from None

    def cpu_seconds(self) -> float | None:
        """user + system CPU of the serve process so far (Linux /proc), None when unknown."""
        if self.process is None:
            return None
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            return None
