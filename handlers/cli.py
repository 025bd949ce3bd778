"""The `livecoins` command: serve, seed, cloud, token, audit, store-catch-up, export-schema."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import os
import re
import signal
import sys
import time
from collections.abc import Iterator
from datetime import date
from typing import TYPE_CHECKING

from infra.config import ConfigError, Settings

if TYPE_CHECKING:
    from infra.engine import LocalEngine
    from infra.services import Services

# What the server accepts as a token's sub (README "Input"): no '#', the key separator.
SUB = re.compile(r"[A-Za-z0-9_\-.:@|+=]{1,255}")


def progress(message: str) -> None:
    """Start-up progress, shown at once, on stderr: stdout keeps each command's result."""
    print(message, file=sys.stderr, flush=True)


class Timer:
    def __init__(self) -> None:
        self.start = time.monotonic()

    def __str__(self) -> str:
        return f"{time.monotonic() - self.start:.1f} s"


@contextlib.contextmanager
def local_services(settings: Settings) -> Iterator[tuple[Services, LocalEngine | None]]:
    """Services on the configured endpoint, or on the embedded engine started (and, on the
    way out, stopped: it saves its state) here."""
    from infra.engine import LocalEngine
    from infra.services import Services
    from infra.tables import ensure_tables

    engine = None
    if settings.dynamodb_endpoint is None:
        if not os.path.exists(settings.engine_command):
            sys.exit(
                f"livecoins: the local DynamoDB engine is not installed ({settings.engine_command}"
                " is missing): run `make serve`, which installs it"
            )
        engine = LocalEngine(settings.engine_command, settings.data_dir)
        # The engine accepts any credentials; boto3 still wants some.
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "local")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "local")
        timer = Timer()
        progress(f"starting the local DynamoDB engine (data in {settings.data_dir}/) ...")
        settings = dataclasses.replace(settings, dynamodb_endpoint=engine.start())
        progress(f"  engine up on {settings.dynamodb_endpoint} in {timer}")
    else:
        progress(f"using the DynamoDB endpoint {settings.dynamodb_endpoint}")
    try:
        services = Services.build(settings)
        created = ensure_tables(services.dynamo.client, settings)
        if created:
            progress(f"  created the {len(created)} tables (prefix {settings.table_prefix})")
        yield services, engine
    finally:
        if engine:
            engine.stop()


def _seed(services: Services) -> int:
    from resolvers.catalog import seed

    return asyncio.run(seed(services.catalog))


def cmd_serve(args: argparse.Namespace) -> None:
    from aiohttp import web

    from handlers.server import make_app
    from infra.dynamo_http import serve_dynamodb_over_aiohttp

    os.environ.setdefault("LIVECOINS_PAYMENT_PROVIDER", "sandbox")  # local walkthroughs
    os.environ.setdefault("LIVECOINS_PAYOUTS_PROVIDER", "sandbox")  # onboards at once
    settings = Settings.from_env()
    if not settings.payout_origins:  # onboarding sends creators back to this server's app
        own = tuple(f"http://{host}:{settings.port}" for host in ("127.0.0.1", "localhost"))
        settings = dataclasses.replace(settings, payout_return_origins=own)
    timer = Timer()
    with local_services(settings) as (services, engine):
        added = _seed(services)
        progress(f"  catalog: {added} default items added" if added else "  catalog: seeded")
        # An engine that cannot be restarted stops the server as Ctrl-C would, then exits 1.
        app = make_app(
            services, engine, lambda: signal.raise_signal(signal.SIGTERM), dev_tokens=True
        )
        serve_dynamodb_over_aiohttp(app, services)  # no worker thread per DynamoDB call
        base = f"http://{settings.host}:{settings.port}"

        def ready(_: str) -> None:  # aiohttp calls it once the server is listening
            progress(
                f"ready in {timer} (Ctrl-C stops)\n"
                f"  GraphiQL:   {base}/graphql\n"
                f"  the app:    {base}/app/\n"
                f"  health:     {base}/health"
            )

        web.run_app(app, host=settings.host, port=settings.port, print=ready, access_log=None)
    if engine is not None and engine.lost:
        sys.exit("the local DynamoDB engine stopped and could not be restarted")


