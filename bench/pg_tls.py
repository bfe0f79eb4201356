"""A throwaway Postgres server with TLS and SCRAM on (as Neon has), for benchmarks and tests.

    with tls_postgres() as server:
        server.url  # postgresql://postgres:<pw>@localhost:<port>/postgres?sslmode=verify-full&sslrootcert=<ca.pem>

What it does: finds the server binaries (`pg_config --bindir`, else the newest
`/usr/lib/postgresql/*/bin`), makes a temp dir, generates a self-signed CA and a server
certificate for `localhost` / 127.0.0.1 (SAN) with `cryptography`, runs `initdb` with SCRAM
for TCP and trust for the unix socket, allows TCP only through `hostssl ... scram-sha-256`
(TLS is mandatory), starts `postgres` as a direct child on a free port and waits until it
is ready. On exit: fast shutdown (SIGINT), then kill, then the temp dir is removed.

initdb and postgres refuse to run as root: when euid is 0 they run as the `postgres` user
(the temp dir is chowned to it; the CA file stays world-readable).
"""

from __future__ import annotations

import datetime as dt
import glob
import ipaddress
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlencode

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "CertificateAuthority",
    "ServerBinariesNotFound",
    "TlsPostgres",
    "find_bindir",
    "make_ca",
    "tls_postgres",
]

SERVER_NAMES = ("localhost", "127.0.0.1")


class ServerBinariesNotFound(RuntimeError):
    """No `initdb`/`postgres` to run: install the server package (e.g. postgresql-15)."""


class ServerStartError(RuntimeError):
    """initdb or postgres failed; the message carries the tail of its output."""


# --------------------------------------------------------------------------- binaries


def _version_key(path: str) -> tuple[int, ...]:
    # /usr/lib/postgresql/15/bin -> (15,); "9.6" -> (9, 6)
    version = Path(path).parent.name
    return tuple(int(part) for part in re.findall(r"\d+", version)) or (0,)


def find_bindir() -> Path:
    """Directory holding `initdb`, `postgres`: `pg_config --bindir`, else the newest Debian one."""
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


# --------------------------------------------------------------------------- certificates


@dataclass(frozen=True)
class CertificateAuthority:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(self, names: Sequence[str] = SERVER_NAMES, *, key_type: str = "ec") -> tuple[bytes, bytes]:
        """A server certificate for `names` (DNS names or IP addresses): (cert PEM, key PEM)."""
        key = _new_key(key_type)
        sans: list[x509.GeneralName] = []
        for name in names:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                sans.append(x509.DNSName(name))
        now = dt.datetime.now(dt.timezone.utc)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, key_encipherment=key_type == "rsa", content_commitment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                    encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )
        return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def _new_key(key_type: str) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
    if key_type == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raise ValueError(f"key_type must be 'ec' or 'rsa', not {key_type!r}")


def _key_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def make_ca(common_name: str = "pg-tls throwaway CA", *, key_type: str = "ec") -> CertificateAuthority:
    """A self-signed CA, valid for two days (strict-X.509 friendly: key usage, SKI/AKI)."""
    key = _new_key(key_type)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False, key_encipherment=False, content_commitment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return CertificateAuthority(cert, key)


# --------------------------------------------------------------------------- server


