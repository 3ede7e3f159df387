"""RS256 JWTs: a short-lived access token and a longer refresh token per login session.

Both carry the session ("family") id `fid`; every refresh token also has its own
`jti`, stored server-side so that rotation and reuse detection are possible.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from django.conf import settings

from tradesim.accounts.keys import signing_keys
from tradesim.api import ApiError

ACCESS = "access"
REFRESH = "refresh"
ALGORITHM = "RS256"
# A few seconds of tolerance for clocks of the several processes that verify tokens.
LEEWAY_SECONDS = 5


@dataclass(frozen=True)
class Claims:
    user_id: int
    family_id: uuid.UUID
    token_id: uuid.UUID
    expires_at: float


def issue(kind: str, user_id: int, family_id: uuid.UUID, token_id: uuid.UUID) -> str:
    config = settings.TRADESIM
    now = int(time.time())
    ttl = config.access_ttl if kind == ACCESS else config.refresh_ttl
    keys = signing_keys()
    payload: dict[str, Any] = {
        "iss": config.jwt_issuer,
        "sub": str(user_id),
        "typ": kind,
        "fid": str(family_id),
        "jti": str(token_id),
        "iat": now,
        "exp": now + int(ttl),
    }
    return jwt.encode(payload, keys.private_key, algorithm=ALGORITHM, headers={"kid": keys.kid})


def verify(token: str, kind: str) -> Claims:
    """Checks signature, algorithm, issuer, expiry and type; raises a 401 ApiError."""
    try:
        payload = jwt.decode(
            token,
            signing_keys().public_key,
            # Pinning the algorithm is what stops "alg: none" and HS256-with-the-
            # public-key forgeries.
            algorithms=[ALGORITHM],
            issuer=settings.TRADESIM.jwt_issuer,
            leeway=LEEWAY_SECONDS,
            options={"require": ["exp", "iat", "iss", "sub", "typ", "fid", "jti"]},
        )
    except jwt.ExpiredSignatureError:
        raise ApiError(401, "token_expired", f"the {kind} token has expired") from None
    except jwt.InvalidTokenError as exc:
        raise ApiError(401, "token_invalid", f"the {kind} token is invalid: {exc}") from None
    if payload.get("typ") != kind:
        raise ApiError(401, "token_invalid", f"expected a {kind} token")
    try:
        return Claims(
            user_id=int(payload["sub"]),
            family_id=uuid.UUID(str(payload["fid"])),
            token_id=uuid.UUID(str(payload["jti"])),
            expires_at=float(payload["exp"]),
        )
    except (TypeError, ValueError):
        raise ApiError(401, "token_invalid", f"the {kind} token has malformed claims") from None
