"""Configuration: one typed object, read from the environment once per process."""

from __future__ import annotations

import math
import os
import re
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
    # Payouts (creators paid by transfer, README "Paying creators"): "sandbox" (onboards at
    # once: local and test stacks only), "stripe" (Stripe Connect) or "none" (withdrawals are
    # paid by hand outside LiveCoins). The API key is the platform's Stripe key unless the
    # Connect secret names its own; the payouts webhook endpoint has a signing secret of its
    # own. Onboarding sends creators back only to these origins (none: the CORS origins); a
    # not-enabled account is read again from the processor when its state is older than
    # payout_refresh_seconds.
    payouts_provider: str = "none"
    stripe_connect_secret_key: str | None = field(default=None, repr=False)
    stripe_connect_webhook_secret: str | None = field(default=None, repr=False)
    stripe_connect_secret_arn: str | None = None
    payout_return_origins: tuple[str, ...] = ()
    payout_country: str = "US"
    payout_refresh_seconds: float = 15.0
    # The mobile stores (infra/stores.py). App Store: on when the bundle id is set; the app's
    # Apple id (required in production); "production" accepts Production and Sandbox
    # transactions (Sandbox ones only for store_test_accounts), "sandbox" Sandbox only (a test
    # stack); Apple's root certificates as files (DER or PEM, from apple.com/certificateauthority);
    # the library's online (OCSP) certificate checks; the in-app purchase key from the
    # environment locally or the Secrets Manager secret template.yaml names; the API hosts only
    # for tests against a local fake.
    app_store_bundle_id: str | None = None
    app_store_app_apple_id: int | None = None
    app_store_environment: str = "production"
    app_store_root_certificates: tuple[str, ...] = ()
    app_store_online_checks: bool = False
    app_store_key_id: str | None = None
    app_store_issuer_id: str | None = None
    app_store_private_key: str | None = field(default=None, repr=False)
    app_store_secret_arn: str | None = None
    app_store_api_base: str | None = None
    app_store_sandbox_api_base: str | None = None
    # Google Play: on when the package name is set; the service account's key JSON from the
    # environment locally or the Secrets Manager secret (its token_uri is where tokens come
    # from); the Pub/Sub push subscription's audience and service account email (real-time
    # developer notifications); the API and certificate addresses only for tests.
    play_package_name: str | None = None
    play_service_account: str | None = field(default=None, repr=False)
    play_secret_arn: str | None = None
    play_api_base: str | None = None
    play_push_audience: str | None = None
    play_push_service_account: str | None = None
    play_certs_url: str | None = None
    # Accounts allowed to redeem purchases that move no real money (Apple's Sandbox, Google's
    # test, promo and rewarded purchases): App Review's and testers' accounts.
    store_test_accounts: frozenset[str] = frozenset()
    # How long one store call may wait for an answer (reads are retried by the caller).
    store_timeout_seconds: float = 8.0
    # The gift feed on AWS (handlers/gift_feed.py): the WebSocket API's management endpoint
    # (https://<api>.execute-api.<region>.amazonaws.com/<stage>, or the local cloud's), the
    # Cognito pool's issuer, app client and keys, and the queue that hands each (stream,
    # subscriber partition) its posts (template.yaml sets them).
    feed_endpoint: str | None = None
    token_issuer: str | None = None
    token_audience: str | None = None
    jwks_url: str | None = None
    feed_dispatch_queue: str | None = None
    # Both entrypoints (docs/scaling.md): a stream's giftFeed subscribers past this many are
    # refused with FEED_FULL (never its creator) and follow streamDigest instead; a stream's
    # streamDigest subscribers spread over one more partition (doubling) per this many.
    feed_max_subscribers: int = 100
    feed_partition_size: int = 500
    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: str = ".livecoins-data"
    engine_command: str = ".venv-engine/bin/ministack"

    @property
    def payout_origins(self) -> tuple[str, ...]:
        """Where payout onboarding may send a creator back: the configured origins, else the
        browsers' (CORS) origins."""
        return self.payout_return_origins or self.cors_origins

    def table(self, name: str) -> str:
        """The physical table name for a logical one (template.yaml resource without 'Table')."""
        if name not in TABLES:
            raise KeyError(name)
        return self.table_overrides.get(name) or f"{self.table_prefix}{name}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """The settings the environment gives; raises ConfigError naming every variable whose
        value is not allowed (its value, and what is), before anything starts."""
        env = os.environ if env is None else env
        read = _Reader(env)
        overrides = {
            name: env[f"LIVECOINS_{name.upper()}_TABLE"]
            for name in TABLES
            if env.get(f"LIVECOINS_{name.upper()}_TABLE")
        }
        origins = tuple(
            o.strip() for o in env.get("LIVECOINS_CORS_ORIGINS", "").split(",") if o.strip()
        )
        settings = cls(
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
            dynamodb_endpoint=read.url("LIVECOINS_DYNAMODB_ENDPOINT"),
            table_prefix=read.text("LIVECOINS_TABLE_PREFIX", "livecoins-", pattern=_TABLE_NAME),
            table_overrides=overrides,
            jwt_secret=read.text("LIVECOINS_JWT_SECRET", LOCAL_JWT_SECRET),
            cors_origins=origins,
            max_body_bytes=read.integer("LIVECOINS_MAX_BODY_BYTES", 64 * 1024, low=1024),
            catalog_cache_seconds=read.number("LIVECOINS_CATALOG_CACHE_SECONDS", 30),
            idempotency_ttl_seconds=read.integer(
                "LIVECOINS_IDEMPOTENCY_TTL_SECONDS", 24 * 3600, low=24 * 3600
            ),
            retry_budget_seconds=read.number("LIVECOINS_RETRY_BUDGET_SECONDS", 4.0, low=0.1),
            gift_shards=read.integer("LIVECOINS_GIFT_SHARDS", 32, low=1, high=1024),
            index_shards=read.integer("LIVECOINS_INDEX_SHARDS", 1, low=1, high=100),
            stream_cache_seconds=read.number("LIVECOINS_STREAM_CACHE_SECONDS", 0),
            diamond_cents_per_2=read.integer("LIVECOINS_DIAMOND_CENTS_PER_2", 1, low=1),
            minimum_withdrawal_cents=read.integer(
                "LIVECOINS_MINIMUM_WITHDRAWAL_CENTS", 1_000, low=1
            ),
            earnings_hold_seconds=read.integer("LIVECOINS_EARNINGS_HOLD_SECONDS", 0),
            daily_withdrawal_limit_cents=read.integer(
                "LIVECOINS_DAILY_WITHDRAWAL_LIMIT_CENTS", 100_000, low=1
            ),
            max_query_cost=read.integer("LIVECOINS_MAX_QUERY_COST", 3_000, low=1),
            introspection=read.flag("LIVECOINS_INTROSPECTION"),
            ws_init_timeout_seconds=read.number("LIVECOINS_WS_INIT_TIMEOUT_SECONDS", 10, low=0.1),
            ws_max_operations=read.integer("LIVECOINS_WS_MAX_OPERATIONS", 20, low=1),
            rate_limit_per_second=read.number("LIVECOINS_RATE_LIMIT_PER_SECOND", 200),
            rate_limit_burst=read.number("LIVECOINS_RATE_LIMIT_BURST", 400),
            payment_provider=read.choice(
                "LIVECOINS_PAYMENT_PROVIDER", "none", _payment_providers()
            ),
            stripe_secret_key=read.text("LIVECOINS_STRIPE_SECRET_KEY", "") or None,
            stripe_webhook_secret=read.text("LIVECOINS_STRIPE_WEBHOOK_SECRET", "") or None,
            stripe_secret_arn=read.text("LIVECOINS_STRIPE_SECRET_ARN", "") or None,
            stripe_api_base=read.url("LIVECOINS_STRIPE_API_BASE"),
            payouts_provider=read.choice(
                "LIVECOINS_PAYOUTS_PROVIDER", "none", _payouts_providers()
            ),
            stripe_connect_secret_key=read.text("LIVECOINS_STRIPE_CONNECT_SECRET_KEY", "") or None,
            stripe_connect_webhook_secret=read.text("LIVECOINS_STRIPE_CONNECT_WEBHOOK_SECRET", "")
            or None,
            stripe_connect_secret_arn=read.text("LIVECOINS_STRIPE_CONNECT_SECRET_ARN", "") or None,
            payout_return_origins=read.origins("LIVECOINS_PAYOUT_RETURN_ORIGINS"),
            payout_country=read.text("LIVECOINS_PAYOUT_COUNTRY", "US", pattern=_COUNTRY),
            payout_refresh_seconds=read.number("LIVECOINS_PAYOUT_REFRESH_SECONDS", 15.0),
            app_store_bundle_id=read.text("LIVECOINS_APP_STORE_BUNDLE_ID", "") or None,
            app_store_app_apple_id=read.integer("LIVECOINS_APP_STORE_APP_APPLE_ID", 0, low=1)
            or None,
            app_store_environment=read.choice(
                "LIVECOINS_APP_STORE_ENVIRONMENT", "production", ("production", "sandbox")
            ),
            app_store_root_certificates=read.files("LIVECOINS_APP_STORE_ROOT_CERTIFICATES"),
            app_store_online_checks=bool(read.flag("LIVECOINS_APP_STORE_ONLINE_CHECKS")),
            app_store_key_id=read.text("LIVECOINS_APP_STORE_KEY_ID", "") or None,
            app_store_issuer_id=read.text("LIVECOINS_APP_STORE_ISSUER_ID", "") or None,
            app_store_private_key=read.text("LIVECOINS_APP_STORE_PRIVATE_KEY", "") or None,
            app_store_secret_arn=read.text("LIVECOINS_APP_STORE_SECRET_ARN", "") or None,
            app_store_api_base=read.url("LIVECOINS_APP_STORE_API_BASE"),
            app_store_sandbox_api_base=read.url("LIVECOINS_APP_STORE_SANDBOX_API_BASE"),
            play_package_name=read.text("LIVECOINS_PLAY_PACKAGE_NAME", "") or None,
            play_service_account=read.text("LIVECOINS_PLAY_SERVICE_ACCOUNT", "") or None,
            play_secret_arn=read.text("LIVECOINS_PLAY_SECRET_ARN", "") or None,
            play_api_base=read.url("LIVECOINS_PLAY_API_BASE"),
            play_push_audience=read.text("LIVECOINS_PLAY_PUSH_AUDIENCE", "") or None,
            play_push_service_account=read.text("LIVECOINS_PLAY_PUSH_SERVICE_ACCOUNT", "") or None,
            play_certs_url=read.url("LIVECOINS_PLAY_CERTS_URL"),
            store_test_accounts=frozenset(read.names("LIVECOINS_STORE_TEST_ACCOUNTS")),
            store_timeout_seconds=read.number("LIVECOINS_STORE_TIMEOUT_SECONDS", 8.0, low=0.1),
            feed_endpoint=read.url("LIVECOINS_FEED_ENDPOINT"),
            token_issuer=env.get("LIVECOINS_TOKEN_ISSUER") or None,
            token_audience=env.get("LIVECOINS_TOKEN_AUDIENCE") or None,
            jwks_url=read.url("LIVECOINS_JWKS_URL"),
            feed_dispatch_queue=read.text("LIVECOINS_FEED_DISPATCH_QUEUE", "") or None,
            feed_max_subscribers=read.integer("LIVECOINS_FEED_MAX_SUBSCRIBERS", 100, low=1),
            feed_partition_size=read.integer(
                "LIVECOINS_FEED_PARTITION_SIZE", 500, low=1, high=100_000
            ),
            host=read.text("HOST", "127.0.0.1"),
            port=read.integer("PORT", 8000, low=1, high=65535),
            data_dir=read.text("LIVECOINS_DATA_DIR", ".livecoins-data"),
            engine_command=read.text("LIVECOINS_ENGINE_COMMAND", ".venv-engine/bin/ministack"),
        )
        read.stores(settings)
        read.payouts(settings)
        if read.problems:
            raise ConfigError(read.problems)
        return settings


class ConfigError(ValueError):
    """Environment variables whose values are not allowed; each problem names the variable,
    its value and what is allowed."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))

    def __str__(self) -> str:
        lines = ['configuration error (environment variables, README "Configuration"):']
        return "\n  ".join([*lines, *self.problems])