def cmd_seed(args: argparse.Namespace) -> None:
    if args.table:  # a deployed stack's catalog table (CatalogTableName output), on AWS
        from infra.local_cloud import seed_catalog_table

        print(f"{seed_catalog_table(args.table)} default catalog items added to {args.table}")
        return
    with local_services(Settings.from_env()) as (services, _):
        print(f"{_seed(services)} default catalog items added")


def cmd_cloud(args: argparse.Namespace) -> None:
    """Start the local cloud, deploy template.yaml, warm the functions, print where things
    are, wait for Ctrl-C; then stop within seconds and say so."""
    from infra.local_cloud import STOP_GRACE_SECONDS, TRIAL_PARAMETERS, LocalCloud, build_bundle

    bundle = build_bundle(sys.executable)
    cloud = LocalCloud(Settings.from_env().engine_command)
    stop = {signal.SIGINT, signal.SIGTERM}
    try:
        timer = Timer()
        progress("starting the local cloud (ministack) ...")
        cloud.start()
        progress(f"  up on {cloud.url} in {timer}; deploying template.yaml ...")
        stack = cloud.deploy(bundle, parameters=TRIAL_PARAMETERS)
        cloud.seed_catalog(stack)
        timer = Timer()
        progress(
            f"  deployed in {stack.timings['deploy']:.1f} s; warming the four functions "
            "(each one's first start takes seconds) ..."
        )
        cloud.warm(stack)
        progress(f"  warm in {timer}: the first request is answered as fast as the next")
        outputs = stack.outputs
        rows = [
            ("local cloud", f"{cloud.url} (ministack, IAM enforced)"),
            (
                "stack",
                f"{stack.name}, deployed in {stack.timings['deploy']:.1f} s "
                "(sandbox payments on, deletion protection off)",
            ),
            ("GraphQL, signed in", stack.graphql_url),
            ("GraphQL, public", stack.public_graphql_url),
            ("health", stack.health_url),
            ("gift feed (ws)", stack.gift_feed_url),
            ("user pool", outputs["UserPoolId"]),
            ("app client", outputs["UserPoolClientId"]),
        ]
        for label, value in rows:
            print(f"{label + ':':<20}{value}")
        print(
            'Sign users up with the AWS CLI (README, "Try the AWS shape locally"): '
            f"export AWS_ENDPOINT_URL={cloud.url}; Ctrl-C stops and removes everything.",
            flush=True,
        )
        signal.pthread_sigmask(signal.SIG_BLOCK, stop)
        signal.sigwait(stop)
    except KeyboardInterrupt:  # Ctrl-C while starting
        pass
    finally:
        signal.pthread_sigmask(signal.SIG_BLOCK, stop)  # a second Ctrl-C cannot cut it short
        timer = Timer()
        progress(f"stopping the local cloud (at most {STOP_GRACE_SECONDS:.0f} s) ...")
        cloud.stop()
        progress(f"  stopped in {timer}; its files are being removed in the background")


def _sub(value: str) -> str:
    if not SUB.fullmatch(value):
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a usable sub: 1 to 255 of A-Z a-z 0-9 _ - . : @ | + = (no '#')"
        )
    return value


def _birthdate(value: str) -> str:
    try:
        date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a date as YYYY-MM-DD") from None
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a date as YYYY-MM-DD")
    return value


def _hours(value: str) -> float:
    try:
        hours = float(value)
    except ValueError:
        hours = 0
    if not 0 < hours <= 24 * 366:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of hours from 0 to 8784")
    return hours


def cmd_token(args: argparse.Namespace) -> None:
    from handlers.dev_tokens import mint_token

    secret = Settings.from_env().jwt_secret
    print(mint_token(secret, args.sub, args.birthdate, args.name, args.admin, args.hours))


