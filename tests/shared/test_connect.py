"""Connection rules (shared/connect.py): Neon URLs as they are, verified TLS, NODELAY, bounded retry, the SCRAM cache."""

from __future__ import annotations

import re
import socket
import ssl
import time

import pg8000
import pytest
from shared import connect as db
from shared.errors import DatabaseUnavailable

NEON = "postgresql://alex:AbC123@ep-cool-darkness-123456.us-east-2.aws.neon.tech/dbname?sslmode=require&channel_binding=require"


def test_a_neon_url_is_accepted_as_is_and_verified():
    params = db.parse_database_url(NEON)
    assert (params.host, params.port, params.user, params.password, params.database) == (
        "ep-cool-darkness-123456.us-east-2.aws.neon.tech", 5432, "alex", "AbC123", "dbname",
    )
    assert params.tls == "verify-full"


@pytest.mark.parametrize(
    ("url", "tls"),
    [
        ("postgresql://u@db.example.com/d", "verify-full"),  # remote: verified unless told otherwise
        ("postgres://u@127.0.0.1/d", "disable"),  # loopback: plain unless told otherwise
        ("postgresql://u@localhost/d?sslmode=verify-ca", "verify-ca"),
        ("postgresql://u@db.example.com/d?sslmode=prefer", "opportunistic"),
        ("postgresql://u@db.example.com/d?sslmode=disable", "disable"),
        ("postgresql+pg8000://u@db.example.com/d?sslmode=verify-full", "verify-full"),
    ],
)
def test_sslmode_maps_to_a_tls_policy(url, tls):
    assert db.parse_database_url(url).tls == tls


def test_a_unix_socket_host_is_understood():
    params = db.parse_database_url("postgresql://u@/d?host=/run/postgresql")
    assert params.unix_sock == "/run/postgresql/.s.PGSQL.5432" and params.tls == "disable"


@pytest.mark.parametrize(
    "url",
    [
        "mysql://u@h/d",
        "postgresql://u@h/d?sslmode=sometimes",
        "postgresql://u@h/d?sslcompression=1",
        "postgresql://u@h/d?sslmode=disable&channel_binding=require",
    ],
)
def test_an_unusable_url_is_refused_with_a_reason(url):
    with pytest.raises(db.ConfigurationError):
        db.parse_database_url(url)


@pytest.mark.parametrize(
    ("query", "direct"),
    [
        ("sslmode=require&channel_binding=require&sslnegotiation=direct", True),  # Neon's URL, plus direct
        ("sslmode=verify-ca&sslnegotiation=direct", True),
        ("sslnegotiation=direct", True),  # a remote host is verify-full unless told otherwise
        ("sslmode=require&sslnegotiation=postgres", False),  # libpq's default, said out loud
        ("sslmode=require&gssencmode=disable", False),  # GSSAPI is never attempted: both are no-ops
        ("sslmode=require&gssencmode=prefer", False),
    ],
)
def test_sslnegotiation_and_gssencmode_are_understood(query, direct):
    params = db.parse_database_url(f"{NEON.split('?')[0]}?{query}")
    assert params.direct_tls is direct and params.tls in ("verify-full", "verify-ca")


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("postgresql://u@db.example.com/d?sslmode=disable&sslnegotiation=direct", "requires sslmode=require"),
        ("postgresql://u@db.example.com/d?sslmode=prefer&sslnegotiation=direct", "requires sslmode=require"),
        ("postgresql://u@db.example.com/d?sslmode=allow&sslnegotiation=direct", "requires sslmode=require"),
        ("postgresql://u@127.0.0.1/d?sslnegotiation=direct", "the default for this host"),  # loopback: plain
        ("postgresql://u@/d?host=/run/postgresql&sslmode=require&sslnegotiation=direct", "Unix socket"),
        ("postgresql://u@db.example.com/d?sslnegotiation=tls", "sslnegotiation='tls'"),
        ("postgresql://u@db.example.com/d?gssencmode=require", "GSSAPI encryption is not supported"),
        ("postgresql://u@db.example.com/d?gssencmode=maybe", "gssencmode='maybe'"),
    ],
)
def test_a_direct_tls_or_gss_setting_that_cannot_work_is_refused_naming_it(url, says):
    with pytest.raises(db.ConfigurationError, match=re.escape(says)):
        db.parse_database_url(url)


