"""Body size: a declared Content-Length over the limit is refused before any byte
is read; a chunked body is counted as it streams (ClientConnection.on_body)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from wardent.guards.chain import GuardCheck, Rejection

if TYPE_CHECKING:
    from wardent.context import RequestContext


def body_limit_guard(default_max: int, status: int, shadow: bool) -> GuardCheck:
    too_large = Rejection(status, "too_large")

    def check(ctx: RequestContext) -> Rejection | None:
        limit = ctx.route.body_limit or default_max
        if ctx.content_length is not None:
            return too_large if ctx.content_length > limit else None
        if ctx.chunked:
            # Enforced while streaming; a shadowed limit only counts.
            ctx.body_limit = limit
            ctx.body_limit_shadow = shadow or "body_limit" in ctx.route.shadow
        return None

    return check
