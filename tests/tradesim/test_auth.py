"""Register, login, refresh (rotation + reuse detection), logout, /api/me, CSRF."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import time
import uuid
from decimal import Decimal

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.contrib.auth.models import User
from django.test import override_settings

from tests.tradesim.helpers import Api, error_of
from tradesim.accounts import tokens
from tradesim.accounts.keys import signing_keys
from tradesim.accounts.models import Account, RefreshToken, TokenFamily
from tradesim.accounts.sessions import ACCESS_COOKIE, REFRESH_COOKIE

pytestmark = pytest.mark.django_db


def test_register_creates_the_account_and_sets_strict_auth_cookies() -> None:
    api = Api()
    response = api.register("alice")
    assert response.status_code == 201, response.content
    assert response.json() == {"username": "alice", "tier": "free", "cash": "100000.00"}
    for name, path in ((ACCESS_COOKIE, "/"), (REFRESH_COOKIE, "/api/auth/")):
        morsel = response.cookies[name]
        assert morsel["httponly"] is True
        assert morsel["samesite"] == "Lax"
        assert morsel["secure"] is True
        assert morsel["path"] == path
    assert Account.objects.get(user__username="alice").cash == Decimal("100000.00")
    me = api.get("/api/me")
    assert me.status_code == 200
    assert me.json()["username"] == "alice"


def test_local_http_setting_drops_the_secure_flag() -> None:
    from django.conf import settings

    with override_settings(TRADESIM=dataclasses.replace(settings.TRADESIM, local_http=True)):
        response = Api().register("bob")
    assert response.status_code == 201
    assert not response.cookies[ACCESS_COOKIE]["secure"]


def test_state_changing_requests_without_csrf_are_refused_and_write_nothing() -> None:
    api = Api()
    response = api.post(
        "/api/auth/register", {"username": "carol", "password": "x" * 12}, csrf=False
    )
    assert response.status_code == 403
    assert error_of(response) == "csrf_failed"
    assert not User.objects.filter(username="carol").exists()
    # A token that does not match the cookie is refused too.
    api.fetch_csrf()
    api.csrf_token = "a" * 32
    wrong = api.post("/api/auth/register", {"username": "carol", "password": "x" * 12})
    assert wrong.status_code == 403
    assert not User.objects.filter(username="carol").exists()


def test_logged_in_posts_still_need_csrf() -> None:
    api = Api()
    api.register("dora")
    response = api.post("/api/auth/logout", csrf=False)
    assert response.status_code == 403
    assert api.get("/api/me").status_code == 200


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"username": "ab", "password": "long enough pw"}, 400, "invalid_username"),
        ({"username": "bad name", "password": "long enough pw"}, 400, "invalid_username"),
        ({"username": "erin", "password": "short"}, 400, "invalid_password"),
        ({"username": "erin", "password": "12345678901"}, 400, "invalid_password"),
        ({"username": "erin"}, 400, "missing_field"),
        ({"username": 5, "password": "long enough pw"}, 400, "invalid_field"),
    ],
)
def test_register_rejects_bad_input(body: dict[str, object], status: int, code: str) -> None:
    response = Api().post("/api/auth/register", body)
    assert response.status_code == status
    assert error_of(response) == code
    assert User.objects.count() == 0
    assert ACCESS_COOKIE not in response.cookies


@pytest.mark.parametrize("raw", [b"{", b"[1, 2]", b"\xff\xfe", b'{"username": NaN}', b""])
def test_malformed_json_is_a_400(raw: bytes) -> None:
    response = Api().post("/api/auth/register", raw=raw)
    assert response.status_code == 400
    assert error_of(response) == "invalid_json"


def test_usernames_are_unique_regardless_of_case() -> None:
    assert Api().register("frank").status_code == 201
    response = Api().register("FRANK")
    assert response.status_code == 409
    assert error_of(response) == "username_taken"
    assert User.objects.count() == 1


def test_login_checks_the_password() -> None:
    Api().register("gina")
    api = Api()
    wrong = api.login("gina", "not the password")
    assert wrong.status_code == 401
    assert error_of(wrong) == "invalid_credentials"
    assert ACCESS_COOKIE not in wrong.cookies
    right = api.login("gina")
    assert right.status_code == 200
    assert right.json()["username"] == "gina"
    assert api.get("/api/me").status_code == 200


def test_me_needs_a_valid_access_token() -> None:
    api = Api()
    response = api.get("/api/me")
    assert response.status_code == 401
    assert error_of(response) == "not_authenticated"
    api.register("hank")
    token = api.cookie(ACCESS_COOKIE)
    assert token is not None
    head, body, signature = token.split(".")
    api.set_cookie(ACCESS_COOKIE, f"{head}.{body}.{signature[:-4]}AAAA")
    tampered = api.get("/api/me")
    assert tampered.status_code == 401
    assert error_of(tampered) == "token_invalid"


def _claims_of(token: str) -> dict[str, object]:
    return dict(jwt.decode(token, options={"verify_signature": False}))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _hs256(claims: dict[str, object], secret: bytes) -> str:
    signing_input = _b64(b'{"alg":"HS256","typ":"JWT"}') + "." + _b64(json.dumps(claims).encode())
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(mac)}"


def test_forged_tokens_are_refused() -> None:
    api = Api()
    api.register("ivan")
    token = api.cookie(ACCESS_COOKIE)
    assert token is not None
    claims = _claims_of(token)
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = signing_keys().public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    forgeries = [
        jwt.encode(claims, other_key, algorithm="RS256"),
        jwt.encode(claims, "", algorithm="none"),
        # The classic confusion: HS256 "signed" with the public key (built by hand,
        # PyJWT refuses to make one).
        _hs256(claims, public_pem),
    ]
    for forged in forgeries:
        api.set_cookie(ACCESS_COOKIE, forged)
        response = api.get("/api/me")
        assert response.status_code == 401, forged
        assert error_of(response) == "token_invalid"


def test_expired_access_token_says_so() -> None:
    api = Api()
    api.register("jane")
    token = api.cookie(ACCESS_COOKIE)
    assert token is not None
    claims = _claims_of(token)
    claims["exp"] = int(time.time()) - 60
    api.set_cookie(ACCESS_COOKIE, jwt.encode(claims, signing_keys().private_key, algorithm="RS256"))
    response = api.get("/api/me")
    assert response.status_code == 401
    assert error_of(response) == "token_expired"


def test_a_refresh_token_is_not_an_access_token() -> None:
    api = Api()
    api.register("kate")
    refresh = api.cookie(REFRESH_COOKIE)
    assert refresh is not None
    api.set_cookie(ACCESS_COOKIE, refresh)
    response = api.get("/api/me")
    assert response.status_code == 401
    assert error_of(response) == "token_invalid"


def test_refresh_rotates_and_a_reused_refresh_token_revokes_the_family() -> None:
    api = Api()
    api.register("liam")
    first_refresh = api.cookie(REFRESH_COOKIE)
    assert first_refresh is not None
    rotated = api.post("/api/auth/refresh")
    assert rotated.status_code == 200, rotated.content
    second_refresh = api.cookie(REFRESH_COOKIE)
    assert second_refresh is not None and second_refresh != first_refresh
    assert api.get("/api/me").status_code == 200

    # A thief replays the first (already exchanged) refresh token.
    thief = Api()
    thief.set_cookie(REFRESH_COOKIE, first_refresh)
    replay = thief.post("/api/auth/refresh")
    assert replay.status_code == 401
    assert error_of(replay) == "refresh_reused"
    family = TokenFamily.objects.get(user__username="liam")
    assert family.revoked_at is not None

    # The whole family is dead: the legitimate user's newer tokens too.
    assert error_of(api.get("/api/me")) == "session_revoked"
    again = api.post("/api/auth/refresh")
    assert again.status_code == 401
    assert error_of(again) == "session_revoked"


def test_unknown_refresh_token_id_is_refused() -> None:
    api = Api()
    api.register("mona")
    refresh = api.cookie(REFRESH_COOKIE)
    assert refresh is not None
    RefreshToken.objects.all().delete()
    response = api.post("/api/auth/refresh")
    assert response.status_code == 401
    assert error_of(response) == "token_invalid"


def test_refresh_without_cookie_is_401() -> None:
    response = Api().post("/api/auth/refresh")
    assert response.status_code == 401
    assert error_of(response) == "not_authenticated"


def test_logout_ends_the_session_even_for_a_kept_access_token() -> None:
    api = Api()
    api.register("nina")
    kept = api.cookie(ACCESS_COOKIE)
    assert kept is not None
    response = api.post("/api/auth/logout")
    assert response.status_code == 204
    assert response.cookies[ACCESS_COOKIE].value == ""
    assert response.cookies[REFRESH_COOKIE].value == ""
    api.set_cookie(ACCESS_COOKIE, kept)
    after = api.get("/api/me")
    assert after.status_code == 401
    assert error_of(after) == "session_revoked"


def test_sessions_are_independent() -> None:
    laptop = Api()
    laptop.register("omar")
    phone = Api()
    phone.login("omar")
    laptop.post("/api/auth/logout")
    assert phone.get("/api/me").status_code == 200
    assert TokenFamily.objects.filter(revoked_at__isnull=True).count() == 1


def test_token_claims_are_what_the_server_expects() -> None:
    token = tokens.issue(tokens.ACCESS, 7, uuid.uuid4(), uuid.uuid4())
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "RS256"
    assert header["kid"] == signing_keys().kid
    assert tokens.verify(token, tokens.ACCESS).user_id == 7


def test_wrong_method_and_unknown_path_are_json_errors() -> None:
    api = Api()
    wrong = api.get("/api/auth/login")
    assert wrong.status_code == 405
    assert error_of(wrong) == "method_not_allowed"
    assert wrong["Allow"] == "POST"
    missing = api.get("/api/nothing-here")
    assert missing.status_code == 404
    assert error_of(missing) == "not_found"


def test_a_user_made_outside_the_api_gets_an_account_at_login() -> None:
    User.objects.create_user("admin", password="a long admin password")
    api = Api()
    response = api.login("admin", "a long admin password")
    assert response.status_code == 200
    assert response.json()["cash"] == "100000.00"
    assert api.get("/api/me").status_code == 200