_TABLE_NAME = re.compile(r"[A-Za-z0-9_.-]*")
_FLAGS = {"1": True, "true": True, "yes": True, "on": True}
_FLAGS |= {"0": False, "false": False, "no": False, "off": False}


def _payment_providers() -> tuple[str, ...]:
    from infra.payments import PROVIDERS

    return PROVIDERS


def _payouts_providers() -> tuple[str, ...]:
    from infra.payouts import PROVIDERS

    return PROVIDERS


_COUNTRY = re.compile(r"[A-Z]{2}")
_LOOPBACK = ("127.0.0.1", "localhost", "[::1]")


def origin_of(url: str) -> str | None:
    """The origin (scheme://host[:port], lower case) of an absolute http(s) URL that a
    browser may be sent to: https, or http on a loopback host (a local server); None for
    anything else (other schemes, credentials in the URL, no host, spaces or controls)."""
    from urllib.parse import urlsplit

    if not url or any(c.isspace() or ord(c) < 32 or c == "\\" for c in url):
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("https", "http") or not host or parts.username or parts.password:
        return None
    shown = f"[{host}]" if ":" in host else host
    if parts.scheme == "http" and shown not in _LOOPBACK:
        return None
    return f"{parts.scheme}://{shown}" + (f":{port}" if port is not None else "")


