"""What one short-lived connection costs: connect + TLS (verified) + SCRAM + SELECT 1 + close.

    .venv/bin/python bench/connect.py [--samples 200] [--key-type ec|rsa]
    .venv/bin/python bench/connect.py --smoke      # 3 samples: every check, seconds

Starts a throwaway Postgres with TLS and SCRAM (shared/local/tls_postgres.py), checks that every client
below really uses TLS (and which ones verify the certificate), then times, interleaved in the
same run (every variant once a round, in a new shuffled order each round: bench/_support.py)
so that machine drift hits all alike:

  A. project connect  shared.connect.connect_with_retry(parse_database_url(url), budget): what
                      every flight opens (shared/db.py): our socket (TCP_NODELAY), the TLS
                      context built once per process, SCRAM's salted password cached
  B. pg8000 defaults  pg8000.connect(...): new unverified TLS context per connect, no TCP_NODELAY
  D. pg8000 + context pg8000.connect(..., ssl_context=<our reused verified context>): no TCP_NODELAY
  (SCRAM's salted-password cache is process-wide once shared.connect is imported: all three have it)

Each then runs `SELECT 1` on a DB-API cursor and closes. There is no SQLAlchemy engine on the
request path any more (since the one-flight data layer), so the former "engine" and
"connect_once" variants are both A now, and there is no engine "first connect" to time.

Every figure printed comes from this run; nothing is a constant. Exit status 1 when a check
fails (a client without TLS, a certificate that should have been refused).
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import ssl
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import pg8000  # noqa: E402

from bench._support import (  # noqa: E402
    Checks, Goal, add_smoke_flag, interleaved, main_exit, median_ms, p90_ms, print_summary, set_database_url,
)
from shared import connect  # noqa: E402
from shared.local.certificates import make_ca  # noqa: E402
from shared.local.tls_postgres import TlsPostgres, tls_postgres  # noqa: E402

SSL_ROW = "SELECT ssl, version, cipher FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
BUDGET = 10.0  # seconds: DB_CONNECT_TIMEOUT's default


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.2f}"


def chain(error: BaseException) -> list[BaseException]:
    seen = []
    while error is not None and error not in seen:
        seen.append(error)
        error = error.__cause__ or error.__context__
    return seen


def describe_socket(raw: pg8000.Connection) -> str:
    """What the client side did: SCRAM mechanism, certificate verification, SNI, NODELAY."""
    sock = raw._usock  # pg8000's socket (private attribute: evidence only)
    parts = [f"auth={getattr(getattr(raw, 'auth', None), 'mechanism_name', 'none (no SASL)')}"]
    if isinstance(sock, ssl.SSLSocket):
        verified = sock.context.verify_mode == ssl.CERT_REQUIRED
        peer = sock.getpeercert()  # {} when the certificate was not validated
        subject = dict(x[0] for x in peer.get("subject", ())) if peer else {}
        parts.append(
            f"cert {'VERIFIED' if verified else 'NOT verified'}"
            f" (verify_mode={sock.context.verify_mode.name}, check_hostname={sock.context.check_hostname},"
            f" peer CN={subject.get('commonName', '-')})"
        )
        parts.append(f"SNI={sock.server_hostname!r}")
    else:
        parts.append("NO TLS on the client socket")
    parts.append(f"TCP_NODELAY={sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)}")
    return ", ".join(parts)


def project_connect(url: str) -> Callable[[], pg8000.Connection]:
    """The project's connect, exactly as shared.db.flight() opens every connection."""
    return lambda: connect.connect_with_retry(connect.parse_database_url(url), BUDGET)


def with_cursor(open_connection: Callable[[], pg8000.Connection]) -> Callable[[], None]:
    """One DB-API connection: open, SELECT 1, fetch, close."""

    def op() -> None:
        connection = open_connection()
        try:
            cursor = connection.cursor()
            cursor.execute("SELECT 1")
            cursor.fetchall()
        finally:
            connection.close()

    return op


def check_server_refuses_plain_tcp(server: TlsPostgres, check: Checks) -> None:
    try:
        pg8000.connect(server.user, host=server.host, port=server.port, password=server.password,
                       database=server.database, ssl_context=False, timeout=10).close()
        check(False, "server accepted a connection without TLS")
    except (pg8000.InterfaceError, pg8000.DatabaseError) as error:
        message = error.args[0].get("M") if error.args and isinstance(error.args[0], dict) else error
        check(True, f"server refuses plain TCP: {message}")


def check_wrong_root_fails(server: TlsPostgres, check: Checks) -> None:
    """The project's connect with a CA bundle that did not sign the server's certificate must fail."""
    wrong = ssl.get_default_verify_paths().cafile
    label = "system CA bundle"
    if not wrong or not os.path.exists(wrong):
        other = Path(server.directory) / "unrelated-ca.pem"  # no system bundle: an unrelated CA
        other.write_bytes(make_ca("unrelated CA").cert_pem)
        wrong, label = str(other), "an unrelated CA"
    attempts = []
    real = connect.connect_once

    def counting(params: connect.ConnectParams, timeout: float) -> pg8000.Connection:
        attempts.append(timeout)
        return real(params, timeout)

    connect.connect_once = counting  # connect_with_retry looks it up at each attempt
    started = time.perf_counter()
    try:
        project_connect(server.url_with(sslrootcert=wrong))().close()
        check(False, f"connected although sslrootcert={wrong} ({label}) did not sign the certificate")
    except Exception as error:  # noqa: BLE001 - reported just below
        elapsed = time.perf_counter() - started
        errors = chain(error)
        cert_errors = [e for e in errors if isinstance(e, ssl.SSLCertVerificationError)]
        check(bool(cert_errors), f"connect_with_retry with sslrootcert={wrong} ({label}) fails:")
        print(f"         raised {type(error).__module__}.{type(error).__name__}: {error}")
        for e in errors[1:]:
            print(f"         caused by {type(e).__name__}: {e}")
        print(f"         after {len(attempts)} connect attempt(s) in {elapsed * 1000:.0f} ms"
              + (" (a certificate failure is retried like an outage)" if len(attempts) > 1 else ""))
    finally:
        connect.connect_once = real


