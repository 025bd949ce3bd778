"""Who is calling: verified token claims turned into an Identity.

Both entrypoints verify the token (API Gateway's JWT authorizer in AWS, PyJWT locally) and
hand the claims here; nothing in this module trusts an unverified token.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from resolvers import validation

ADULT_AGE = 18


def parse_birthdate(value: Any) -> date | None:
    """A YYYY-MM-DD birthdate, or None when missing or malformed."""
    if not isinstance(value, str) or len(value) != 10:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


def is_adult(birthdate: str | None, today: date) -> bool:
    born = parse_birthdate(birthdate)
    if born is None or born.year > date.max.year - ADULT_AGE:  # no 18th birthday before 9999
        return False
    try:
        coming_of_age = born.replace(year=born.year + ADULT_AGE)
    except ValueError:  # born on 29 February: adult on 1 March
        coming_of_age = date(born.year + ADULT_AGE, 3, 1)
    return today >= coming_of_age


def parse_groups(value: Any) -> frozenset[str]:
    """cognito:groups as a list, or as the HTTP API's flattened string "[admin user]"."""
    if isinstance(value, list | tuple):
        return frozenset(str(v) for v in value)
    if isinstance(value, str):
        return frozenset(value.strip("[]").replace(",", " ").split())
    return frozenset()


def default_display_name(sub: str) -> str:
    return "user_" + hashlib.sha256(sub.encode()).hexdigest()[:8]


@dataclass(frozen=True)
class Identity:
    sub: str
    birthdate: str | None
    name: str | None
    groups: frozenset[str]

    @property
    def is_admin(self) -> bool:
        return "admin" in self.groups

    def is_adult(self, today: date) -> bool:
        return is_adult(self.birthdate, today)

    @property
    def initial_display_name(self) -> str:
        """The token's name claim under updateProfile's rules (cut to 50 characters), or a
        default when it has none usable (control or bidirectional characters included)."""
        return validation.usable_text(self.name, 50) or default_display_name(self.sub)

    @classmethod
    def from_claims(cls, claims: Mapping[str, Any]) -> Identity | None:
        """None (the token is refused) unless `sub` is in the account id alphabet: every key
        of an account is built from its sub, so a sub must not be able to name another's."""
        sub = claims.get("sub")
        if not isinstance(sub, str) or not validation.is_account_id(sub):
            return None
        birthdate = claims.get("birthdate")
        name = claims.get("name")
        return cls(
            sub=sub,
            birthdate=birthdate if parse_birthdate(birthdate) else None,
            name=name if isinstance(name, str) else None,
            groups=parse_groups(claims.get("cognito:groups")),
        )
