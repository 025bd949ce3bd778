"""What one GraphQL document may ask for, checked after parsing and before validation.

Two numbers, from one linear walk of the document (each fragment walked once):

- **fields**: the fields the document selects, each fragment spread counted as the fields of
  its fragment, over every operation and fragment definition. Validation compares fields
  that share a response name pairwise (OverlappingFieldsCanBeMerged), so its CPU grows with
  the square of this; the cap keeps validation cheap (README "Limits" has the figures).
- **cost**: an estimate of the executed operation's work before it runs: each field costs 1,
  or `READ_COST` if it reads DynamoDB on its own for each parent (`READS`: a Query per stream
  for `topGifters`, ...; the rest are batched per request by DataLoaders), and a list
  multiplies the cost of what is inside it by its size: its `first` argument (the literal,
  the variable's value, or the schema default), or for lists without `first` the size in
  `LIST_SIZES`; introspection lists count as many as this schema has at most.

A document over either limit is refused with one error (extensions.code QUERY_TOO_COMPLEX)
before validation and execution: nothing is read, nothing is written. Introspection-only
documents (where introspection is on: the local server) have limits of their own, set by
GraphiQL's full introspection query, since they read no data.

`CachedValidation` replaces Strawberry's ValidationCache: repeated documents skip validation,
and on the local server a large document is validated in a worker thread, so its CPU does not
stall the event loop that serves every other client.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Mapping
from concurrent.futures import Executor
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLField,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLUnionType,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    VariableNode,
    get_introspection_query,
    get_named_type,
    get_nullable_type,
    parse,
    validate,
)
from graphql.type.introspection import SchemaMetaFieldDef, TypeMetaFieldDef
from strawberry.extensions import SchemaExtension

from infra.lru import Lru
from resolvers.validation import MAX_PAGE

MAX_FIELDS = 200
DEFAULT_MAX_COST = 3_000
READ_COST = 20
READS = frozenset(
    {
        ("Query", "liveStreams"),
        ("LiveStream", "topGifters"),
        ("LiveStream", "gifts"),
        ("Video", "gifts"),
        ("Account", "transactions"),
        ("Account", "withdrawals"),
        ("Account", "earnings"),
        ("Account", "payoutAccount"),  # may read the account from the payouts processor
    }
)
# GraphiQL's introspection query selects 453 fields; introspection reads no data.
MAX_INTROSPECTION_FIELDS = 500
CODE = "QUERY_TOO_COMPLEX"
INTROSPECTION_ROOTS = frozenset({"__schema", "__type", "__typename"})

# Lists without a `first` argument: how many items they hold at most (or are assumed to).
# Every list field of the schema needs an entry (tests/test_hostile_limits.py checks), so a
# new one is costed on purpose. A connection's `edges` is sized by its field's `first`.
CATALOG_SIZE = 30
LIST_SIZES: dict[tuple[str, str], int] = {
    ("Query", "coinPackages"): CATALOG_SIZE,
    ("Query", "gifts"): CATALOG_SIZE,
    ("CoinPackage", "storeProducts"): 2,  # one product id per store at most
    ("PayoutAccount", "requirementsDue"): 50,  # what Stripe still needs: a few, at most dozens
    ("TransactionConnection", "edges"): 1,
    ("WithdrawalConnection", "edges"): 1,
    ("LiveStreamConnection", "edges"): 1,
    ("GiftTransferConnection", "edges"): 1,
    # a digest's ranking head and largest gifts (resolvers/feed.py: 10 and 5)
    ("StreamDigest", "topGifters"): 10,
    ("StreamDigest", "highlights"): 5,
}


def introspection_sizes(schema: GraphQLSchema) -> dict[tuple[str, str], int]:
    """The most items each introspection list holds in this schema."""
    types = list(schema.type_map.values())

    def most(attribute: str) -> int:
        return max((len(getattr(t, attribute, None) or ()) for t in types), default=0)

    fields = [f for t in types for f in (getattr(t, "fields", None) or {}).values()]
    return {
        ("__Schema", "types"): len(types),
        ("__Schema", "directives"): len(schema.directives),
        ("__Type", "fields"): most("fields"),
        ("__Type", "interfaces"): most("interfaces"),
        ("__Type", "possibleTypes"): max(
            (
                len(schema.get_possible_types(t))
                for t in types
                if isinstance(t, GraphQLInterfaceType | GraphQLUnionType)
            ),
            default=0,
        ),
        ("__Type", "enumValues"): most("values"),
        ("__Type", "inputFields"): max(
            (len(t.fields) for t in types if isinstance(t, GraphQLInputObjectType)), default=0
        ),
        ("__Field", "args"): max((len(getattr(f, "args", {})) for f in fields), default=0),
        ("__Directive", "args"): max((len(d.args) for d in schema.directives), default=0),
        ("__Directive", "locations"): max((len(d.locations) for d in schema.directives), default=0),
    }


class _Walk:
    """One document's field count and cost; fragments are walked once each (memoized), a
    fragment cycle counts as nothing (validation refuses it)."""

    def __init__(
        self,
        schema: GraphQLSchema,
        sizes: Mapping[tuple[str, str], int],
        document: DocumentNode,
        variables: Mapping[str, Any],
    ) -> None:
        self.schema, self.sizes, self.variables = schema, sizes, variables
        self.fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        self._fields: dict[str, int] = {}
        self._costs: dict[str, int] = {}
        self._defaults: dict[str, Any] = {}

    def fields(self, selection_set: SelectionSetNode | None) -> int:
        total = 0
        for selection in selection_set.selections if selection_set else ():
            if isinstance(selection, FieldNode):
                total += 1 + self.fields(selection.selection_set)
            elif isinstance(selection, InlineFragmentNode):
                total += self.fields(selection.selection_set)
            elif isinstance(selection, FragmentSpreadNode):
                total += self._fragment_fields(selection.name.value)
        return total

    def _fragment_fields(self, name: str) -> int:
        if name not in self._fields:
            self._fields[name] = 0  # a cycle back here counts as nothing
            fragment = self.fragments.get(name)
            self._fields[name] = self.fields(fragment.selection_set) if fragment else 0
        return self._fields[name]

    def cost(self, selection_set: SelectionSetNode | None, parent: GraphQLNamedType | None) -> int:
        total = 0
        for selection in selection_set.selections if selection_set else ():
            if isinstance(selection, FieldNode):
                total += self._field_cost(selection, parent)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                inner = self.schema.get_type(condition.name.value) if condition else parent
                total += self.cost(selection.selection_set, inner)
            elif isinstance(selection, FragmentSpreadNode):
                total += self._fragment_cost(selection.name.value)
        return total

    def _fragment_cost(self, name: str) -> int:
        if name not in self._costs:
            self._costs[name] = 0
            fragment = self.fragments.get(name)
            if fragment is not None:
                condition = self.schema.get_type(fragment.type_condition.name.value)
                self._costs[name] = self.cost(fragment.selection_set, condition)
        return self._costs[name]

    def _field_cost(self, node: FieldNode, parent: GraphQLNamedType | None) -> int:
        definition = self._definition(node.name.value, parent)
        if definition is None or parent is None:
            return 1  # unknown: validation refuses it
        output = get_nullable_type(definition.type)
        inner = get_named_type(output)
        own = READ_COST if (parent.name, node.name.value) in READS else 1
        below = self.cost(node.selection_set, inner) if node.selection_set else 0
        if "first" in definition.args or isinstance(output, GraphQLList):
            return own + self._size(node, parent.name, definition) * max(below, 1)
        return own + below

    def _definition(self, name: str, parent: GraphQLNamedType | None) -> GraphQLField | None:
        if name == "__schema" and parent is self.schema.query_type:
            return SchemaMetaFieldDef
        if name == "__type" and parent is self.schema.query_type:
            return TypeMetaFieldDef
        if isinstance(parent, GraphQLObjectType | GraphQLInterfaceType):
            return parent.fields.get(name)
        return None

    def _size(self, node: FieldNode, parent: str, definition: GraphQLField) -> int:
        """How many items a list field returns at most."""
        if "first" not in definition.args:
            return self.sizes.get((parent, node.name.value), MAX_PAGE)
        value: Any = definition.args["first"].default_value
        for argument in node.arguments or ():
            if argument.name.value == "first":
                given = argument.value
                if isinstance(given, IntValueNode):
                    value = int(given.value)
                elif isinstance(given, VariableNode):
                    name = given.name.value
                    value = self.variables.get(name, self._defaults.get(name))
                else:
                    value = None
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_PAGE:
            return value
        return MAX_PAGE  # missing or out of range: execution refuses it, count the most

    def operation_cost(self, operation: OperationDefinitionNode) -> int:
        self._defaults = {
            v.variable.name.value: int(v.default_value.value)
            for v in operation.variable_definitions or ()
            if isinstance(v.default_value, IntValueNode)
        }
        self._costs.clear()
        root = self.schema.get_root_type(operation.operation)
        return self.cost(operation.selection_set, root)


def _operations(document: DocumentNode) -> Iterator[OperationDefinitionNode]:
    return (d for d in document.definitions if isinstance(d, OperationDefinitionNode))


def measure(
    schema: GraphQLSchema,
    sizes: Mapping[tuple[str, str], int],
    document: DocumentNode,
    operation_name: str | None = None,
    variables: Mapping[str, Any] | None = None,
) -> tuple[int, int]:
    """(fields, cost) of a parsed document; the cost of the operation that would run (the
    most costly one if the name picks none)."""
    walk = _Walk(schema, sizes, document, variables or {})
    fields = sum(
        walk.fields(d.selection_set)
        for d in document.definitions
        if isinstance(d, OperationDefinitionNode | FragmentDefinitionNode)
    )
    operations = list(_operations(document))
    chosen = [o for o in operations if o.name and o.name.value == operation_name] or operations
    cost = max((walk.operation_cost(o) for o in chosen), default=0)
    return fields, cost


def is_introspection(document: DocumentNode) -> bool:
    """Whether every operation of the document asks only about the schema."""
    operations = list(_operations(document))
    return bool(operations) and all(
        isinstance(s, FieldNode) and s.name.value in INTROSPECTION_ROOTS
        for o in operations
        for s in o.selection_set.selections
    )


class Budget:
    """The limits for one schema: list sizes, and the introspection budget (the cost of the
    fullest introspection query GraphiQL sends)."""

    def __init__(self, schema: GraphQLSchema) -> None:
        self.sizes = {**introspection_sizes(schema), **LIST_SIZES}
        full = get_introspection_query(
            descriptions=True,
            specified_by_url=True,
            directive_is_repeatable=True,
            schema_description=True,
            input_value_deprecation=True,
        )
        self.introspection_cost = measure(schema, self.sizes, parse(full))[1]

    def refusal(
        self, document: DocumentNode, operation: str | None, variables: Any, max_cost: int
    ) -> GraphQLError | None:
        fields, cost = measure(self.schema_of, self.sizes, document, operation, variables)
        if is_introspection(document):
            return refusal(fields, cost, MAX_INTROSPECTION_FIELDS, self.introspection_cost)
        return refusal(fields, cost, MAX_FIELDS, max_cost)

    schema_of: GraphQLSchema


def refusal(fields: int, cost: int, max_fields: int, max_cost: int) -> GraphQLError | None:
    if fields > max_fields:
        message = f"This document selects {fields} fields; the limit is {max_fields}."
    elif cost > max_cost:
        message = (
            f"This query could cost {cost}; the limit is {max_cost}. Ask for smaller pages "
            "(`first`) or fewer nested lists."
        )
    else:
        return None
    return GraphQLError(message, extensions={"code": CODE, "fields": fields, "cost": cost})


_budgets: dict[int, Budget] = {}


def budget(schema: GraphQLSchema) -> Budget:
    found = _budgets.get(id(schema))
    if found is None:
        found = _budgets[id(schema)] = Budget(schema)
        found.schema_of = schema
    return found


class DocumentLimits(SchemaExtension):
    """Refuses a document over the field or cost limit after parsing, before validation
    (listed before CachedValidation) and execution."""

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        if document is not None:
            max_cost = context.context.services.settings.max_query_cost
            # The verdict depends on the text, the operation and the integer variables only.
            ints = tuple(
                sorted((k, v) for k, v in (context.variables or {}).items() if type(v) is int)
            )
            key = (context.query or "", context.operation_name, ints, max_cost)
            verdict = _verdicts.get(key)
            if verdict is None:
                verdict = (
                    budget(context.schema._schema).refusal(
                        document, context.operation_name, context.variables, max_cost
                    ),
                )
                _verdicts.put(key, verdict)
            if verdict[0] is not None:  # the answer; validation and execution are skipped
                context.pre_execution_errors = [verdict[0]]
        yield


_verdicts: Lru[tuple[Any, ...], tuple[GraphQLError | None]] = Lru(256)


# Documents with more fields than this are validated off the event loop where a pool is set.
OFF_LOOP_FIELDS = 40
_validated: Lru[tuple[str, tuple[Any, ...]], list[GraphQLError]] = Lru(256)


class CachedValidation(SchemaExtension):
    """Validation, remembered per document text and rule set (256 documents). `pool` (set by
    the local server) validates large documents in a worker thread."""

    pool: Executor | None = None

    async def on_validate(self) -> AsyncIterator[None]:
        context = self.execution_context
        if context.pre_execution_errors is not None:  # refused by DocumentLimits
            yield
            return
        rules = tuple(context.validation_rules)
        key = (context.query or "", rules)
        errors = _validated.get(key)
        if errors is None and context.graphql_document is not None:
            schema, document = context.schema._schema, context.graphql_document
            pool = CachedValidation.pool
            if pool is not None and _fields(document) > OFF_LOOP_FIELDS:
                loop = asyncio.get_running_loop()
                errors = await loop.run_in_executor(pool, validate, schema, document, rules)
            else:
                errors = validate(schema, document, rules)
            _validated.put(key, errors)
        context.pre_execution_errors = errors
        yield


def _fields(document: DocumentNode) -> int:
    walk = _Walk(GraphQLSchema(), {}, document, {})
    return sum(
        walk.fields(d.selection_set)
        for d in document.definitions
        if isinstance(d, OperationDefinitionNode | FragmentDefinitionNode)
    )
