"""The infrastructure a process needs, built once: one DynamoDB client and the repositories."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from infra.accounts import AccountsRepo
from infra.catalog import CatalogRepo
from infra.config import Settings
from infra.dynamo import Dynamo
from infra.earnings import EarningsRepo
from infra.events import EventsRepo
from infra.feed import GiftFeed
from infra.idempotency import IdempotencyRepo
from infra.ledger import LedgerRepo
from infra.payments import PaymentProvider, SandboxPaymentProvider, provider_for
from infra.payouts import PayoutProvider, payout_provider_for
from infra.purchases import PurchasesRepo
from infra.rankings import RankingsRepo
from infra.stores import app_store_from, play_store_from
from infra.streams import StreamsRepo
from infra.transfers import TransfersRepo
from infra.videos import VideosRepo
from infra.withdrawals import WithdrawalsRepo

if TYPE_CHECKING:
    from infra.app_store import AppStore
    from infra.play_store import PlayStore


@dataclass
class Services:
    settings: Settings
    dynamo: Dynamo
    # None: no provider configured, purchases are refused (infra.payments.provider_for).
    payments: PaymentProvider | None = field(default_factory=SandboxPaymentProvider)

    def __post_init__(self) -> None:
        self.accounts = AccountsRepo(self.dynamo)
        self.ledger = LedgerRepo(self.dynamo)
        self.idempotency = IdempotencyRepo(self.dynamo)
        self.catalog = CatalogRepo(self.dynamo)
        self.purchases = PurchasesRepo(self.dynamo)
        self.streams = StreamsRepo(self.dynamo)
        self.videos = VideosRepo(self.dynamo)
        self.transfers = TransfersRepo(self.dynamo)
        self.rankings = RankingsRepo(self.dynamo)
        self.earnings = EarningsRepo(self.dynamo)
        self.events = EventsRepo(self.dynamo)
        self.withdrawals = WithdrawalsRepo(self.dynamo)
        self.feed = GiftFeed()
        # Business counts since the last flush (CoinsPurchased, DiamondsWithdrawn, ...): the
        # Lambda handlers publish them as CloudWatch metrics after each invocation.
        self.metrics: Counter[str] = Counter()
        self._stores: dict[str, Any] = {}
        self._payouts: list[PayoutProvider | None] = []  # built on first use

    # The mobile stores, built on first use from the settings (None: not sold there): their
    # libraries, and their secrets, stay out of every process that never redeems or follows a
    # store purchase. Tests and the simulator set their own.
    @property
    def app_store(self) -> AppStore | None:
        if "app" not in self._stores:
            self._stores["app"] = app_store_from(self.settings)
        return self._stores["app"]

    @app_store.setter
    def app_store(self, store: AppStore | None) -> None:
        self._stores["app"] = store

    @property
    def play_store(self) -> PlayStore | None:
        if "play" not in self._stores:
            self._stores["play"] = play_store_from(self.settings)
        return self._stores["play"]

    @play_store.setter
    def play_store(self, store: PlayStore | None) -> None:
        self._stores["play"] = store

    # The payouts processor (infra/payouts.py), built on first use from the settings; None:
    # withdrawals are paid by hand. Its library and secret stay out of processes that never
    # pay a creator. Tests and the simulator set their own.
    @property
    def payouts(self) -> PayoutProvider | None:
        if not self._payouts:
            self._payouts.append(payout_provider_for(self.settings.payouts_provider, self.settings))
        return self._payouts[0]

    @payouts.setter
    def payouts(self, provider: PayoutProvider | None) -> None:
        self._payouts[:] = [provider]

    @classmethod
    def build(
        cls,
        settings: Settings,
        payments: PaymentProvider | None = None,
        *,
        takes_payments: bool = True,
    ) -> Services:
        """Services on `settings`, with `payments` or else the provider the settings name.

        `takes_payments=False` builds no provider at all: the functions that never take or
        refund a payment (the gift feed's, the payouts queue) must not read the processor's
        secret, which their IAM roles do not allow (template.yaml)."""
        dynamo = Dynamo(settings)
        if not takes_payments:
            services = cls(settings, dynamo, None)
            services.payouts = None
            return services
        if payments is None:
            return cls(settings, dynamo, provider_for(settings.payment_provider, settings))
        return cls(settings, dynamo, payments)
