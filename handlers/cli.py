"""The `livecoins` command: serve, seed, token, export-schema."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from infra.config import Settings
from infra.services import Services

if TYPE_CHECKING:
    from infra.engine import LocalEngine


@contextlib.contextmanager
def local_services(settings: Settings) -> Iterator[tuple[Services, LocalEngine | None]]:
    """Services on the configured endpoint, or on the embedded engine started (and, on the
    way out, stopped: it saves its state) here."""
    from infra.engine import LocalEngine
    from infra.tables import ensure_tables

    engine = None
    if settings.dynamodb_endpoint is None:
        engine = LocalEngine(settings.engine_command, settings.data_dir)
        # The engine accepts any credentials; boto3 still wants some.
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "local")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "local")
        settings = dataclasses.replace(settings, dynamodb_endpoint=engine.start())
    try:
        services = Services.build(settings)
        created = ensure_tables(services.dynamo.client, settings)
        if created:
            logging.getLogger("livecoins").info("created tables %s", ", ".join(created))
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
    settings = Settings.from_env()
    with local_services(settings) as (services, engine):
        added = _seed(services)
        print(f"catalog: {added} default items added" if added else "catalog: already seeded")
        print(f"GraphiQL: http://{settings.host}:{settings.port}/graphql")
        # An engine that cannot be restarted stops the server as Ctrl-C would, then exits 1.
        app = make_app(services, engine, lambda: signal.raise_signal(signal.SIGTERM))
        serve_dynamodb_over_aiohttp(app, services)  # no worker thread per DynamoDB call
        web.run_app(app, host=settings.host, port=settings.port, print=None)
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
    """Start the local cloud, deploy template.yaml, print where things are, wait for Ctrl-C."""
    from infra.local_cloud import TRIAL_PARAMETERS, LocalCloud, build_bundle

    bundle = build_bundle(sys.executable)
    cloud = LocalCloud(Settings.from_env().engine_command)
    cloud.start()
    try:
        stack = cloud.deploy(bundle, parameters=TRIAL_PARAMETERS)
        cloud.seed_catalog(stack)
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
            "Sign users up with the app client (AWS CLI or any Cognito SDK, endpoint "
            f"{cloud.url}); Ctrl-C stops and removes everything.",
            flush=True,
        )
        stop = {signal.SIGINT, signal.SIGTERM}
        signal.pthread_sigmask(signal.SIG_BLOCK, stop)
        signal.sigwait(stop)
    finally:
        cloud.stop()


def cmd_token(args: argparse.Namespace) -> None:
    import jwt

    now = int(time.time())
    claims: dict[str, object] = {"sub": args.sub, "iat": now, "exp": now + args.hours * 3600}
    if args.birthdate:
        claims["birthdate"] = args.birthdate
    if args.name:
        claims["name"] = args.name
    if args.admin:
        claims["cognito:groups"] = ["admin"]
    print(jwt.encode(claims, Settings.from_env().jwt_secret, algorithm="HS256"))


def cmd_export_schema(args: argparse.Namespace) -> None:
    from strawberry.printer import print_schema

    from schema import schema

    sys.stdout.write(print_schema(schema) + "\n")


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="livecoins", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="run the local server with GraphiQL").set_defaults(
        run=cmd_serve
    )
    seed = commands.add_parser("seed", help="add the default catalog")
    seed.add_argument("--table", help="a deployed catalog table (AWS credentials from the env)")
    seed.set_defaults(run=cmd_seed)
    commands.add_parser(
        "cloud", help="start the local AWS cloud and deploy template.yaml into it"
    ).set_defaults(run=cmd_cloud)
    token = commands.add_parser("token", help="mint a local dev token (HS256)")
    token.add_argument("--sub", required=True)
    token.add_argument("--birthdate", help="YYYY-MM-DD; missing means not adult")
    token.add_argument("--name")
    token.add_argument("--admin", action="store_true")
    token.add_argument("--hours", type=int, default=24)
    token.set_defaults(run=cmd_token)
    commands.add_parser("export-schema", help="print the SDL").set_defaults(run=cmd_export_schema)
    args = parser.parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main()
