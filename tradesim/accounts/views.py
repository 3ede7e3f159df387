"""/api/auth/* and /api/me."""

from __future__ import annotations

import re

from django.conf import settings
from django.contrib.auth import authenticate as check_password
from django.contrib.auth.models import User
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import get_token, rotate_token

from tradesim.accounts import sessions, tokens
from tradesim.accounts.models import Account
from tradesim.accounts.sessions import Auth, with_auth
from tradesim.api import ApiError, api_view, error_response, json_body, string_field

USERNAME_RE = re.compile(r"[A-Za-z0-9_.-]{3,32}")


def _me(user: User, account: Account) -> dict[str, str]:
    return {"username": user.username, "tier": account.tier, "cash": str(account.cash)}


def _signed_in(
    request: HttpRequest, user: User, account: Account, pair: sessions.TokenPair, status: int
) -> HttpResponse:
    response = JsonResponse(_me(user, account), status=status)
    sessions.set_auth_cookies(response, pair)
    # A new CSRF secret at every login, so a token planted before login is useless.
    rotate_token(request)
    return response


@api_view("GET")
def csrf(request: HttpRequest) -> HttpResponse:
    """Sets the csrftoken cookie (and returns its value) for the client to echo back."""
    return JsonResponse({"csrf_token": get_token(request)})


@api_view("POST")
def register(request: HttpRequest) -> HttpResponse:
    data = json_body(request)
    username = string_field(data, "username", max_length=64)
    password = string_field(data, "password", max_length=256)
    if not USERNAME_RE.fullmatch(username):
        raise ApiError(400, "invalid_username", "3-32 characters: letters, digits, '_', '.' or '-'")
    candidate = User(username=username)
    try:
        validate_password(password, candidate)
    except ValidationError as exc:
        raise ApiError(400, "invalid_password", " ".join(exc.messages)) from None
    if User.objects.filter(username__iexact=username).exists():
        raise ApiError(409, "username_taken", f"{username!r} is taken")
    try:
        with transaction.atomic():
            user = User.objects.create_user(username=username, password=password)
            account = Account.objects.create(user=user, cash=settings.TRADESIM.starting_cash)
    except IntegrityError:
        # Lost a race with a concurrent registration of the same name.
        raise ApiError(409, "username_taken", f"{username!r} is taken") from None
    return _signed_in(request, user, account, sessions.start_session(user), 201)


@api_view("POST")
def login(request: HttpRequest) -> HttpResponse:
    data = json_body(request)
    username = string_field(data, "username", max_length=64)
    password = string_field(data, "password", max_length=256)
    user = check_password(request, username=username, password=password)
    if not isinstance(user, User):
        raise ApiError(401, "invalid_credentials", "wrong username or password")
    # get_or_create: a user made outside the API (createsuperuser) gets an account too.
    account, _ = Account.objects.get_or_create(
        user=user, defaults={"cash": settings.TRADESIM.starting_cash}
    )
    return _signed_in(request, user, account, sessions.start_session(user), 200)


@api_view("POST")
def refresh(request: HttpRequest) -> HttpResponse:
    token = request.COOKIES.get(sessions.REFRESH_COOKIE)
    if not token:
        raise ApiError(401, "not_authenticated", "no refresh token cookie")
    try:
        user, pair = sessions.rotate(token)
    except ApiError as exc:
        # A dead refresh token is useless to keep: tell the browser to drop it.
        response = error_response(exc.status, exc.code, exc.detail)
        sessions.clear_auth_cookies(response)
        return response
    response = JsonResponse(_me(user, Account.objects.get(user=user)))
    sessions.set_auth_cookies(response, pair)
    return response


@api_view("POST")
def logout(request: HttpRequest) -> HttpResponse:
    """Ends the session named by either cookie; always clears the cookies."""
    for cookie, kind in (
        (sessions.ACCESS_COOKIE, tokens.ACCESS),
        (sessions.REFRESH_COOKIE, tokens.REFRESH),
    ):
        token = request.COOKIES.get(cookie)
        if not token:
            continue
        try:
            claims = tokens.verify(token, kind)
        except ApiError:
            continue
        sessions.end_session(claims.family_id)
        break
    response = HttpResponse(status=204)
    sessions.clear_auth_cookies(response)
    return response


@api_view("GET")
@with_auth
def me(request: HttpRequest, auth: Auth) -> HttpResponse:
    return JsonResponse(_me(auth.user, auth.account))
