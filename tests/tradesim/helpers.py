"""A browser-like client for the API: JSON bodies, real CSRF checks, cookies kept."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from django.test import Client

if TYPE_CHECKING:
    from django.test.client import _MonkeyPatchedWSGIResponse as Response

PASSWORD = "correct horse battery"


class Api:
    def __init__(self) -> None:
        # enforce_csrf_checks: Django's test client skips CSRF unless told not to,
        # and the CSRF behaviour is part of what these tests check.
        self.client = Client(enforce_csrf_checks=True)
        self.csrf_token = ""

    def fetch_csrf(self) -> str:
        response = self.client.get("/api/auth/csrf")
        assert response.status_code == 200, response.content
        self.csrf_token = response.json()["csrf_token"]
        return self.csrf_token

    def get(self, path: str, **params: Any) -> Response:
        return self.client.get(path, params)

    def post(
        self, path: str, body: Any = None, *, raw: bytes | None = None, csrf: bool = True
    ) -> Response:
        if csrf and not self.csrf_token:
            self.fetch_csrf()
        data = raw if raw is not None else json.dumps(body if body is not None else {})
        headers = {"X-CSRFToken": self.csrf_token} if csrf else {}
        return self.client.post(path, data, content_type="application/json", headers=headers)

    def register(self, username: str, password: str = PASSWORD) -> Response:
        response = self.post("/api/auth/register", {"username": username, "password": password})
        # Login rotates the CSRF secret: pick up the new cookie for the next POST.
        self.refresh_csrf_from_cookie()
        return response

    def login(self, username: str, password: str = PASSWORD) -> Response:
        response = self.post("/api/auth/login", {"username": username, "password": password})
        self.refresh_csrf_from_cookie()
        return response

    def refresh_csrf_from_cookie(self) -> None:
        cookie = self.client.cookies.get("csrftoken")
        if cookie is not None and cookie.value:
            self.csrf_token = cookie.value

    def cookie(self, name: str) -> str | None:
        morsel = self.client.cookies.get(name)
        return None if morsel is None or not morsel.value else morsel.value

    def set_cookie(self, name: str, value: str) -> None:
        self.client.cookies[name] = value


def error_of(response: Response) -> str:
    body = response.json()
    assert set(body) == {"error", "detail"}, body
    assert isinstance(body["detail"], str) and body["detail"]
    return str(body["error"])
