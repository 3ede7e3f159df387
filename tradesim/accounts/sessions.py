"""Login sessions: start, rotate (with reuse detection), end; and who is asking.

Rotation: each refresh token can be exchanged once, for a new pair. If an already
exchanged token comes back, either the user or a thief holds a copy; we cannot tell
which, so the whole family is revoked and both must log in again (OAuth 2.0 Security
BCP, "refresh token rotation").
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import wraps

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from tradesim.accounts import tokens
from tradesim.accounts.models import Account, RefreshToken, TokenFamily
from tradesim.api import ApiError

ACCESS_COOKIE = "tradesim_access"
REFRESH_COOKIE = "tradesim_refresh"
# The refresh token is only ever needed by /api/auth/refresh and /logout, so the
# browser does not send it anywhere else.
REFRESH_COOKIE_PATH = "/api/auth/"


@dataclass(frozen=True)
class TokenPair:
    access: str
    refresh: str


@dataclass(frozen=True)
class Auth:
    user: User
    account: Account
    family_id: uuid.UUID


def _new_refresh(family: TokenFamily) -> str:
    row = RefreshToken.objects.create(
        family=family,
        expires_at=timezone.now() + timedelta(seconds=settings.TRADESIM.refresh_ttl),
    )
    return tokens.issue(tokens.REFRESH, family.user_id, family.id, row.id)


def start_session(user: User) -> TokenPair:
    with transaction.atomic():
        family = TokenFamily.objects.create(user=user)
        refresh = _new_refresh(family)
    access = tokens.issue(tokens.ACCESS, user.pk, family.id, uuid.uuid4())
    return TokenPair(access=access, refresh=refresh)


def rotate(refresh_token: str) -> tuple[User, TokenPair]:
    claims = tokens.verify(refresh_token, tokens.REFRESH)
    reused = False
    with transaction.atomic():
        row = (
            RefreshToken.objects.select_for_update()
            .select_related("family", "family__user")
            .filter(id=claims.token_id, family_id=claims.family_id)
            .first()
        )
        if row is None:
            raise ApiError(401, "token_invalid", "unknown refresh token")
        family = row.family
        if family.revoked_at is not None:
            raise ApiError(401, "session_revoked", "this session has ended; log in again")
        if row.used_at is not None:
            # Committed, not rolled back: the revocation is the point.
            family.revoked_at = timezone.now()
            family.revoked_reason = "refresh token reused"
            family.save(update_fields=["revoked_at", "revoked_reason"])
            reused = True
        else:
            row.used_at = timezone.now()
            row.save(update_fields=["used_at"])
            refresh = _new_refresh(family)
    if reused:
        raise ApiError(
            401,
            "refresh_reused",
            "this refresh token was already used; the session is revoked, log in again",
        )
    user = family.user
    if not user.is_active:
        raise ApiError(401, "token_invalid", "the account is disabled")
    access = tokens.issue(tokens.ACCESS, user.pk, family.id, uuid.uuid4())
    return user, TokenPair(access=access, refresh=refresh)


def end_session(family_id: uuid.UUID, reason: str = "logout") -> None:
    TokenFamily.objects.filter(id=family_id, revoked_at__isnull=True).update(
        revoked_at=timezone.now(), revoked_reason=reason
    )


def authenticate(request: HttpRequest) -> Auth:
    token = request.COOKIES.get(ACCESS_COOKIE)
    if not token:
        raise ApiError(401, "not_authenticated", "log in first (no access token cookie)")
    claims = tokens.verify(token, tokens.ACCESS)
    family = (
        TokenFamily.objects.select_related("user", "user__account")
        .filter(id=claims.family_id, user_id=claims.user_id)
        .first()
    )
    if family is None or family.revoked_at is not None:
        raise ApiError(401, "session_revoked", "this session has ended; log in again")
    user = family.user
    if not user.is_active:
        raise ApiError(401, "token_invalid", "the account is disabled")
    return Auth(user=user, account=user.account, family_id=family.id)


def with_auth(
    view: Callable[[HttpRequest, Auth], HttpResponse],
) -> Callable[[HttpRequest], HttpResponse]:
    """Runs the view with the caller's Auth; 401 JSON (via api_view) without one."""

    @wraps(view)
    def wrapper(request: HttpRequest) -> HttpResponse:
        return view(request, authenticate(request))

    return wrapper


def set_auth_cookies(response: HttpResponse, pair: TokenPair) -> None:
    config = settings.TRADESIM
    secure = not config.local_http
    response.set_cookie(
        ACCESS_COOKIE,
        pair.access,
        max_age=int(config.access_ttl),
        path="/",
        secure=secure,
        httponly=True,
        samesite="Lax",
    )
    response.set_cookie(
        REFRESH_COOKIE,
        pair.refresh,
        max_age=int(config.refresh_ttl),
        path=REFRESH_COOKIE_PATH,
        secure=secure,
        httponly=True,
        samesite="Lax",
    )


def clear_auth_cookies(response: HttpResponse) -> None:
    response.delete_cookie(ACCESS_COOKIE, path="/", samesite="Lax")
    response.delete_cookie(REFRESH_COOKIE, path=REFRESH_COOKIE_PATH, samesite="Lax")