def cmd_audit(args: argparse.Namespace) -> None:
    from datetime import UTC, date, datetime

    from resolvers.audit import audit

    def day(text: str | None) -> int | None:
        if text is None:
            return None
        return int(datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC).timestamp())

    with local_services(Settings.from_env()) as (services, _):
        # the sandbox keeps its payments in the memory of the process that took them
        compare = services.payments is not None and services.payments.name != "sandbox"
        transfers = services.payouts is not None and services.payouts.name != "sandbox"
        report = asyncio.run(
            audit(
                services,
                day(args.since),
                day(args.until),
                args.segments,
                processor=compare,
                store_reads=args.store_reads,
                transfers=transfers,
            )
        )
    for finding in report.findings:
        print(f"{finding.kind}\t{finding.reference}\t{finding.detail}")
    for purchase in report.open:
        print(f"open\t{purchase}\ta refund or dispute is being applied", file=sys.stderr)
    counted = ", ".join(f"{n} {t}" for t, n in sorted(report.counts.items()))
    print(f"audited {counted}", file=sys.stderr)
    if report.window:
        since, until = (datetime.fromtimestamp(t, UTC).isoformat() for t in report.window)
        print(
            f"the processor's charges, refunds and disputes from {since} to {until}",
            file=sys.stderr,
        )
    else:
        print(
            "the processor was not compared (no processor, or the local sandbox)", file=sys.stderr
        )
    if report.store_window:
        since, until = (datetime.fromtimestamp(t, UTC).isoformat() for t in report.store_window)
        compared = report.counts["store purchases compared"]
        skipped = report.counts["store purchases not compared"]
        print(
            f"the stores' purchases and refunds from {since} to {until}: {compared} store "
            f"purchases compared, {skipped} not (--store-reads)",
            file=sys.stderr,
        )
    if not transfers:
        print(
            "transfers were not compared (no payouts processor, or the local sandbox)",
            file=sys.stderr,
        )
    print(
        f"platform's loss: {report.lost_diamonds} diamonds owed by creators, "
        f"{report.lost_coins} spent coins with nothing left to reverse",
        file=sys.stderr,
    )
    print(f"{len(report.findings)} differences", file=sys.stderr)
    sys.exit(1 if report.findings else 0)


def cmd_store_catch_up(args: argparse.Namespace) -> None:
    import json
    from datetime import UTC, datetime

    from resolvers.store_purchases import catch_up

    def day(text: str | None) -> datetime | None:
        if text is None:
            return None
        return datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC)

    with local_services(Settings.from_env()) as (services, _):
        if services.app_store is None and services.play_store is None:
            sys.exit('livecoins: no store is configured (README "Real money: the stores")')
        report = asyncio.run(catch_up(services, day(args.since), day(args.until)))
    print(json.dumps(report.summary(), indent=2))
    for failure in report.failed:
        print(f"left for the next run\t{failure}", file=sys.stderr)
    sys.exit(1 if report.failed else 0)


