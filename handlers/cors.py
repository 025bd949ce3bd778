"""CORS headers for both entrypoints, from the configured origins."""

from __future__ import annotations

from collections.abc import Sequence

ALLOWED_HEADERS = "authorization, content-type"
ALLOWED_METHODS = "GET, POST, OPTIONS"


def cors_headers(
    origin: str | None, allowed: Sequence[str], preflight: bool = False
) -> dict[str, str]:
    """Headers that let `origin` read the response; none when it is not allowed."""
    if not origin or not allowed:
        return {}
    if "*" in allowed:
        allow = "*"
    elif origin in allowed:
        allow = origin
    else:
        return {}
    headers = {"Access-Control-Allow-Origin": allow, "Vary": "Origin"}
    if preflight:
        headers["Access-Control-Allow-Methods"] = ALLOWED_METHODS
        headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
        headers["Access-Control-Max-Age"] = "600"
    return headers