class _Reader:
    """Reads variables, collecting a problem for each bad value instead of stopping at one."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[str] = []

    def _raw(self, name: str) -> str | None:
        value = self.env.get(name)
        return None if value is None or not value.strip() else value.strip()

    def _bad(self, name: str, value: str, allowed: str) -> None:
        self.problems.append(f"{name}={value!r}: {allowed}")

    @staticmethod
    def _bounds(low: float | None, high: float | None) -> str:
        if low is not None and high is not None:
            return f" from {low:g} to {high:g}"
        if low is not None:
            return f" of at least {low:g}"
        return ""

    def integer(self, name: str, default: int, low: int = 0, high: int | None = None) -> int:
        value = self._raw(name)
        if value is None:
            return default
        allowed = f"must be a whole number{self._bounds(low, high)} (default {default})"
        try:
            number = int(value.replace("_", ""))
        except ValueError:
            self._bad(name, value, allowed)
            return default
        if number < low or (high is not None and number > high):
            self._bad(name, value, allowed)
            return default
        return number

    def number(self, name: str, default: float, low: float = 0) -> float:
        value = self._raw(name)
        if value is None:
            return float(default)
        allowed = f"must be a number{self._bounds(low, None)} (default {default:g})"
        try:
            number = float(value)
        except ValueError:
            self._bad(name, value, allowed)
            return float(default)
        if not math.isfinite(number) or number < low:
            self._bad(name, value, allowed)
            return float(default)
        return number

    def flag(self, name: str) -> bool | None:
        value = self._raw(name)
        if value is None:
            return None
        if value.lower() not in _FLAGS:
            self._bad(name, value, "must be 1 or 0 (also true/false, yes/no, on/off)")
            return None
        return _FLAGS[value.lower()]

    def choice(self, name: str, default: str, allowed: tuple[str, ...]) -> str:
        value = self._raw(name)
        if value is None:
            return default
        if value not in allowed:
            self._bad(name, value, f"must be one of {', '.join(allowed)}")
            return default
        return value

    def url(self, name: str) -> str | None:
        value = self._raw(name)
        if value is None:
            return None
        if not re.match(r"^(https?|wss?)://[^\s/]+", value):
            self._bad(name, value, "must be a URL such as http://127.0.0.1:4566")
            return None
        return value

    def origins(self, name: str) -> tuple[str, ...]:
        """Browser origins: https://host[:port], or http:// on a loopback host."""
        found = []
        for value in self.names(name):
            origin = origin_of(value)
            if origin is None or origin != value.rstrip("/").lower():
                self._bad(
                    name,
                    value,
                    "must be origins such as https://app.example.com (http only for "
                    "127.0.0.1 or localhost), comma-separated",
                )
                return ()
            found.append(origin)
        return tuple(found)

    def names(self, name: str) -> tuple[str, ...]:
        value = self._raw(name)
        return tuple(n.strip() for n in value.split(",") if n.strip()) if value else ()

    def files(self, name: str) -> tuple[str, ...]:
        paths = self.names(name)
        missing = [path for path in paths if not os.path.isfile(path)]
        if missing:
            self._bad(name, ",".join(paths), f"must name readable files ({', '.join(missing)}?)")
            return ()
        return paths

    def stores(self, settings: Settings) -> None:
        """What a store needs once it is on (its bundle id or package name is set)."""
        if settings.app_store_bundle_id:
            if not settings.app_store_root_certificates:
                self.problems.append(
                    "LIVECOINS_APP_STORE_ROOT_CERTIFICATES: required with "
                    "LIVECOINS_APP_STORE_BUNDLE_ID (Apple's root certificate files, "
                    "e.g. AppleRootCA-G3.cer)"
                )
            if settings.app_store_environment == "production" and not (
                settings.app_store_app_apple_id
            ):
                self.problems.append(
                    "LIVECOINS_APP_STORE_APP_APPLE_ID: required in production (the app's "
                    "Apple id, App Store Connect > App Information)"
                )
        if settings.play_package_name and not (
            settings.play_service_account or settings.play_secret_arn
        ):
            self.problems.append(
                "LIVECOINS_PLAY_SERVICE_ACCOUNT or LIVECOINS_PLAY_SECRET_ARN: required with "
                "LIVECOINS_PLAY_PACKAGE_NAME (the service account's key JSON)"
            )
        if bool(settings.play_push_audience) != bool(settings.play_push_service_account):
            self.problems.append(
                "LIVECOINS_PLAY_PUSH_AUDIENCE and LIVECOINS_PLAY_PUSH_SERVICE_ACCOUNT: set both "
                "or neither (the push subscription's audience and service account)"
            )

    def payouts(self, settings: Settings) -> None:
        """What Stripe payouts need: the platform's key and the payouts endpoint's secret."""
        if settings.payouts_provider != "stripe":
            return
        if not (
            settings.stripe_connect_secret_key
            or settings.stripe_secret_key
            or settings.stripe_connect_secret_arn
            or settings.stripe_secret_arn
        ):
            self.problems.append(
                "LIVECOINS_STRIPE_SECRET_KEY (or LIVECOINS_STRIPE_CONNECT_SECRET_KEY, or their "
                "_ARN forms on AWS): required with LIVECOINS_PAYOUTS_PROVIDER=stripe"
            )
        if not (settings.stripe_connect_webhook_secret or settings.stripe_connect_secret_arn):
            self.problems.append(
                "LIVECOINS_STRIPE_CONNECT_WEBHOOK_SECRET (or LIVECOINS_STRIPE_CONNECT_SECRET_ARN "
                "on AWS): required with LIVECOINS_PAYOUTS_PROVIDER=stripe (the payouts webhook "
                "endpoint's signing secret)"
            )

    def text(self, name: str, default: str, pattern: re.Pattern[str] | None = None) -> str:
        value = self.env.get(name)
        if value is None:
            return default
        if pattern is not None and not pattern.fullmatch(value):
            self._bad(name, value, f"must match {pattern.pattern}")
            return default
        return value
