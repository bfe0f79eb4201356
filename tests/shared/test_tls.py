"""Connections against a real TLS + SCRAM Postgres (as Neon has): verified, bound, no silent fallback.

One throwaway server for the module (shared/local/tls_postgres.py): TCP only through
`hostssl ... scram-sha-256`, a self-signed CA, a certificate for localhost / 127.0.0.1.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pg8000
import pytest

from shared import connect as db
from shared.local.certificates import make_ca
from shared.local.embedded_postgres import ServerBinariesNotFound, system_bin_dir
from shared.local.tls_postgres import TlsPostgres, tls_postgres

try:
    system_bin_dir()
except ServerBinariesNotFound as error:
    pytest.skip(f"no Postgres server binaries: {error}", allow_module_level=True)

SSL_ROW = "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
# A role that the server authenticates with a plain password (over TLS): no SCRAM, no binding.
PLAIN_USER, PLAIN_PASSWORD = "plainpw", "plain-secret-1"


@pytest.fixture(scope="module")
def server() -> Iterator[TlsPostgres]:
    with tls_postgres(extra_hba=[f"hostssl all {PLAIN_USER} 127.0.0.1/32 password"]) as running:
        admin = pg8000.connect(
            running.user, host=running.host, port=running.port, password=running.password,
            database=running.database, ssl_context=ssl.create_default_context(cafile=running.ca_path), timeout=10,
        )
        try:
            admin.autocommit = True
            admin.cursor().execute(f"CREATE ROLE {PLAIN_USER} LOGIN PASSWORD '{PLAIN_PASSWORD}'")
        finally:
            admin.close()
        yield running


class Connected:
    """A connection as the functions open one (shared/connect.py), for one statement."""

    def __init__(self, url: str) -> None:
        self.raw = db.connect_with_retry(db.parse_database_url(url), budget=10)

    def __enter__(self) -> "Connected":
        return self

    def __exit__(self, *_: object) -> None:
        self.raw.close()

    def one(self, statement: str) -> tuple:
        cursor = self.raw.cursor()
        cursor.execute(statement)
        return tuple(cursor.fetchone())


@pytest.fixture
def connection_for() -> Callable[[str], Callable[[], Connected]]:
    """How a function connects for a URL."""
    return lambda url: (lambda: Connected(url))


def errors_in(error: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    while error is not None and error not in seen:
        seen.append(error)
        error = error.__cause__ or error.__context__
    return seen


def tls_socket(connection: Connected) -> ssl.SSLSocket:
    raw = connection.raw
    assert isinstance(raw._usock, ssl.SSLSocket), "the client socket is not TLS"
    return raw._usock


def assert_verified(sock: ssl.SSLSocket) -> None:
    assert sock.context.verify_mode == ssl.CERT_REQUIRED and sock.context.check_hostname
    assert sock.server_hostname == "localhost"  # sent as SNI, and checked against the SAN
    assert dict(x[0] for x in sock.getpeercert()["subject"])["commonName"] == "localhost"  # {} if unverified


def test_a_connection_is_made_with_verified_tls(server, connection_for):
    with connection_for(server.url)() as c:  # sslmode=verify-full&sslrootcert=<ca>
        ssl_on, version = c.one(SSL_ROW)
        assert ssl_on is True and version.startswith("TLS")
        assert_verified(tls_socket(c))


def test_sslmode_require_is_verified_too(server, connection_for, tmp_path):
    url = server.url_with(sslmode="require")
    assert db.parse_database_url(url).tls == "verify-full"
    with connection_for(url)() as c:
        assert c.one(SSL_ROW)[0] is True
        assert_verified(tls_socket(c))
    # and it means it: with a CA that did not sign the server's certificate, no connection
    wrong = tmp_path / "unrelated-ca.pem"
    wrong.write_bytes(make_ca("unrelated CA").cert_pem)
    with pytest.raises(ssl.SSLCertVerificationError):
        db.connect_once(db.parse_database_url(server.url_with(sslmode="require", sslrootcert=str(wrong))), timeout=10)


def test_without_sslrootcert_the_system_cas_refuse_the_certificate(server, connection_for):
    connect = connection_for(server.url_with(sslrootcert=None))  # verify-full against the system CAs
    with pytest.raises(Exception) as raised, connect() as c:
        c.one("SELECT 1")
    cert_errors = [e for e in errors_in(raised.value) if isinstance(e, ssl.SSLCertVerificationError)]
    assert cert_errors, f"failed, but not on the certificate: {raised.value!r}"
    assert "certificate verify failed" in str(cert_errors[0])


def test_a_certificate_failure_is_not_retried(server, monkeypatch):
    attempts = []
    real = db.connect_once
    monkeypatch.setattr(db, "connect_once", lambda params, timeout: attempts.append(1) or real(params, timeout))
    with pytest.raises(Exception):
        db.connect_with_retry(db.parse_database_url(server.url_with(sslrootcert=None)), budget=10)
    assert attempts == [1]


def test_channel_binding_require_is_accepted_and_scram_plus_is_used(server, connection_for):
    url = server.url_with(sslmode="require", channel_binding="require")
    with connection_for(url)() as c:
        assert c.one(SSL_ROW)[0] is True
        auth = c.raw.auth  # pg8000's scramp client
        assert auth.mechanism_name == "SCRAM-SHA-256-PLUS"
        assert str(auth.cb.name) == "tls-server-end-point"
    # pg8000 binds whenever TLS is on and the server offers -PLUS, with or without the
    # parameter; `channel_binding=require` makes shared/db.py refuse a connection that did not.
    with connection_for(server.url)() as c:
        assert c.raw.auth.mechanism_name == "SCRAM-SHA-256-PLUS"


def _plain_url(server: TlsPostgres, **query: str | None) -> str:
    return server.url_with(user=PLAIN_USER, password=PLAIN_PASSWORD, **query)


@pytest.mark.skipif(not shutil.which("psql", path=system_bin_dir().as_posix()), reason="no psql next to the server")
def test_libpq_refuses_a_server_that_authenticates_without_channel_binding(server):
    """The reference for the next test: what channel_binding=require means to libpq."""
    psql = shutil.which("psql", path=system_bin_dir().as_posix())
    ok = subprocess.run([psql, _plain_url(server), "-Atc", "SELECT 1"], capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0, ok.stderr  # the role itself works
    bound = _plain_url(server, channel_binding="require")
    refused = subprocess.run([psql, bound, "-Atc", "SELECT 1"], capture_output=True, text=True, timeout=30)
    assert refused.returncode != 0 and "channel binding" in refused.stderr


def test_channel_binding_require_refuses_authentication_without_binding(server, connection_for):
    connect = connection_for(_plain_url(server, sslmode="require", channel_binding="require"))
    with pytest.raises(db.ChannelBindingError), connect() as c:
        c.one("SELECT 1")


@contextmanager
def fake_tls_endpoint(cert_pem: bytes, key_pem: bytes, directory: Path) -> Iterator[tuple[int, list]]:
    """Answers Postgres' SSLRequest with 'S', completes a TLS handshake, records SNI, hangs up."""
    (directory / "fake.crt").write_bytes(cert_pem)
    (directory / "fake.key").write_bytes(key_pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(directory / "fake.crt", directory / "fake.key")
    seen: list = []
    context.sni_callback = lambda _sslobj, name, _ctx: seen.append(name)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)  # closing a socket does not wake a blocked accept(): poll instead
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(5)
            with conn:
                try:
                    conn.recv(8)  # SSLRequest
                    conn.sendall(b"S")
                    context.wrap_socket(conn, server_side=True).close()
                except (OSError, ssl.SSLError):
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], seen
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


