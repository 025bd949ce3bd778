"""Configuration: one typed object, read from the environment once per process."""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field

# Logical table names, as in template.yaml without the "Table" suffix.
TABLES = (
    "accounts",
    "ledger",
    "idempotency",
    "catalog",
    "purchases",
    "streams",
    "videos",
    "transfers",
    "rankings",
    "earnings",
    "events",
    "withdrawals",
    "connections",
    "subscriptions",
)

LOCAL_JWT_SECRET = "livecoins-local-secret"  # noqa: S105 - documented local-only default
# PyJWT warns that the documented local default is shorter than 32 bytes; set a longer
# LIVECOINS_JWT_SECRET for anything shared.
warnings.filterwarnings("ignore", message="The HMAC key is 22 bytes long")


@dataclass(frozen=True)
class Settings:
    region: str = "us-east-1"
    # Any DynamoDB-compatible endpoint (the local engine, real AWS when None).
    dynamodb_endpoint: str | None = None
    table_prefix: str = "livecoins-"
    table_overrides: Mapping[str, str] = field(default_factory=dict)
    jwt_secret: str = LOCAL_JWT_SECRET
    cors_origins: tuple[str, ...] = ()
    max_body_bytes: int = 64 * 1024
    catalog_cache_seconds: float = 30.0
    idempotency_ttl_seconds: int = 24 * 3600
    # Hot gift targets (a stream, a video, a creator's earnings and ledger) are spread over
    # this many items; see docs/scaling.md. Changing it needs a data migration.
    gift_shards: int = 32
    # The stream-wide gift list and ranking indexes are spread over this many index
    # partitions. 1 keeps each of those reads to one Query; a superstar deployment sets 32 and
    # pays one Query per index partition (docs/scaling.md). Fixed per stream at its start.
    index_shards: int = 1
    # Faults: how long one request may spend retrying DynamoDB (throttles, conflicts, 500s,
    # timeouts) before it answers TRY_AGAIN, and each call's own timeouts. The sum stays well
    # under the Lambda function's 15 s timeout (template.yaml).
    retry_budget_seconds: float = 4.0
    dynamodb_connect_timeout: float = 1.0
    dynamodb_read_timeout: float = 3.0
    # Per-process cache of a stream's coinsReceived, topGifters and first page of gifts, so
    # 100,000 viewers polling one stream do not read its partitions 100,000 times a second
    # (docs/scaling.md). 0: exact at every moment (the local default); template.yaml sets 1.
    stream_cache_seconds: float = 0.0
    # Stream and video facts that never change (creator, shard count) cached per process.
    target_cache_size: int = 10_000
    # The economy: a diamond is worth diamond_cents_per_2 / 2 US cents (rounded down, never in
    # the creator's favour); withdrawals are at least / at most (per UTC day) these many cents.
    diamond_cents_per_2: int = 1
    minimum_withdrawal_cents: int = 1_000
    # Diamonds from gifts and event entries become withdrawable this long after they were
    # earned (a chargeback can still reverse them until then; infra/earnings.py). 0 locally;
    # template.yaml sets 7 days.
    earnings_hold_seconds: int = 0
    daily_withdrawal_limit_cents: int = 100_000
    payout_currency: str = "USD"
    # Hostile clients (README "Limits"): the GraphQL document limits (schema/limits.py) and
    # the local server's WebSocket and per-client limits.
    max_query_cost: int = 3_000
    # None: on for the local server (GraphiQL), off on the Lambda (README "Limits").
    introspection: bool | None = None
    ws_init_timeout_seconds: float = 10.0
    ws_max_operations: int = 20
    rate_limit_per_second: float = 200.0
    rate_limit_burst: float = 400.0
    # "sandbox" (approves tok_visa: local and test stacks only) or "none" (purchaseCoins
    # answers PAYMENTS_NOT_CONFIGURED). The local server defaults to sandbox, anything else to
    # none; a deployed stack sets it from template.yaml's PaymentProvider parameter.
    payment_provider: str = "none"
    # Stripe (LIVECOINS_PAYMENT_PROVIDER=stripe): the keys from the environment locally, or
    # on AWS from the Secrets Manager secret template.yaml names (never in parameters or logs);
    # the API address only for tests against a local fake.
    stripe_secret_key: str | None = field(default=None, repr=False)
    stripe_webhook_secret: str | None = field(default=None, repr=False)
    stripe_secret_arn: str | None = None
    stripe_api_base: str | None = None
    # The gift feed on AWS (handlers/gift_feed.py): the WebSocket API's management endpoint
    # (https://<api>.execute-api.<region>.amazonaws.com/<stage>, or the local cloud's), the
    # Cognito pool's issuer, app client and keys, and how many partitions each stream's
    # subscriber list spreads over (read in parallel by the fan-out).
    feed_endpoint: str | None = None
    token_issuer: str | None = None
    token_audience: str | None = None
    jwks_url: str | None = None
    feed_partitions: int = 4
    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: str = ".livecoins-data"
    engine_command: str = ".venv-engine/bin/ministack"

    def table(self, name: str) -> str:
        """The physical table name for a logical one (template.yaml resource without 'Table')."""
        if name not in TABLES:
            raise KeyError(name)
        return self.table_overrides.get(name) or f"{self.table_prefix}{name}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        overrides = {
            name: env[f"LIVECOINS_{name.upper()}_TABLE"]
            for name in TABLES
            if env.get(f"LIVECOINS_{name.upper()}_TABLE")
        }
        origins = tuple(
            o.strip() for o in env.get("LIVECOINS_CORS_ORIGINS", "").split(",") if o.strip()
        )
        return cls(
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
            dynamodb_endpoint=env.get("LIVECOINS_DYNAMODB_ENDPOINT") or None,
            table_prefix=env.get("LIVECOINS_TABLE_PREFIX", "livecoins-"),
            table_overrides=overrides,
            jwt_secret=env.get("LIVECOINS_JWT_SECRET", LOCAL_JWT_SECRET),
            cors_origins=origins,
            max_body_bytes=int(env.get("LIVECOINS_MAX_BODY_BYTES", 64 * 1024)),
            catalog_cache_seconds=float(env.get("LIVECOINS_CATALOG_CACHE_SECONDS", 30)),
            idempotency_ttl_seconds=int(env.get("LIVECOINS_IDEMPOTENCY_TTL_SECONDS", 24 * 3600)),
            retry_budget_seconds=float(env.get("LIVECOINS_RETRY_BUDGET_SECONDS", 4.0)),
            gift_shards=int(env.get("LIVECOINS_GIFT_SHARDS", 32)),
            index_shards=int(env.get("LIVECOINS_INDEX_SHARDS", 1)),
            stream_cache_seconds=float(env.get("LIVECOINS_STREAM_CACHE_SECONDS", 0)),
            diamond_cents_per_2=int(env.get("LIVECOINS_DIAMOND_CENTS_PER_2", 1)),
            minimum_withdrawal_cents=int(env.get("LIVECOINS_MINIMUM_WITHDRAWAL_CENTS", 1_000)),
            earnings_hold_seconds=int(env.get("LIVECOINS_EARNINGS_HOLD_SECONDS", 0)),
            daily_withdrawal_limit_cents=int(
                env.get("LIVECOINS_DAILY_WITHDRAWAL_LIMIT_CENTS", 100_000)
            ),
            max_query_cost=int(env.get("LIVECOINS_MAX_QUERY_COST", 3_000)),
            introspection=_flag(env.get("LIVECOINS_INTROSPECTION")),
            ws_init_timeout_seconds=float(env.get("LIVECOINS_WS_INIT_TIMEOUT_SECONDS", 10)),
            ws_max_operations=int(env.get("LIVECOINS_WS_MAX_OPERATIONS", 20)),
            rate_limit_per_second=float(env.get("LIVECOINS_RATE_LIMIT_PER_SECOND", 200)),
            rate_limit_burst=float(env.get("LIVECOINS_RATE_LIMIT_BURST", 400)),
            payment_provider=env.get("LIVECOINS_PAYMENT_PROVIDER", "none"),
            stripe_secret_key=env.get("LIVECOINS_STRIPE_SECRET_KEY") or None,
            stripe_webhook_secret=env.get("LIVECOINS_STRIPE_WEBHOOK_SECRET") or None,
            stripe_secret_arn=env.get("LIVECOINS_STRIPE_SECRET_ARN") or None,
            stripe_api_base=env.get("LIVECOINS_STRIPE_API_BASE") or None,
            feed_endpoint=env.get("LIVECOINS_FEED_ENDPOINT") or None,
            token_issuer=env.get("LIVECOINS_TOKEN_ISSUER") or None,
            token_audience=env.get("LIVECOINS_TOKEN_AUDIENCE") or None,
            jwks_url=env.get("LIVECOINS_JWKS_URL") or None,
            feed_partitions=int(env.get("LIVECOINS_FEED_PARTITIONS", 4)),
            host=env.get("HOST", "127.0.0.1"),
            port=int(env.get("PORT", 8000)),
            data_dir=env.get("LIVECOINS_DATA_DIR", ".livecoins-data"),
            engine_command=env.get("LIVECOINS_ENGINE_COMMAND", ".venv-engine/bin/ministack"),
        )


def _flag(value: str | None) -> bool | None:
    if value is None or not value.strip():
        return None
    return value.strip().lower() in ("1", "true", "yes", "on")
