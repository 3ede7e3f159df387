"""The guard chain: ordered, synchronous, each guard passes or rejects.

Guards never await and never write shared state (DESIGN.md, "State, and who
may write it"), so the chain is a plain loop; shadow mode and route
exemptions live here, once, instead of in every guard.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from wardent.context import RequestContext


@dataclass(frozen=True, slots=True)
class Rejection:
    """A guard's verdict: the status to answer with and why (log and metrics only).

    `violation` overrides the guard's own setting for this one rejection (a rate
    limit rule decides per rule whether its refusals count toward a ban).
    """

    status: int
    reason: str
    retry_after: int | None = None
    violation: bool | None = None


GuardCheck = Callable[["RequestContext"], Rejection | None]


class Guard:
    """One named guard with its own counters, published under its own name."""

    __slots__ = ("check", "checked", "mode", "name", "rejected", "shadow_rejected", "violation")

    def __init__(
        self,
        name: str,
        check: GuardCheck,
        mode: Literal["enforce", "shadow"] = "enforce",
        violation: bool = False,
    ) -> None:
        self.name = name
        self.check = check
        self.mode = mode
        self.violation = violation
        self.checked = 0
        self.rejected = 0
        self.shadow_rejected = 0

    def is_violation(self, rejection: Rejection) -> bool:
        return self.violation if rejection.violation is None else rejection.violation


class GuardChain:
    __slots__ = ("guards",)

    def __init__(self, guards: Sequence[Guard]) -> None:
        self.guards = tuple(guards)

    def admit(self, ctx: RequestContext) -> tuple[Guard, Rejection] | None:
        """The first enforcing guard that rejects, with its Rejection; None to pass."""
        route = ctx.route
        for guard in self.guards:
            if guard.name in route.skip:
                continue
            guard.checked += 1
            rejection = guard.check(ctx)
            if rejection is None:
                continue
            if guard.mode == "shadow" or guard.name in route.shadow:
                guard.shadow_rejected += 1
                ctx.shadow_reasons.append(f"{guard.name}:{rejection.reason}")
                continue
            guard.rejected += 1
            return guard, rejection
        return None
