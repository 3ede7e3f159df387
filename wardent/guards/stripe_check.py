"""The Stripe webhook route: the signature Wardent verifies itself before forwarding."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from wardent.guards.chain import Rejection
from wardent.guards.stripe_signature import StripeSignatureError, verify_stripe_signature

if TYPE_CHECKING:
    from wardent.identify import CompiledRoute

REASONS = ("missing", "malformed", "stale", "future", "forged")


class StripeCheck:
    """Verifies a buffered webhook body; counts failures by reason (a bounded set)."""

    def __init__(self, secrets: Sequence[bytes], clock: Callable[[], float] = time.time) -> None:
        self.secrets = tuple(secrets)
        self.clock = clock
        self.verified = 0
        self.failures: dict[str, int] = dict.fromkeys(REASONS, 0)
        self._rejections = {reason: Rejection(400, reason) for reason in REASONS}

    def verify(self, header: bytes | None, body: bytes, route: CompiledRoute) -> Rejection | None:
        assert route.stripe_tolerance is not None
        try:
            verify_stripe_signature(
                header, body, self.secrets, route.stripe_tolerance, self.clock()
            )
        except StripeSignatureError as error:
            reason = error.reason if error.reason in self.failures else "malformed"
            self.failures[reason] += 1
            return self._rejections[reason]
        self.verified += 1
        return None
