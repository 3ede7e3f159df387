"""The JSON conventions every endpoint shares: errors as {"error": CODE, "detail": TEXT},
bodies parsed strictly (numbers as Decimal, never float), methods checked up front."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from functools import wraps
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse

View = Callable[[HttpRequest], HttpResponse]


class ApiError(Exception):
    """Raised anywhere under a view; rendered once, by `api_view`, as a JSON error.

    Raising it inside `transaction.atomic()` also rolls the transaction back, which is
    how a rejected request guarantees that nothing was written.
    """

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail


def error_response(status: int, code: str, detail: str) -> JsonResponse:
    return JsonResponse({"error": code, "detail": detail}, status=status)


def api_view(*methods: str) -> Callable[[View], View]:
    allowed = frozenset(methods)

    def decorate(view: View) -> View:
        @wraps(view)
        def wrapper(request: HttpRequest) -> HttpResponse:
            if request.method not in allowed:
                response = error_response(
                    405, "method_not_allowed", f"use {' or '.join(sorted(allowed))}"
                )
                response["Allow"] = ", ".join(sorted(allowed))
                return response
            try:
                return view(request)
            except ApiError as exc:
                return error_response(exc.status, exc.code, exc.detail)

        return wrapper

    return decorate


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def json_body(request: HttpRequest) -> dict[str, Any]:
    """The request body as a JSON object; numbers become Decimal so no float ever
    touches money."""
    try:
        data = json.loads(request.body, parse_float=Decimal, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_json", "the body must be a JSON object")
    return data


def string_field(data: dict[str, Any], name: str, *, max_length: int = 256) -> str:
    value = data.get(name)
    if value is None:
        raise ApiError(400, "missing_field", f"{name!r} is required")
    if not isinstance(value, str):
        raise ApiError(400, "invalid_field", f"{name!r} must be a string")
    if len(value) > max_length:
        raise ApiError(400, "invalid_field", f"{name!r} is longer than {max_length} characters")
    return value


def decimal_field(data: dict[str, Any], name: str) -> Decimal:
    """A decimal given as a string ("0.5", preferred) or a JSON number."""
    value = data.get(name)
    if value is None:
        raise ApiError(400, "missing_field", f"{name!r} is required")
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise ApiError(400, "invalid_field", f'{name!r} must be a decimal string like "0.5"')
    text = str(value).strip()
    if len(text) > 64:
        raise ApiError(400, "invalid_field", f"{name!r} is too long to be a sane number")
    try:
        number = Decimal(text)
    except ArithmeticError:
        raise ApiError(400, "invalid_field", f"{name!r} is not a decimal number") from None
    if not number.is_finite():
        raise ApiError(400, "invalid_field", f"{name!r} must be finite")
    return number


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """CSRF_FAILURE_VIEW: Django's CSRF rejection, in the API's error shape."""
    return error_response(
        403,
        "csrf_failed",
        f"{reason or 'CSRF check failed'}: send the csrftoken cookie's value in X-CSRFToken "
        "(GET /api/auth/csrf sets the cookie)",
    )


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return error_response(404, "not_found", f"no endpoint at {request.path}")


def server_error(request: HttpRequest) -> HttpResponse:
    return error_response(500, "server_error", "internal error; it has been logged")
