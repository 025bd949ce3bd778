"""Per-request context: the caller's identity, the process's services, per-request loaders."""

from __future__ import annotations

from datetime import date

from strawberry.dataloader import DataLoader

from infra.dynamo import Item
from infra.feed import FeedSource, GiftFeed
from infra.ids import now
from infra.services import Services
from infra.transfers import TABLE as TRANSFERS
from resolvers.errors import AgeRestricted, Forbidden, Unauthenticated
from resolvers.identity import Identity


class Context:
    """Created once per request, inside the running event loop (DataLoaders need it)."""

    introspection = True  # whether __schema and __type may be asked (the Lambda: by setting)

    def __init__(
        self, services: Services, identity: Identity | None, feed: FeedSource | None = None
    ) -> None:
        self.services = services
        self.identity = identity
        # giftFeed's source: the process's own feed unless the caller gives another.
        self.feed: FeedSource | GiftFeed = feed or services.feed
        self.users: DataLoader[str, Item | None] = DataLoader(load_fn=self._load_users)
        self.streams: DataLoader[str, Item | None] = DataLoader(load_fn=self._load_streams)
        self.videos: DataLoader[str, Item | None] = DataLoader(load_fn=self._load_videos)
        # the gift transfers of a history page (Transaction.transfer): one BatchGetItem
        self.transfers: DataLoader[str, Item | None] = DataLoader(load_fn=self._load_transfers)
        # (target id, shard count) -> coins gifted; one BatchGetItem for every target asked
        self.stream_coins: DataLoader[tuple[str, int], int] = DataLoader(
            load_fn=self._load_stream_coins
        )
        self.video_coins: DataLoader[tuple[str, int], int] = DataLoader(
            load_fn=self._load_video_coins
        )
        self._account: Item | None = None

    @property
    def today(self) -> date:
        return now().date()

    def require_identity(self) -> Identity:
        if self.identity is None:
            raise Unauthenticated("Sign in to use this field.")
        return self.identity

    def require_admin(self) -> Identity:
        identity = self.require_identity()
        if not identity.is_admin:
            raise Forbidden("Only admins may do this.")
        return identity

    def require_adult(self, action: str) -> Identity:
        identity = self.require_identity()
        if not identity.is_adult(self.today):
            raise AgeRestricted(f"You must be 18 or older to {action}.")
        return identity

    async def account(self) -> Item:
        """The caller's account: one GetItem; created on first sight, synced to the token."""
        if self._account is not None:
            return self._account
        identity = self.require_identity()
        accounts = self.services.accounts
        item = await accounts.get(identity.sub)
        if item is None:
            item = await accounts.create(
                identity.sub, identity.initial_display_name, identity.birthdate
            )
        elif item.get("birthdate") != identity.birthdate:
            # The identity provider is the authority on birthdates; keep the copy current so
            # rules about other accounts (gift recipients) can read it.
            await accounts.set_birthdate(identity.sub, identity.birthdate)
            item["birthdate"] = identity.birthdate
        self._account = item
        return item

    async def _load_users(self, ids: list[str]) -> list[Item | None]:
        found = await self.services.accounts.get_many(ids)
        return [found.get(i) for i in ids]

    async def _load_streams(self, ids: list[str]) -> list[Item | None]:
        found = await self.services.streams.get_many(ids)
        return [found.get(i) for i in ids]

    async def _load_videos(self, ids: list[str]) -> list[Item | None]:
        found = await self.services.videos.get_many(ids)
        return [found.get(i) for i in ids]

    async def _load_transfers(self, ids: list[str]) -> list[Item | None]:
        found = await self.services.dynamo.batch_get(TRANSFERS, [{"id": i} for i in ids])
        by_id = {i["id"]: i for i in found}
        return [by_id.get(i) for i in ids]

    async def _load_stream_coins(self, keys: list[tuple[str, int]]) -> list[int]:
        found = await self.services.streams.coins(keys)
        return [found[k[0]] for k in keys]

    async def _load_video_coins(self, keys: list[tuple[str, int]]) -> list[int]:
        found = await self.services.videos.coins(keys)
        return [found[k[0]] for k in keys]