def test_the_host_is_sent_as_sni_and_checked_against_the_certificate(server, tmp_path):
    """Neon routes on SNI ("Endpoint ID is not specified" without it); Postgres ignores it, so a stand-in."""

    def url(port: int, mode: str) -> str:
        return f"postgresql://u:p@localhost:{port}/d?sslmode={mode}&sslrootcert={server.ca_path}"

    cert, key = server.ca.issue(["localhost"])
    with fake_tls_endpoint(cert, key, tmp_path) as (port, seen):
        with pytest.raises((pg8000.InterfaceError, OSError)) as raised:  # handshake ok, then it hangs up
            db.connect_once(db.parse_database_url(url(port, "verify-full")), timeout=5)
        assert not isinstance(raised.value, ssl.SSLCertVerificationError)
    assert seen == ["localhost"]

    cert, key = server.ca.issue(["db.elsewhere.test"])  # right CA, wrong name
    with fake_tls_endpoint(cert, key, tmp_path) as (port, seen):
        with pytest.raises(ssl.SSLCertVerificationError, match="[Hh]ostname mismatch"):
            db.connect_once(db.parse_database_url(url(port, "verify-full")), timeout=5)
        with pytest.raises((pg8000.InterfaceError, OSError)) as raised:  # verify-ca: the name is not checked
            db.connect_once(db.parse_database_url(url(port, "verify-ca")), timeout=5)
        assert not isinstance(raised.value, ssl.SSLCertVerificationError)
    assert seen == ["localhost", "localhost"]


def test_a_scram_login_derives_the_salted_password_once(server, connection_for):
    """The cache in shared/connect.py is used by real SCRAM logins: the second connect hits it."""
    from scramp import core

    with connection_for(server.url)():
        pass
    before = core.hi.cached.cache_info()
    with connection_for(server.url)():
        pass
    after = core.hi.cached.cache_info()
    assert (after.hits - before.hits, after.misses - before.misses) == (1, 0)
