"""Local dev tokens: HS256 JWTs with the claims a Cognito ID token carries (`livecoins token`,
and the local server's /dev/tokens for the app's sign-in picker). Never part of the Lambda."""

from __future__ import annotations

import time
from typing import Any

import jwt
from aiohttp import web
from aiohttp.typedefs import Handler

# The app's sign-in picker: (sub, name, birthdate, admin, what the user is for).
DEMO_USERS = (
    ("vic", "Vic", "1990-01-01", False, "viewer"),
    ("wen", "Wen", "1988-08-08", False, "viewer"),
    ("cora", "Cora", "1995-05-05", False, "creator"),
    ("root", "Root", "1980-01-01", True, "admin"),
    ("kid", "Kid", "2014-06-01", False, "under 18"),
)
LOOPBACK = ("127.0.0.1", "::1", "::ffff:127.0.0.1")


def user_claims(
    sub: str, birthdate: str | None = None, name: str | None = None, admin: bool = False
) -> dict[str, Any]:
    """The claims of a Cognito ID token that the API reads."""
    claims: dict[str, Any] = {"sub": sub}
    if birthdate:
        claims["birthdate"] = birthdate
    if name:
        claims["name"] = name
    if admin:
        claims["cognito:groups"] = ["admin"]
    return claims


def mint_token(
    secret: str,
    sub: str,
    birthdate: str | None = None,
    name: str | None = None,
    admin: bool = False,
    hours: float = 24,
) -> str:
    now = int(time.time())
    claims = {**user_claims(sub, birthdate, name, admin), "iat": now}
    claims["exp"] = now + int(hours * 3600)
    return jwt.encode(claims, secret, algorithm="HS256")


def dev_token_picker(secret: str) -> Handler:
    """GET /dev/tokens: the demo users, each with a fresh 12-hour token. Loopback clients only:
    a server on HOST=0.0.0.0 does not hand admin tokens to its whole network."""

    async def tokens(request: web.Request) -> web.Response:
        if request.remote not in LOOPBACK:
            body = {"errors": [{"message": "Dev tokens are handed out to this machine only."}]}
            return web.json_response(body, status=403)
        users = [
            {
                "sub": sub,
                "name": name,
                "birthdate": birthdate,
                "admin": admin,
                "role": role,
                "token": mint_token(secret, sub, birthdate, name, admin, hours=12),
            }
            for sub, name, birthdate, admin, role in DEMO_USERS
        ]
        return web.json_response({"users": users}, headers={"Cache-Control": "no-store"})

    return tokens