@dataclass(frozen=True)
class TlsPostgres:
    """A running server. `url` verifies the certificate against `ca_path` (host `localhost`)."""

    ca_path: str
    host: str
    port: int
    password: str
    user: str
    database: str
    directory: str
    log_path: str
    bindir: str
    server_version: str
    key_type: str
    ca: CertificateAuthority

    @property
    def url(self) -> str:
        return self.url_with()

    def url_with(self, user: str | None = None, password: str | None = None, **query: str | None) -> str:
        """The URL with other query parameters (None drops one), e.g. `url_with(sslrootcert=None)`."""
        params: dict[str, str | None] = {"sslmode": "verify-full", "sslrootcert": self.ca_path}
        params.update(query)
        kept = {k: v for k, v in params.items() if v is not None}
        user = user or self.user
        password = self.password if password is None else password
        base = f"postgresql://{quote(user, safe='')}:{quote(password, safe='')}@{self.host}:{self.port}/{self.database}"
        return f"{base}?{urlencode(kept, safe='/')}" if kept else base


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _death_signal_setter():
    """Best effort (Linux): the server gets SIGINT (fast shutdown) if the Python process dies.

    Resolved here, in the parent: the child (between fork and exec) only makes the call.
    """
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig, sigint = 1, int(signal.SIGINT)

    def set_death_signal() -> None:
        prctl(pr_set_pdeathsig, sigint)

    return set_death_signal


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@contextmanager
def tls_postgres(
    *,
    key_type: str = "ec",
    extra_hba: Sequence[str] = (),
    extra_conf: dict[str, str] | None = None,
    start_timeout: float = 30.0,
    keep_dir: bool = False,
    bindir: str | Path | None = None,
) -> Iterator[TlsPostgres]:
    """Start a private TLS + SCRAM Postgres; stop it and delete everything on exit.

    `extra_hba` lines go before the catch-all `hostssl all all 127.0.0.1/32 scram-sha-256`.
    `bindir` runs other server binaries than `find_bindir()`'s (they must be built with SSL).
    """
    bindir = Path(bindir) if bindir is not None else find_bindir()
    as_root = os.geteuid() == 0
    if as_root:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError as error:
            raise ServerStartError("Running as root needs a 'postgres' user to run initdb/postgres as") from error
        run_as = {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []}
    else:
        run_as = {}

    root = Path(tempfile.mkdtemp(prefix="pg-tls-"))
    process: subprocess.Popen[bytes] | None = None
    log_file = None
    try:
        os.chmod(root, 0o755)  # CA readable by anyone who connects; data dir itself is 0700
        data = root / "data"
        sockets = root / "sockets"
        sockets.mkdir()
        log_path = root / "postgres.log"

        ca = make_ca(key_type=key_type)
        cert_pem, key_pem = ca.issue(SERVER_NAMES, key_type=key_type)
        ca_path = root / "ca.pem"
        ca_path.write_bytes(ca.cert_pem)
        os.chmod(ca_path, 0o644)
        cert_path = root / "server.crt"
        cert_path.write_bytes(cert_pem)
        key_path = root / "server.key"
        key_path.write_bytes(key_pem)
        os.chmod(key_path, 0o600)  # postgres refuses a key others can read

        password = secrets.token_urlsafe(18)
        pwfile = root / "pwfile"
        pwfile.write_text(password + "\n")
        os.chmod(pwfile, 0o600)

        if as_root:
            for path in (root, sockets, cert_path, key_path, pwfile, ca_path):
                os.chown(path, run_as["user"], run_as["group"])

        env = {**os.environ, "LC_ALL": "C", "LANG": "C", "TZ": "UTC"}
        env.pop("PGDATA", None)
        init = subprocess.run(
            [
                str(bindir / "initdb"), "-D", str(data), "-U", "postgres", f"--pwfile={pwfile}",
                "--auth-host=scram-sha-256", "--auth-local=trust", "--encoding=UTF8", "--locale=C",
                "--no-sync", "--no-instructions",
            ],
            cwd=root, env=env, capture_output=True, text=True, timeout=120, **run_as,
        )
        if init.returncode != 0:
            raise ServerStartError(f"initdb failed ({init.returncode}):\n{init.stdout}\n{init.stderr}")
        pwfile.unlink()

        hba = ["# written by bench/pg_tls.py: TCP only over TLS, SCRAM", "local all all trust"]
        hba += list(extra_hba)
        hba.append("hostssl all all 127.0.0.1/32 scram-sha-256")
        (data / "pg_hba.conf").write_text("\n".join(hba) + "\n")

        server_version = (data / "PG_VERSION").read_text().strip()
        for attempt in range(3):
            port = _free_port()
            conf = {
                "listen_addresses": "'127.0.0.1'",
                "port": str(port),
                "unix_socket_directories": f"'{sockets}'",
                "ssl": "on",
                "ssl_cert_file": f"'{cert_path}'",
                "ssl_key_file": f"'{key_path}'",
                "password_encryption": "'scram-sha-256'",
                "fsync": "off",
                "synchronous_commit": "off",
                "full_page_writes": "off",
                "max_connections": "50",
                "log_min_messages": "warning",
            }
            conf.update(extra_conf or {})
            with open(data / "postgresql.conf", "a") as f:
                f.write("\n# bench/pg_tls.py\n" + "".join(f"{k} = {v}\n" for k, v in conf.items()))

            log_file = open(log_path, "ab")
            process = subprocess.Popen(
                [str(bindir / "postgres"), "-D", str(data)],
                cwd=root, env=env, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                preexec_fn=_death_signal_setter(), **run_as,
            )
            if _wait_ready(process, data, port, start_timeout):
                break
            code = process.poll()
            log_file.close()
            log_file = None
            if code is None:  # alive but not ready in time
                raise ServerStartError(f"postgres not ready after {start_timeout:.0f}s:\n{_tail(log_path)}")
            process = None
            if "could not bind" not in _tail(log_path) or attempt == 2:
                raise ServerStartError(f"postgres exited with {code}:\n{_tail(log_path)}")

        yield TlsPostgres(
            ca_path=str(ca_path),
            host="localhost",
            port=port,
            password=password,
            user="postgres",
            database="postgres",
            directory=str(root),
            log_path=str(log_path),
            bindir=str(bindir),
            server_version=server_version,
            key_type=key_type,
            ca=ca,
        )
    finally:
        if process is not None:
            _stop(process)
        if log_file is not None:
            log_file.close()
        if not keep_dir:
            shutil.rmtree(root, ignore_errors=True)


def _wait_ready(process: subprocess.Popen[bytes], data: Path, port: int, timeout: float) -> bool:
    """Ready = postmaster.pid says "ready" for our port and the TCP port accepts."""
    deadline = time.monotonic() + timeout
    pidfile = data / "postmaster.pid"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            lines = pidfile.read_text().splitlines()
        except OSError:
            lines = []
        if len(lines) >= 8 and lines[3].strip() == str(port) and lines[7].strip() == "ready":
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return True
            except OSError:
                pass
        time.sleep(0.02)
    return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    try:
        process.send_signal(signal.SIGINT)  # fast shutdown: disconnect clients, no waiting
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
    except ProcessLookupError:
        pass


if __name__ == "__main__":  # manual check: python bench/pg_tls.py
    with tls_postgres() as server:
        print(f"Postgres {server.server_version} from {server.bindir}")
        print(server.url)
