"""A private PgBouncer in transaction mode, the pooler Neon puts in front of Postgres for
serverless clients: development tooling (never imported by a Lambda function) for the tests'
pooler pass (`TEST_DATABASE_VIA=pgbouncer`, tests/conftest.py) and for
`bench/round_trips.py --via-pgbouncer`.

Supervised like the embedded Postgres (shared/local/embedded_postgres.py):

- its own ini and auth file in a fresh temp dir; it listens on a free port of 127.0.0.1
  only (no Unix socket) and forwards every database name unchanged to one server (`* =`);
- `pool_mode = transaction`: a server connection is lent to a client for one transaction
  and then serves the next client, so nothing session-level survives between requests;
- `auth_type = trust` with the one user in `auth_file`: the servers the tests use (the local
  one in CI, or the embedded one) trust 127.0.0.1, so there is no password to relay;
- or, for the benchmark (keyword arguments; the defaults are the tests' setup above): a
  `password`, kept in plain text in `auth_file` (pgbouncer 1.18 then does SCRAM-SHA-256 with
  the client and with the server), `auth_type = scram-sha-256`, TLS to the clients
  (`client_tls`: a certificate and key, `client_tls_sslmode = require`) and TLS to the
  server (`server_tls_ca`: `server_tls_sslmode = verify-full` against that CA);
- pgbouncer refuses to run as root: when we are root it runs as `postgres` (or `nobody`),
  switched by Popen, not by pgbouncer's `-u`, so that the parent-death signal set after
  the switch survives it (the kernel clears it when credentials change): it cannot outlive
  the test run, even when pytest is killed.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pwd
import shutil
import signal
import subprocess
import sys
import ssl
import tempfile
import time
from pathlib import Path

import pg8000.native

from shared.local.settings import local_settings

_PR_SET_PDEATHSIG = 1
INSTALL_HINT = "apt-get install pgbouncer (Debian/Ubuntu; brew install pgbouncer on macOS)"


def find_binary() -> str | None:
    """`$PGBOUNCER`, else `pgbouncer` on PATH or in the sbin directories Debian installs to."""
    settings = local_settings()
    if settings.pgbouncer:
        return settings.pgbouncer
    path = os.pathsep.join([settings.path, "/usr/sbin", "/usr/local/sbin", "/sbin"])
    return shutil.which("pgbouncer", path=path)


def _free_port(host: str) -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _service_user() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise RuntimeError("Running as root and there is neither a `postgres` nor a `nobody` user to run pgbouncer as.")


def _die_with_parent(parent_pid: int):  # noqa: ANN202 - a closure for preexec_fn
    def setup() -> None:  # runs after Popen's user switch, just before exec
        if sys.platform.startswith("linux"):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
            if os.getppid() != parent_pid:  # the parent died before the line above
                os._exit(1)

    return setup


class PgBouncer:
    """`with PgBouncer("127.0.0.1", 5432) as bouncer: bouncer.url("todo_test_x")`.

    Start it from the main thread: Linux sends the parent-death signal when the *thread*
    that started the child exits.
    """

    def __init__(
        self,
        server_host: str,
        server_port: int,
        user: str = "postgres",
        *,
        host: str = "127.0.0.1",
        password: str | None = None,
        client_tls: tuple[bytes, bytes] | None = None,
        server_tls_ca: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """`password`: SCRAM-SHA-256 both ways instead of trust. `client_tls`: (cert PEM, key PEM)
        pgbouncer presents to its clients, who must then use TLS. `server_tls_ca`: the CA file
        the server's certificate is verified against. `ssl_context`: what this launcher's own
        connections (the readiness check, `admin`) use when `client_tls` is on."""
        self.server_host, self.server_port, self.user, self.host = server_host, server_port, user, host
        self.password, self.client_tls, self.server_tls_ca, self.ssl_context = password, client_tls, server_tls_ca, ssl_context
        self.port: int | None = None
        self.binary = find_binary()
        self._dir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None

    def url(self, database: str) -> str:
        assert self.port is not None, "pgbouncer is not started"
        return f"postgresql://{self.user}@{self.host}:{self.port}/{database}"

    def admin(self, command: str) -> list[dict[str, object]]:
        """A command of pgbouncer's admin console (`SHOW POOLS`, `SHOW SERVERS`, ...), as rows."""
        assert self.port is not None, "pgbouncer is not started"
        connection = self._connect("pgbouncer", timeout=5)
        try:
            rows = connection.run(command)
            return [dict(zip([column["name"] for column in connection.columns or []], row)) for row in rows or []]
        finally:
            connection.close()

    def _connect(self, database: str, timeout: float) -> pg8000.native.Connection:
        extra: dict[str, object] = {}
        if self.password is not None:
            extra["password"] = self.password
        if self.client_tls is not None:
            extra["ssl_context"] = self.ssl_context if self.ssl_context is not None else True
        return pg8000.native.Connection(self.user, host=self.host, port=self.port, database=database, timeout=timeout, **extra)

    @property
    def log_path(self) -> Path:
        assert self._dir is not None
        return self._dir / "pgbouncer.log"

    def _write_config(self, port: int) -> Path:
        assert self._dir is not None
        secret = (self.password or "").replace('"', '""')
        (self._dir / "userlist.txt").write_text(f'"{self.user}" "{secret}"\n')
        ini = self._dir / "pgbouncer.ini"
        tls = ""
        if self.client_tls is not None:
            (self._dir / "client.crt").write_bytes(self.client_tls[0])
            (self._dir / "client.key").write_bytes(self.client_tls[1])
            os.chmod(self._dir / "client.key", 0o600)
            tls += (f"client_tls_sslmode = require\nclient_tls_cert_file = {self._dir / 'client.crt'}\n"
                    f"client_tls_key_file = {self._dir / 'client.key'}\n")
        if self.server_tls_ca is not None:
            tls += f"server_tls_sslmode = verify-full\nserver_tls_ca_file = {self.server_tls_ca}\n"
        ini.write_text(
            f"""\
[databases]
* = host={self.server_host} port={self.server_port}

[pgbouncer]
listen_addr = {self.host}
listen_port = {port}
unix_socket_dir =
pidfile =
logfile =
auth_type = {"trust" if self.password is None else "scram-sha-256"}
auth_file = {self._dir / "userlist.txt"}
admin_users = {self.user}
pool_mode = transaction
; pgbouncer's defaults, stated: at most 20 server connections per database and user, the
; rest of the clients (up to 100) wait in pgbouncer for one, as they do behind Neon's.
default_pool_size = 20
max_client_conn = 100
; pg8000 sends only user, database and application_name at startup, which pgbouncer
; handles itself, so no startup parameter has to be ignored (an `options` in the URL would
; be refused by this pgbouncer, 1.18, rather than silently dropped).
ignore_startup_parameters =
{tls}"""
        )
        return ini

    def start(self) -> None:
        if self.binary is None:
            raise RuntimeError(f"pgbouncer is not installed: {INSTALL_HINT}")
        user = _service_user()
        self._dir = Path(tempfile.mkdtemp(prefix="todo-api-pgbouncer-"))
        try:
            for attempt in range(3):
                port = _free_port(self.host)
                ini = self._write_config(port)
                if user is not None:
                    for path in (self._dir, *self._dir.iterdir()):
                        os.chown(path, user.pw_uid, user.pw_gid)
                with open(self.log_path, "wb") as log_file:
                    self._process = subprocess.Popen(  # noqa: S603 - our own binary and ini
                        [self.binary, str(ini)],
                        stdin=subprocess.DEVNULL,
                        stdout=log_file,
                        stderr=subprocess.STDOUT,
                        cwd="/",
                        start_new_session=True,  # a terminal's Ctrl-C is for pytest; we stop it
                        preexec_fn=_die_with_parent(os.getpid()),
                        **({"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []} if user else {}),
                    )
                self.port = port
                if self._wait_ready():
                    return
                log = self._log_tail()
                self._process, self.port = None, None
                if "Address already in use" not in log or attempt == 2:
                    raise RuntimeError(f"pgbouncer did not start; its log ({self.log_path}):\n{log}")
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout: float = 20.0) -> bool:
        """True once a query through it reaches the server; False when it exited first."""
        assert self._process is not None and self.port is not None
        deadline = time.monotonic() + timeout
        while True:
            if self._process.poll() is not None:
                return False
            try:
                connection = self._connect("postgres", timeout=2)
                try:
                    connection.run("SELECT 1")
                finally:
                    connection.close()
                return True
            except Exception as error:  # noqa: BLE001 - not listening yet: try again
                if time.monotonic() > deadline:
                    raise RuntimeError(f"pgbouncer did not answer within {timeout:.0f}s ({error}); log:\n{self._log_tail()}") from error
                time.sleep(0.05)

    def _log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """SIGTERM (pgbouncer's immediate shutdown), then SIGKILL; removes its directory."""
        process, self._process = self._process, None
        self.port = None
        if process is not None:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                if process.poll() is not None:
                    break
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(sig)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(5)
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> PgBouncer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
