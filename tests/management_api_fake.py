"""A local fake of API Gateway's management API (PostToConnection, DeleteConnection), answering
as AWS does: 200 with an empty body; 410 GoneException for a connection that is gone;
403 without a SigV4 Authorization; 413 over 128 KB; and, when asked, 429
LimitExceededException past a request rate. For the fan-out's tests and `make bench`.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

from aiohttp import web

MAX_MESSAGE = 128 * 1024


class ManagementApiFake:
    def __init__(self, gone: set[str] | None = None, rate: float | None = None) -> None:
        self.gone = gone if gone is not None else set()
        self.rate = rate  # requests a second before 429s (None: no limit)
        self.received: dict[str, list[bytes]] = defaultdict(list)
        self.closed: list[str] = []
        self.requests = 0
        self.keep = True  # False: count, do not keep the bodies (a benchmark's many posts)
        self._window = (0.0, 0)
        self.throttle_next = 0  # answer this many requests 429 first

    def app(self) -> web.Application:
        app = web.Application(client_max_size=2 * MAX_MESSAGE)
        app.router.add_post(r"/{stage:[^@]*}@connections/{connection}", self.post)
        app.router.add_delete(r"/{stage:[^@]*}@connections/{connection}", self.delete)
        return app

    def _refusal(self, request: web.Request) -> web.Response | None:
        self.requests += 1
        if not request.headers.get("Authorization", "").startswith("AWS4-HMAC-SHA256 "):
            return _error(403, "ForbiddenException", "Missing Authentication Token")
        if self.throttle_next:
            self.throttle_next -= 1
            return _error(429, "LimitExceededException", "Rate exceeded")
        if self.rate is not None:
            second, count = self._window
            now = int(time.monotonic())
            count = count + 1 if second == now else 1
            self._window = (now, count)
            if count > self.rate:
                return _error(429, "LimitExceededException", "Rate exceeded")
        return None

    async def post(self, request: web.Request) -> web.Response:
        refused = self._refusal(request)
        if refused is not None:
            return refused
        connection = request.match_info["connection"]
        body = await request.read()
        if connection in self.gone:
            return _error(410, "GoneException", None)
        if len(body) > MAX_MESSAGE:
            return _error(413, "PayloadTooLargeException", "Message too long")
        if self.keep:
            self.received[connection].append(body)
        else:
            self.received.setdefault(connection, [])
        return web.Response(status=200)

    async def delete(self, request: web.Request) -> web.Response:
        refused = self._refusal(request)
        if refused is not None:
            return refused
        connection = request.match_info["connection"]
        if connection in self.gone:
            return _error(410, "GoneException", None)
        self.gone.add(connection)
        self.closed.append(connection)
        return web.Response(status=204)


def _error(status: int, kind: str, message: Any) -> web.Response:
    return web.json_response(
        {"message": message}, status=status, headers={"x-amzn-ErrorType": kind}
    )


def main() -> None:
    """`python -m tests.management_api_fake PORT [DELAY_MS] [GONE_SUFFIX]`: the fake in its own
    process (a benchmark's), answering after DELAY_MS (an in-region round trip), connections
    whose id ends in GONE_SUFFIX gone, bodies counted, not kept."""
    import asyncio
    import sys

    port = int(sys.argv[1])
    delay = float(sys.argv[2]) / 1000 if len(sys.argv) > 2 else 0.0
    suffix = sys.argv[3] if len(sys.argv) > 3 else None
    fake = ManagementApiFake()
    fake.keep = False
    if suffix:
        fake.gone = _Suffix(suffix)  # type: ignore[assignment]
    app = fake.app()
    if delay:

        @web.middleware
        async def round_trip(request: web.Request, handler: Any) -> web.StreamResponse:
            await asyncio.sleep(delay)
            response: web.StreamResponse = await handler(request)
            return response

        app.middlewares.append(round_trip)

    async def count(request: web.Request) -> web.Response:
        return web.json_response({"requests": fake.requests})

    app.router.add_get("/count", count)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


class _Suffix:
    """Connections whose id ends in a suffix: a set for `in`."""

    def __init__(self, suffix: str) -> None:
        self.suffix = suffix

    def __contains__(self, connection: object) -> bool:
        return isinstance(connection, str) and connection.endswith(self.suffix)

    def add(self, connection: str) -> None:
        pass


if __name__ == "__main__":
    main()
