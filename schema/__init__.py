"""The GraphQL schema: every domain's types merged into one Strawberry Schema."""

from __future__ import annotations

from collections.abc import Iterator

import strawberry
from graphql import GraphQLError
from graphql.validation import NoSchemaIntrospectionCustomRule
from strawberry.extensions import (
    AddValidationRules,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    SchemaExtension,
)
from strawberry.tools import merge_types
from strawberry.types import ExecutionContext

from infra.dynamo import start_request
from schema.accounts import AccountMutations, AccountQueries, RestrictionMutations
from schema.catalog import CatalogMutations, CatalogQueries
from schema.errors import ErrorPolicy
from schema.events import EventMutations, EventQueries
from schema.feed import FeedSubscriptions
from schema.gifts import GiftMutations
from schema.limits import CachedValidation, DocumentLimits
from schema.purchases import PurchaseMutations, RefundMutations, StorePurchaseMutations
from schema.streams import StreamMutations, StreamQueries
from schema.videos import VideoMutations, VideoQueries
from schema.withdrawals import WithdrawalMutations, WithdrawalQueries

Query = merge_types(
    "Query",
    (
        AccountQueries,
        CatalogQueries,
        StreamQueries,
        VideoQueries,
        EventQueries,
        WithdrawalQueries,
    ),
)
Mutation = merge_types(
    "Mutation",
    (
        AccountMutations,
        StorePurchaseMutations,
        PurchaseMutations,
        GiftMutations,
        StreamMutations,
        VideoMutations,
        EventMutations,
        WithdrawalMutations,
        RefundMutations,
        CatalogMutations,
        RestrictionMutations,
    ),
)

MAX_DEPTH, MAX_ALIASES, MAX_TOKENS = 10, 20, 1000
# The limiters build a new rule class per instance, and the validation cache keys on the rules:
# built per request they would make every validation a cache miss. Build the rules once.
_LIMIT_RULES = [
    *QueryDepthLimiter(max_depth=MAX_DEPTH).validation_rules,
    *MaxAliasesLimiter(max_alias_count=MAX_ALIASES).validation_rules,
]
_NO_INTROSPECTION_RULES = [*_LIMIT_RULES, NoSchemaIntrospectionCustomRule]


class QueryLimits(AddValidationRules):
    """Depth and aliases; and no __schema or __type where introspection is off (README
    "Limits": off on the Lambda unless LIVECOINS_INTROSPECTION=1)."""

    def __init__(self) -> None:
        super().__init__(_LIMIT_RULES)

    def on_operation(self) -> Iterator[None]:
        if not getattr(self.execution_context.context, "introspection", True):
            self.validation_rules = _NO_INTROSPECTION_RULES
        yield from super().on_operation()


class RequestDeadline(SchemaExtension):
    """Every DynamoDB retry in one operation stops at one deadline (TRY_AGAIN after it), so a
    request ends well inside the Lambda function's timeout however busy DynamoDB is."""

    def on_operation(self) -> Iterator[None]:
        start_request(self.execution_context.context.services.settings.retry_budget_seconds)
        yield


class LiveCoinsSchema(strawberry.Schema):
    def _warn_for_federation_directives(self) -> None:
        """Strawberry imports its federation directives, a cold start's import, only to warn
        that a non-federated schema uses them; this one uses none (schema.graphql)."""

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        """Strawberry logs every error with its stack, a caller's bad query included; the error
        policy (schema/errors.py) logs the unexpected ones, once, and nothing else."""


schema = LiveCoinsSchema(
    query=Query,
    mutation=Mutation,
    subscription=merge_types("Subscription", (FeedSubscriptions,)),
    extensions=[
        ErrorPolicy,
        RequestDeadline,
        # Repeated documents skip parsing and validation (`make bench` has the ratio).
        lambda: ParserCache(maxsize=256),
        QueryLimits,
        DocumentLimits,  # fields and cost, before validation
        CachedValidation,
        lambda: MaxTokensLimiter(max_token_count=MAX_TOKENS),
    ],
)
