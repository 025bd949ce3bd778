"""The GraphQL schema: every domain's types merged into one Strawberry Schema."""

from __future__ import annotations

import strawberry
from graphql import GraphQLError
from strawberry.extensions import (
    AddValidationRules,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    ValidationCache,
)
from strawberry.tools import merge_types
from strawberry.types import ExecutionContext

from schema.accounts import AccountMutations, AccountQueries
from schema.catalog import CatalogMutations, CatalogQueries
from schema.errors import ErrorPolicy
from schema.events import EventMutations, EventQueries
from schema.gifts import GiftMutations, GiftSubscriptions
from schema.purchases import PurchaseMutations, RefundMutations
from schema.streams import StreamMutations, StreamQueries
from schema.videos import VideoMutations, VideoQueries
from schema.withdrawals import WithdrawalMutations

Query = merge_types(
    "Query", (AccountQueries, CatalogQueries, StreamQueries, VideoQueries, EventQueries)
)
Mutation = merge_types(
    "Mutation",
    (
        AccountMutations,
        PurchaseMutations,
        GiftMutations,
        StreamMutations,
        VideoMutations,
        EventMutations,
        WithdrawalMutations,
        RefundMutations,
        CatalogMutations,
    ),
)

# The limiters build a new rule class per instance, and ValidationCache keys on the rules: built
# per request they would make every validation a cache miss. Build the rules once.
_LIMIT_RULES = [
    *QueryDepthLimiter(max_depth=10).validation_rules,
    *MaxAliasesLimiter(max_alias_count=20).validation_rules,
]


class QueryLimits(AddValidationRules):
    def __init__(self) -> None:
        super().__init__(_LIMIT_RULES)


class LiveCoinsSchema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        """Strawberry logs every error with its stack, a caller's bad query included; the error
        policy (schema/errors.py) logs the unexpected ones, once, and nothing else."""


schema = LiveCoinsSchema(
    query=Query,
    mutation=Mutation,
    subscription=merge_types("Subscription", (GiftSubscriptions,)),
    extensions=[
        ErrorPolicy,
        # Repeated documents skip parsing and validation (about 12x less CPU per request).
        lambda: ParserCache(maxsize=256),
        lambda: ValidationCache(maxsize=256),
        QueryLimits,
        lambda: MaxTokensLimiter(max_token_count=2000),
    ],
)
