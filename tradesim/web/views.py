"""The pages. Each is a shell rendered by Django; the page's script loads the user's
data from the same JSON API every other client uses (so a page never shows a state
the API would not), and the chart library is served from our own static files."""

from __future__ import annotations

import functools
import hashlib
import mimetypes
from pathlib import Path

from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseNotModified,
    HttpResponseRedirect,
)
from django.shortcuts import render
from django.views.decorators.http import require_GET

STATIC_DIR = Path(__file__).resolve().parent / "static"
CHART_LIBRARY = STATIC_DIR / "vendor" / "lightweight-charts.standalone.production.js"

# 'unsafe-inline' styles only: the chart library sets style attributes on the
# elements it creates. Scripts come from our own origin and nowhere else.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; "
    "base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)

NAV = (("market", "Market", "/market"), ("portfolio", "Portfolio", "/portfolio"))


@functools.cache
def asset_version() -> str:
    """Changes whenever a static file does: appended to asset URLs so a deploy is
    never served stale scripts from a browser cache."""
    digest = hashlib.sha256()
    for path in sorted(STATIC_DIR.rglob("*")):
        if path.is_file():
            stat = path.stat()
            digest.update(
                f"{path.relative_to(STATIC_DIR)}:{stat.st_size}:{stat.st_mtime_ns}".encode()
            )
    return digest.hexdigest()[:12]


def page(
    request: HttpRequest, template: str, name: str, title: str, **context: object
) -> HttpResponse:
    response = render(
        request,
        template,
        {
            "page": name,
            "title": title,
            "nav": NAV,
            "v": asset_version(),
            "chart_library_built": CHART_LIBRARY.is_file(),
            **context,
        },
    )
    response["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response["X-Frame-Options"] = "DENY"
    response["X-Content-Type-Options"] = "nosniff"
    response["Referrer-Policy"] = "same-origin"
    response["Cache-Control"] = "no-cache"
    return response


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    return HttpResponseRedirect("/market")


@require_GET
def login(request: HttpRequest) -> HttpResponse:
    return page(request, "web/login.html", "login", "Log in")


@require_GET
def register(request: HttpRequest) -> HttpResponse:
    return page(request, "web/register.html", "register", "Create your account")


@require_GET
def market(request: HttpRequest) -> HttpResponse:
    return page(request, "web/market.html", "market", "Market")


@require_GET
def portfolio(request: HttpRequest) -> HttpResponse:
    return page(request, "web/portfolio.html", "portfolio", "Portfolio")


@require_GET
def billing(request: HttpRequest) -> HttpResponse:
    return page(request, "web/billing.html", "billing", "Plan & billing")


def static(request: HttpRequest, path: str) -> HttpResponse:
    """Our own static files (nginx can serve tradesim/web/static instead). Read whole:
    they are small, and a streamed file response would need a thread under ASGI."""
    if request.method not in ("GET", "HEAD"):
        return HttpResponseNotAllowed(["GET", "HEAD"])
    root = STATIC_DIR.resolve()
    file = (root / path).resolve()
    if not file.is_relative_to(root) or not file.is_file() or file.name.startswith("."):
        raise Http404(path)
    stat = file.stat()
    etag = f'"{stat.st_size:x}-{stat.st_mtime_ns:x}"'
    headers = {
        "ETag": etag,
        # Asset URLs carry ?v=<asset_version>, so a cached copy is never stale for long.
        "Cache-Control": "public, max-age=3600",
        "X-Content-Type-Options": "nosniff",
    }
    if request.headers.get("If-None-Match") == etag:
        return HttpResponseNotModified(headers=headers)
    content_type, _ = mimetypes.guess_type(file.name)
    if content_type is not None and (content_type.startswith("text/") or file.suffix == ".js"):
        content_type += "; charset=utf-8"
    return HttpResponse(
        file.read_bytes(),
        content_type=content_type or "application/octet-stream",
        headers=headers,
    )
