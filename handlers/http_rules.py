"""What both entrypoints' GraphQL views do alike with what a client sends over HTTP.

A mixin for Strawberry's HTTP views (the Lambda's and the local server's): a body that is
not UTF-8, not JSON, too deeply nested or not an object is HTTP 400 with a message saying so,
and a subscription sent over HTTP is HTTP 400 saying it needs a WebSocket. Light imports only:
the Lambda imports this on its cold path.
"""

from __future__ import annotations

import json
from typing import Any

from cross_web import HTTPException
from strawberry.exceptions import MissingQueryError
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType

SUBSCRIPTIONS_NEED_A_WEBSOCKET = (
    "Subscriptions need a WebSocket (graphql-transport-ws); over HTTP send queries and mutations."
)
NOT_AN_OBJECT = 'The request body must be a JSON object such as {"query": "{ gifts { id } }"}.'


class HttpRules:
    schema: Any

    def parse_json(self, data: str | bytes) -> Any:
        """The JSON of a request body (and of GET's variables and extensions): an object."""
        if isinstance(data, bytes):
            try:
                data = data.decode("utf-8")
            except UnicodeDecodeError as error:
                raise HTTPException(400, "The request body is not UTF-8.") from error
        try:
            value = json.loads(data)
        except (ValueError, RecursionError) as error:  # RecursionError: [[[[... nested deep
            raise HTTPException(400, "Unable to parse request body as JSON") from error
        if not isinstance(value, dict | list):  # a list is a batch: Strawberry refuses it
            raise HTTPException(400, NOT_AN_OBJECT)
        return value

    async def execute_single(
        self,
        request: Any,
        request_adapter: Any,
        sub_response: Any,
        context: Any,
        root_value: Any,
        request_data: Any,
    ) -> ExecutionResult:
        """Strawberry's, with queries over GET, queries and mutations over POST: never a
        subscription, which over plain HTTP would have nothing to stream its events on."""
        method = request_adapter.method
        allowed = {OperationType.QUERY}
        if method == "POST":
            allowed.add(OperationType.MUTATION)
        try:
            result: ExecutionResult = await self.schema.execute(
                request_data.query,
                root_value=root_value,
                variable_values=request_data.variables,
                context_value=context,
                operation_name=request_data.operation_name,
                allowed_operation_types=allowed,
                operation_extensions=request_data.extensions,
            )
        except CannotGetOperationTypeError as error:
            raise HTTPException(400, error.as_http_error_reason()) from error
        except InvalidOperationTypeError as error:
            if error.operation_type == OperationType.SUBSCRIPTION:
                raise HTTPException(400, SUBSCRIPTIONS_NEED_A_WEBSOCKET) from error
            raise HTTPException(400, error.as_http_error_reason(method)) from error
        except MissingQueryError as error:
            raise HTTPException(400, "No GraphQL query found in the request") from error
        return result
