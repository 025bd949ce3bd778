"""Identifiers, clocks and cursors shared by every repository."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from typing import Any

from infra import runtime

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_id(prefix: str) -> str:
    """A ULID with a type prefix: sorts by creation time (ms), 80 random bits after it."""
    source = runtime.current()
    value = (int(source.time() * 1000) << 80) | source.randbits(80)
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return f"{prefix}_{''.join(reversed(chars))}"


def now() -> datetime:
    return datetime.fromtimestamp(runtime.current().time(), UTC)


def epoch() -> int:
    """Whole seconds since the epoch (TTL attributes)."""
    return int(runtime.current().time())


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


class BadCursor(ValueError):
    pass


def encode_cursor(key: dict[str, Any]) -> str:
    raw = json.dumps(key, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, fields: tuple[str, ...]) -> dict[str, Any]:
    """The key a cursor stands for; BadCursor unless it has exactly `fields`, all strings."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        key = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError) as error:
        raise BadCursor(cursor) from error
    if not isinstance(key, dict) or set(key) != set(fields):
        raise BadCursor(cursor)
    if not all(isinstance(v, str) and 0 < len(v) <= 200 for v in key.values()):
        raise BadCursor(cursor)
    return key