def cmd_export_schema(args: argparse.Namespace) -> None:
    from strawberry.printer import print_schema

    from schema import schema

    sys.stdout.write(print_schema(schema) + "\n")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="livecoins",
        description="LiveCoins: the local server, its data and dev tokens. Settings come from "
        'environment variables (README, "Configuration").',
    )
    commands = top.add_subparsers(
        dest="command", required=True, metavar="COMMAND", help="what to do (COMMAND --help: more)"
    )
    serve = commands.add_parser(
        "serve",
        help="run the local server: GraphiQL, the app and the API on the embedded engine",
        description="Run the local server on HOST:PORT (127.0.0.1:8000): GraphiQL at /graphql, "
        "the reference app at /app/, on the embedded DynamoDB engine (or "
        "LIVECOINS_DYNAMODB_ENDPOINT), with sandbox payments.",
    )
    serve.set_defaults(run=cmd_serve)
    seed = commands.add_parser(
        "seed",
        help="add the default catalog (never overwrites edits)",
        description="Add the default coin packages and gifts to the local tables, or to a "
        "deployed stack's catalog table with --table. Never overwrites admin edits.",
    )
    seed.add_argument(
        "--table",
        metavar="NAME",
        help="a deployed stack's catalog table (its CatalogTableName output); AWS credentials "
        "and region come from the environment, as for the AWS CLI",
    )
    seed.set_defaults(run=cmd_seed)
    commands.add_parser(
        "cloud",
        help="start the local AWS cloud and deploy template.yaml into it",
        description="Start the local AWS cloud, deploy template.yaml into it, seed the catalog "
        "and print the URLs and user pool ids; Ctrl-C stops and removes everything.",
    ).set_defaults(run=cmd_cloud)
    token = commands.add_parser(
        "token",
        help="mint a local dev token (HS256, LIVECOINS_JWT_SECRET)",
        description="Print a dev token for the local server: an HS256 JWT with the claims a "
        "Cognito ID token carries, signed with LIVECOINS_JWT_SECRET. Send it as "
        "'Authorization: Bearer <token>'.",
    )
    token.add_argument(
        "--sub",
        required=True,
        type=_sub,
        help="the user's id (sub claim); a new sub is a new account",
    )
    token.add_argument(
        "--birthdate",
        type=_birthdate,
        metavar="YYYY-MM-DD",
        help="birthdate claim; 18 or older may buy, gift, go live and withdraw (missing: not "
        "an adult)",
    )
    token.add_argument("--name", help="display name (name claim), shown to other users")
    token.add_argument(
        "--admin", action="store_true", help="in the admin group: may settle, refund, edit"
    )
    token.add_argument(
        "--hours", type=_hours, default=24, help="how long the token is valid (default 24)"
    )
    token.set_defaults(run=cmd_token)
    commands.add_parser(
        "export-schema",
        help="print the GraphQL schema (SDL)",
        description="Print the API's schema as SDL (what `make schema` writes to "
        "schema/schema.graphql).",
    ).set_defaults(run=cmd_export_schema)
    check = commands.add_parser(
        "audit",
        help="prove every coin and diamond, against the processor too (exit 1 on a difference)",
        description="Read every money table and the payment processor's charges, refunds and "
        "disputes of a period, and list every difference: ledger and balances, coins and "
        "diamonds conserved, each purchase's money back against its charge, reversals, owed "
        "diamonds, restrictions, refunds stuck; then the platform's loss. Without --since, "
        "from where the last clean audit ended.",
    )
    check.add_argument("--since", help="first UTC day, YYYY-MM-DD")
    check.add_argument("--until", help="the day after the last, YYYY-MM-DD")
    check.add_argument("--segments", type=int, default=4, help="parallel Scan segments a table")
    check.add_argument(
        "--store-reads",
        type=int,
        default=1000,
        metavar="N",
        help="at most N store purchases of the period read from their store (the newest; "
        "default 1000)",
    )
    check.set_defaults(run=cmd_audit)

    catch = commands.add_parser(
        "store-catch-up",
        help="follow the stores' refunds of a period, consume what was left (the schedule's job)",
        description="Read Apple's refund notifications (REFUND, REFUND_REVERSED; every "
        "environment) and Google's voided purchases of a period, and bring each purchase they "
        "name to its store's state, as its notification would have; then consume the Google "
        "purchases credited and left unconsumed. Without --since, from where the last complete "
        "run ended. Prints what it did as JSON; exit 1 when something is left for the next run.",
    )
    catch.add_argument("--since", help="first UTC day, YYYY-MM-DD")
    catch.add_argument("--until", help="the day after the last, YYYY-MM-DD (default: now)")
    catch.set_defaults(run=cmd_store_catch_up)
    return top


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # botocore logs "Found credentials in environment variables" at INFO on every start: the
    # engine's placeholder credentials, which reads as if real AWS ones were found.
    for noisy in ("botocore", "boto3", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    args = parser().parse_args(argv)
    try:
        args.run(args)
    except ConfigError as error:
        sys.exit(f"livecoins: {error}")


if __name__ == "__main__":
    main()
