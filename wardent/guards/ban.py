"""Ban: a read-only lookup in the ban table, which only the ban keeper writes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from wardent.guards.chain import GuardCheck, Rejection

if TYPE_CHECKING:
    from wardent.context import RequestContext
    from wardent.state.bans import BanTable


def ban_guard(table: BanTable, status: int) -> GuardCheck:
    rejection = Rejection(status, "banned")
    lookup = table.lookup

    def check(ctx: RequestContext) -> Rejection | None:
        assert ctx.client is not None
        return rejection if lookup(ctx.client) is not None else None

    return check
