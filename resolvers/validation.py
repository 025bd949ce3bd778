"""Input limits from the contract's descriptions. Each failure names the input field."""

from __future__ import annotations

import re

from resolvers.errors import BadUserInput, InvalidInput

_IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9_\-:.]{1,64}")
_ID = re.compile(r"[A-Za-z0-9_\-:.]{1,64}")
MAX_PAGE = 100


def idempotency_key(value: str) -> str:
    if not _IDEMPOTENCY_KEY.fullmatch(value):
        raise InvalidInput(
            "idempotencyKey must be 1 to 64 characters of A-Z a-z 0-9 _ - : .",
            field="idempotencyKey",
        )
    return value


def identifier(value: str, field: str) -> str:
    if not _ID.fullmatch(value):
        raise InvalidInput(f"{field} is not a valid id", field=field)
    return value


def is_id(value: str) -> bool:
    """Whether `value` could be an id at all (lookups answer None/NotFound when not)."""
    return bool(_ID.fullmatch(value))


def text(value: str, field: str, maximum: int) -> str:
    trimmed = value.strip()
    if not 1 <= len(trimmed) <= maximum:
        raise InvalidInput(f"{field} must be 1 to {maximum} characters after trimming", field)
    return trimmed


def int_range(value: int, field: str, low: int, high: int) -> int:
    if not low <= value <= high:
        raise InvalidInput(f"{field} must be between {low} and {high}", field=field)
    return value


def page_size(first: int | None) -> int:
    if first is None or not 1 <= first <= MAX_PAGE:
        raise BadUserInput(f"first must be between 1 and {MAX_PAGE}", field="first")
    return first
