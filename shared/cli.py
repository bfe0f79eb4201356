"""`todo-api`: migrate, invoke, openapi, serve, token, cleanup, reminders, publish.

Development and operations tooling; no Lambda function imports it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from shared.local.lambda_context import FakeLambdaContext
from shared.local.migrate import migrate


def invoke(logical_id: str, event: dict[str, Any]) -> Any:
    """Runs one function's real handler on one event, in process (like `sam local invoke`).

    As with `sam local invoke`, the function's own output (logs, metrics) goes to stderr and
    only its response is printed on stdout.
    """
    from contextlib import redirect_stdout

    from shared.template import functions

    available = functions()
    if logical_id not in available:
        raise SystemExit(f"No function {logical_id!r} in template.yaml; there are: {', '.join(sorted(available))}")
    with redirect_stdout(sys.stderr):
        handler = available[logical_id].load_handler()
        return handler(event, FakeLambdaContext(logical_id))


def _run_job(job: str) -> Any:
    """One run of a scheduled job (`cleanup`, `reminders` or `publish`) at DATABASE_URL, no time limit.

    Imported under the redirect: the logger binds the stream it writes to (stderr here), and
    metrics print to stdout; only the result, printed by the caller, goes there.
    """
    from contextlib import redirect_stdout

    with redirect_stdout(sys.stderr):
        from shared.observability import metrics

        if job == "cleanup":
            from shared.cleanup import run_cleanup as run
        else:
            from shared import events
            from shared.local.settings import local_settings

            if job == "reminders":
                from shared.reminders import run_reminders as run
            else:
                from shared.publish_changes import run_publish as run

            events.use_local_events_file(local_settings().local_dir / "events.jsonl")  # used only without a bus
        try:
            return run()
        finally:
            metrics.flush_metrics()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="todo-api", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser("migrate", help="bring the database at DATABASE_URL to the latest schema")

    invoke_cmd = commands.add_parser("invoke", help="run one function on one event, in process")
    invoke_cmd.add_argument("function", help="its logical id in template.yaml, e.g. GetTask")
    invoke_cmd.add_argument("--event", required=True, type=Path, help="a JSON event file (see events/)")

    commands.add_parser("openapi", help="print the OpenAPI document as JSON")

    commands.add_parser("cleanup", help="one cleanup run at DATABASE_URL, no time limit; prints what it deleted")

    commands.add_parser(
        "reminders",
        help="one pass of the reminders at DATABASE_URL; events to EVENT_BUS_NAME, else the log and <local dir>/events.jsonl",
    )

    commands.add_parser(
        "publish",
        help="one pass of the change-log publisher at DATABASE_URL; events to EVENT_BUS_NAME, else the log and <local dir>/events.jsonl",
    )

    serve_cmd = commands.add_parser("serve", help="the local gateway: every HttpApi route, the JWT authorizer emulated")
    serve_cmd.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve_cmd.add_argument("--port", type=int, default=3000, help="port to listen on (default 3000)")
    serve_cmd.add_argument("--issuer", help="trust this issuer instead of the local one (or JWT_ISSUER)")
    serve_cmd.add_argument("--audience", help="the audience tokens must carry (or JWT_AUDIENCE)")
    serve_cmd.add_argument("--jwks-url", help="the issuer's JWKS (or JWT_JWKS_URL; default: OIDC discovery)")

    token_cmd = commands.add_parser("token", help="print a token the local issuer signed")
    token_cmd.add_argument("--sub", required=True, help="the user id (sub claim)")
    token_cmd.add_argument("--email", help="an email claim")
    token_cmd.add_argument("--ttl", type=int, default=3600, help="seconds of validity (default 3600; negative: expired)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "migrate":
        migrate()
        print("database is at the latest schema", file=sys.stderr)
    elif args.command == "invoke":
        print(json.dumps(invoke(args.function, json.loads(args.event.read_text())), indent=2))
    elif args.command in ("cleanup", "reminders", "publish"):
        print(json.dumps(_run_job(args.command)))
    elif args.command == "openapi":
        from shared.openapi import build_openapi
        from shared.snapstart import disable_priming

        disable_priming()  # the document needs the apps, not their warm-up (nor its logs on stdout)
        print(json.dumps(build_openapi(), indent=2))
    elif args.command == "serve":
        from shared.local.gateway import serve

        return serve(args.host, args.port, issuer=args.issuer, audience=args.audience, jwks_url=args.jwks_url)
    elif args.command == "token":
        from shared.local.keys import mint_token

        print(mint_token(args.sub, email=args.email, ttl=args.ttl))
    return 0


if __name__ == "__main__":
    sys.exit(main())
