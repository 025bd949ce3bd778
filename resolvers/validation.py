"""Input limits from the contract's descriptions. Each failure names the input field.

Every id argument is checked here before any DynamoDB call: an id that cannot exist (empty,
too long, wrong alphabet or prefix) never becomes a key. Text that other people see (names,
titles) is NFC-normalized, refuses control and bidirectional-formatting characters, and is
counted in user-perceived characters (grapheme clusters), so emoji sequences count as one.
"""

from __future__ import annotations

import re
import unicodedata

from resolvers.errors import BadUserInput, InvalidInput

_IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9_\-:.]{1,64}")
_ID = re.compile(r"[A-Za-z0-9_\-:.]{1,64}")
# Ids the service mints (infra/ids.py new_id): a type prefix and a 26-character ULID.
_MINTED = re.compile(r"([a-z]{2,4})_[0-9A-HJKMNP-TV-Z]{26}")
# Account ids are the identity provider's `sub`. OIDC subs are at most 255 ASCII characters;
# this alphabet covers Cognito (UUIDs), Auth0 ("auth0|..."), Google (digits) and emails, and
# leaves out "#", the separator of every composite key built from a sub (ledger and earnings
# shards "<sub>#<kk>", idempotency "<sub>#<mutation>#<key>", "live#<sub>", "daily#<sub>#<day>",
# "<eventId>#<sub>"): no sub can then name another account's item.
ACCOUNT_ID = re.compile(r"[A-Za-z0-9_\-.:@|+=]{1,255}")
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


def is_minted_id(value: str, prefix: str) -> bool:
    """Whether `value` could be an id this service minted with `prefix` ("pur", "wdr", ...)."""
    match = _MINTED.fullmatch(value)
    return match is not None and match.group(1) == prefix


def is_account_id(value: str) -> bool:
    return bool(ACCOUNT_ID.fullmatch(value))


# Bidirectional formatting (marks, embeddings, overrides, isolates): they reorder what
# follows them, so a public name could make other text on the page read backwards.
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_REFUSED_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})  # controls, surrogates, separators


def _refused(char: str) -> bool:
    return char in _BIDI or unicodedata.category(char) in _REFUSED_CATEGORIES


def _hangul(code: int) -> str:
    """The Hangul_Syllable_Type of a code point ("" for none)."""
    if 0x1100 <= code <= 0x115F or 0xA960 <= code <= 0xA97C:
        return "L"
    if 0x1160 <= code <= 0x11A7 or 0xD7B0 <= code <= 0xD7C6:
        return "V"
    if 0x11A8 <= code <= 0x11FF or 0xD7CB <= code <= 0xD7FB:
        return "T"
    if 0xAC00 <= code <= 0xD7A3:
        return "LV" if (code - 0xAC00) % 28 == 0 else "LVT"
    return ""


_HANGUL_JOINS = {
    "L": {"L", "V", "LV", "LVT"},
    "LV": {"V", "T"},
    "V": {"V", "T"},
    "LVT": {"T"},
    "T": {"T"},
}


def _extends(char: str) -> bool:
    """Grapheme_Extend, ZWJ, emoji modifiers and tags: never start a cluster."""
    code = ord(char)
    return (
        unicodedata.category(char) in ("Mn", "Me", "Mc")
        or code in (0x200C, 0x200D)
        or 0x1F3FB <= code <= 0x1F3FF
        or 0xE0020 <= code <= 0xE007F
    )


def graphemes(value: str) -> list[str]:
    """User-perceived characters: extended grapheme clusters (Unicode UAX #29) for the text
    this service accepts (no controls), without the rare Prepend rule."""
    clusters: list[str] = []
    previous, regional = "", 0
    for char in value:
        code = ord(char)
        is_regional = 0x1F1E6 <= code <= 0x1F1FF
        joins = bool(clusters) and (
            _extends(char)
            or previous == "\u200d"
            or (is_regional and regional % 2 == 1)
            or _hangul(code) in _HANGUL_JOINS.get(_hangul(ord(previous)), ())
        )
        if joins:
            clusters[-1] += char
        else:
            clusters.append(char)
        regional = regional + 1 if is_regional else 0
        previous = char
    return clusters


def text(value: str, field: str, maximum: int) -> str:
    """Public text: NFC, trimmed, 1 to `maximum` user-perceived characters, no control or
    bidirectional-formatting characters."""
    trimmed = unicodedata.normalize("NFC", value).strip()
    if any(_refused(c) for c in trimmed):
        raise InvalidInput(
            f"{field} may not contain control or bidirectional formatting characters", field
        )
    # Code points are bounded too: a character can carry any number of combining marks.
    if not trimmed or len(trimmed) > 8 * maximum or len(graphemes(trimmed)) > maximum:
        raise InvalidInput(f"{field} must be 1 to {maximum} characters after trimming", field)
    return trimmed


def usable_text(value: object, maximum: int) -> str | None:
    """`value` as public text cut to `maximum` characters, or None when it is not usable
    (token claims, which the caller cannot be asked to fix)."""
    if not isinstance(value, str):
        return None
    cut = "".join(graphemes(unicodedata.normalize("NFC", value).strip()[: 8 * maximum])[:maximum])
    try:
        return text(cut, "name", maximum)
    except InvalidInput:
        return None


def int_range(value: int, field: str, low: int, high: int) -> int:
    if not low <= value <= high:
        raise InvalidInput(f"{field} must be between {low} and {high}", field=field)
    return value


def page_size(first: int | None) -> int:
    if first is None or not 1 <= first <= MAX_PAGE:
        raise BadUserInput(f"first must be between 1 and {MAX_PAGE}", field="first")
    return first
