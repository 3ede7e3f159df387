"""The guard chain: ordered, synchronous, each guard passes or rejects.

Guards never await and never write shared state (DESIGN.md, "State, and who
may write it"), so the chain is a plain loop; shadow mode lives here, once,
instead of in every guard.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from wardent.context import RequestContext

log = logging.getLogger("wardent.guards")


@dataclass(frozen=True, slots=True)
class Rejection:
    """A guard's verdict: the status to answer with and why (log and metrics only)."""

    status: int
    reason: str
    retry_after: int | None = None


GuardCheck = Callable[["RequestContext"], Rejection | None]


class Guard:
    """One named guard with its own counters, published under its own name."""

    __slots__ = ("check", "checked", "mode", "name", "rejected", "shadow_rejected")

    def __init__(
        self, name: str, check: GuardCheck, mode: Literal["enforce", "shadow"] = "enforce"
    ) -> None:
        self.name = name
        self.check = check
        self.mode = mode
        self.checked = 0
        self.rejected = 0
        self.shadow_rejected = 0


class GuardChain:
    __slots__ = ("guards",)

    def __init__(self, guards: Sequence[Guard]) -> None:
        self.guards = tuple(guards)

    def admit(self, ctx: RequestContext) -> tuple[Guard, Rejection] | None:
        """The first enforcing guard that rejects, with its Rejection; None to pass."""
        for guard in self.guards:
            if guard.name in ctx.route.skip:
                continue
            guard.checked += 1
            rejection = guard.check(ctx)
            if rejection is None:
                continue
            if guard.mode == "shadow":
                guard.shadow_rejected += 1
                ctx.shadow_reasons.append(f"{guard.name}:{rejection.reason}")
                continue
            guard.rejected += 1
            return guard, rejection
        return None
