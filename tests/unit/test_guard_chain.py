from __future__ import annotations

from tests.support.contexts import request_context
from wardent.context import RequestContext
from wardent.guards.chain import Guard, GuardChain, Rejection
from wardent.identify import DEFAULT_ROUTE, CompiledRoute
from wardent.transport.http import bare_response


def ctx(route: CompiledRoute = DEFAULT_ROUTE) -> RequestContext:
    return request_context(route=route)


def rejecting(status: int, reason: str) -> object:
    return lambda _ctx: Rejection(status, reason)


def test_first_enforcing_rejection_wins_and_later_guards_do_not_run() -> None:
    calls: list[str] = []

    def passing(_ctx: object) -> None:
        calls.append("pass")

    def late(_ctx: object) -> Rejection:
        calls.append("late")
        return Rejection(429, "late")

    chain = GuardChain(
        [
            Guard("first", passing),
            Guard("ban", lambda _c: Rejection(403, "banned")),
            Guard("late", late),
        ]
    )
    verdict = chain.admit(ctx())
    assert verdict is not None
    guard, rejection = verdict
    assert guard.name == "ban"
    assert rejection == Rejection(403, "banned")
    assert calls == ["pass"]
    assert [g.checked for g in chain.guards] == [1, 1, 0]
    assert chain.guards[1].rejected == 1


def test_shadow_guard_counts_and_lets_the_request_pass() -> None:
    chain = GuardChain([Guard("crawler", lambda _c: Rejection(403, "gptbot"), mode="shadow")])
    context = ctx()
    assert chain.admit(context) is None
    assert chain.guards[0].shadow_rejected == 1
    assert chain.guards[0].rejected == 0
    assert context.shadow_reasons == ["crawler:gptbot"]


def test_route_can_skip_a_guard() -> None:
    chain = GuardChain([Guard("origin_secret", lambda _c: Rejection(403, "no secret"))])
    route = CompiledRoute(name="hook", skip=frozenset({"origin_secret"}))
    assert chain.admit(ctx(route)) is None
    assert chain.guards[0].checked == 0


def test_empty_chain_admits() -> None:
    assert GuardChain([]).admit(ctx()) is None


def test_rejection_renders_bare() -> None:
    wire = bare_response(429, retry_after=3, request_id=b"abc-1")
    head, _, body = wire.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 429 Too Many Requests"
    assert b"Content-Length: 0" in lines
    assert b"Retry-After: 3" in lines
    assert body == b""
    assert not any(line.startswith(b"Wardent-Reason") for line in lines)


def test_rejection_reason_header_only_when_asked() -> None:
    wire = bare_response(403, reason_header=b"ban", close=True)
    assert b"Wardent-Reason: ban\r\n" in wire
    assert b"Connection: close\r\n" in wire
    assert b"Retry-After" not in wire