def time_context_builds(ca_path: str, n: int = 20) -> tuple[float, float]:
    """Median cost of building a TLS context: pg8000's per-connect default, and ours (once)."""
    default, ours = [], []
    for _ in range(n):
        t = time.perf_counter()
        ssl.create_default_context()
        default.append(time.perf_counter() - t)
        t = time.perf_counter()
        ssl.create_default_context(cafile=ca_path)
        ours.append(time.perf_counter() - t)
    return statistics.median(default), statistics.median(ours)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=200, help="samples per variant (default 200)")
    parser.add_argument("--key-type", choices=("ec", "rsa"), default="ec", help="server key: P-256 or RSA-2048")
    add_smoke_flag(parser)
    args = parser.parse_args(argv)
    if args.smoke:
        args.samples = 3
    if args.samples < 2:
        parser.error("--samples must be at least 2")

    print(f"Python {platform.python_version()} ({platform.python_implementation()}), "
          f"{platform.system()} {platform.release()}, {os.cpu_count()} CPUs")
    print(f"pg8000 {pg8000.__version__}, {ssl.OPENSSL_VERSION}")

    previous_url = os.environ.get("DATABASE_URL")
    started = time.perf_counter()
    try:
        with tls_postgres(key_type=args.key_type) as server:
            print(f"Server: Postgres {server.server_version} ({server.bindir}), TLS + SCRAM, "
                  f"{args.key_type.upper()} key, ready in {time.perf_counter() - started:.2f} s")
            print(f"URL: {server.url.replace(server.password, '***')}")
            set_database_url(server.url)
            return run(server, args.samples, args.smoke)
    finally:
        set_database_url(previous_url)


def run(server: TlsPostgres, samples: int, smoke: bool) -> int:
    params = connect.parse_database_url(server.url)
    reused = connect.tls_context(params.tls, params.rootcert)  # what A builds once per process

    def pg8000_connect(**extra: object) -> pg8000.Connection:
        return pg8000.connect(server.user, host=server.host, port=server.port, password=server.password,
                              database=server.database, **extra)

    variants: dict[str, Callable[[], pg8000.Connection]] = {
        "A project connect (connect_with_retry)": project_connect(server.url),
        "B pg8000 defaults": pg8000_connect,
        "D pg8000 + reused verified context": lambda: pg8000_connect(ssl_context=reused),
    }

    print("\nChecks (before timing):")
    check = Checks()
    check_server_refuses_plain_tcp(server, check)
    check_wrong_root_fails(server, check)
    for label, open_connection in variants.items():
        connection = open_connection()  # also the warm-up of this variant
        try:
            cursor = connection.cursor()
            cursor.execute(SSL_ROW)
            row = cursor.fetchone()
            check(row[0] is True, f"{label[:1]}: pg_stat_ssl ssl={row[0]} {row[1]} {row[2]}; {describe_socket(connection)}")
        finally:
            connection.close()

    print(f"\nTiming {samples} samples each, interleaved: every variant once a round, in a new shuffled order")
    loop_started = time.perf_counter()
    times = interleaved({name: with_cursor(open_connection) for name, open_connection in variants.items()}, samples)
    loop_time = time.perf_counter() - loop_started
    default_ctx, our_ctx = time_context_builds(server.ca_path)

    print(f"\n{'connect + TLS + SCRAM + SELECT 1 + close':<40} {'median':>8} {'p90':>8} {'min':>8} {'max':>8}  (ms)")
    medians = {}
    for name, values in times.items():
        medians[name[0]] = median_ms(values)
        print(f"{name:<40} {medians[name[0]]:8.2f} {p90_ms(values):8.2f} {ms(min(values))} {ms(max(values))}")
    print("(no engine first connect to time any more: shared/db.py opens every flight's connection with A, no")
    print(" SQLAlchemy dialect in between; what a process pays once is A's TLS context, timed just below)")
    print(f"\nB-D = {medians['B'] - medians['D']:.1f} ms  (a new TLS context per connect; "
          f"ssl.create_default_context() alone: {default_ctx * 1000:.1f} ms, with our CA file: {our_ctx * 1000:.1f} ms)")
    print(f"D-A = {medians['D'] - medians['A']:.1f} ms  (no TCP_NODELAY: delayed-ACK stall; SCRAM's salted "
          "password cache is process-wide once shared.connect is imported, so A, B and D all have it)")
    print_summary("RATIOS (medians)", [
        Goal("B/A  pg8000 defaults vs the project's connect", medians["B"] / medians["A"]),
        Goal("D/A  pg8000 + our context vs the project's connect", medians["D"] / medians["A"]),
    ], smoke=smoke)
    print(f"\nTimed loop: {loop_time:.1f} s. Machine shared and noisy: quote the medians, "
          "not the means or the extremes.")
    return check.exit_status()


if __name__ == "__main__":
    sys.exit(main_exit(main))