def test_the_direct_tls_context_offers_alpn_postgresql_and_is_built_once_apart():
    direct = db.tls_context("verify-full", None, direct=True)
    assert direct is db.tls_context("verify-full", None, direct=True)
    assert direct is not db.tls_context("verify-full", None)  # the SSLRequest path's stays without ALPN
    assert direct.verify_mode == ssl.CERT_REQUIRED and direct.check_hostname
    assert db.tls_context("verify-ca", None, direct=True).check_hostname is False


def test_the_tls_context_verifies_and_is_built_once():
    context = db.tls_context("verify-full", None)
    assert context is db.tls_context("verify-full", None)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert db.tls_context("verify-ca", None).check_hostname is False


def test_connections_set_tcp_nodelay_and_keep_the_host_for_sni(database_url, monkeypatch):
    seen = {}
    real = pg8000.Connection

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(pg8000, "Connection", spy)
    connection = db.connect_once(db.parse_database_url(database_url), timeout=5)
    try:
        assert seen["sock"].getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        assert seen["host"] == "127.0.0.1" and seen["timeout"] == 5
    finally:
        connection.close()


def test_an_unreachable_server_is_retried_a_bounded_number_of_times_then_503(monkeypatch):
    attempts = []
    real = db.connect_once
    monkeypatch.setattr(db, "connect_once", lambda params, timeout: attempts.append(timeout) or real(params, timeout))
    started = time.monotonic()
    with pytest.raises(DatabaseUnavailable):
        db.connect_with_retry(db.parse_database_url("postgresql://u@127.0.0.1:9/d"), budget=5)
    assert 2 <= len(attempts) <= 4
    assert time.monotonic() - started < 5


def test_an_unreachable_server_is_retried_with_direct_tls_too(monkeypatch):
    """Refused before any TLS: a waking or restarting server, not one that refuses direct TLS."""
    attempts = []
    real = db.connect_once
    monkeypatch.setattr(db, "connect_once", lambda params, timeout: attempts.append(timeout) or real(params, timeout))
    with pytest.raises(DatabaseUnavailable):
        db.connect_with_retry(db.parse_database_url("postgresql://u@127.0.0.1:9/d?sslmode=require&sslnegotiation=direct"), budget=5)
    assert 2 <= len(attempts) <= 4


def test_a_refusal_that_retrying_cannot_fix_is_not_retried(postgres_server, monkeypatch):
    attempts = []
    real = db.connect_once
    monkeypatch.setattr(db, "connect_once", lambda params, timeout: attempts.append(1) or real(params, timeout))
    url = f"postgresql://postgres@127.0.0.1:{postgres_server['port']}/no_such_database_here"
    with pytest.raises(pg8000.DatabaseError):
        db.connect_with_retry(db.parse_database_url(url), budget=5)
    assert attempts == [1]


def test_the_scram_salted_password_is_derived_once_per_process(database_url, postgres_server):
    """shared/connect.py wraps scramp's `hi` (PBKDF2) in a cache: if scramp renames or moves it,
    this fails instead of every connect silently paying ~1.5 ms of CPU again."""
    from scramp import core

    assert hasattr(core.hi, "cached"), "scramp.core.hi is not wrapped: see shared/connect.py"
    before = core.hi.cached.cache_info()
    core.hi(core.hashlib.sha256, b"pw", b"salt", 4096)
    core.hi(core.hashlib.sha256, b"pw", b"salt", 4096)
    after = core.hi.cached.cache_info()
    assert after.hits >= before.hits + 1 and after.misses <= before.misses + 1
