"""Origin secret: only requests that came through our Cloudflare zone carry it.

Two secrets are accepted while one rotates; the header never reaches the
upstream (the transport drops it, see Runtime.request_skip).
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from typing import TYPE_CHECKING

from wardent.guards.chain import GuardCheck, Rejection

if TYPE_CHECKING:
    from wardent.context import RequestContext


def origin_secret_guard(header: str, secrets: Sequence[bytes], status: int) -> GuardCheck:
    name = header.lower().encode()
    missing = Rejection(status, "missing")
    wrong = Rejection(status, "wrong")
    accepted = tuple(secrets)

    def check(ctx: RequestContext) -> Rejection | None:
        value = ctx.values.get(name)
        if value is None:
            return missing
        if value == b"\x00":
            return wrong  # sent twice: never guess which copy to believe
        # Compare against every secret, so the time taken never says which matched.
        matched = False
        for secret in accepted:
            matched |= hmac.compare_digest(value, secret)
        return None if matched else wrong

    return check
