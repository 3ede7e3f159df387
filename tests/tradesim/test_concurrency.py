"""20 trades at once against one account, on PostgreSQL, each thread with its own
connection and no test transaction around them: the row locks must hold."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from decimal import Decimal

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.utils import timezone

from tradesim.accounts.models import Account
from tradesim.api import ApiError
from tradesim.market.symbols import ensure_symbols
from tradesim.trading.models import Holding, Quote, Trade
from tradesim.trading.services import create_quote, execute_trade

THREADS = 20
START_CASH = Decimal("500.00")
START_BTC = Decimal("2")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_trades_never_overspend_oversell_or_reuse_a_quote() -> None:
    assert connection.vendor == "postgresql"
    ensure_symbols(["BTCUSDT"])
    from tradesim.market.models import Symbol

    Symbol.objects.filter(name="BTCUSDT").update(
        last_price=Decimal("100.00"), last_trade_at=timezone.now()
    )
    user = User.objects.create_user("racer", password="irrelevant-here")
    account = Account.objects.create(user=user, cash=START_CASH)
    Holding.objects.create(
        account=account, symbol_id="BTCUSDT", quantity=START_BTC, cost_basis=Decimal("200.00")
    )
    # 14 buys of 1 BTC (100 each) against 500 cash, 6 sales of 1 BTC against 2 held:
    # even with every sale filled first, at most 11 buys can fill, whatever the order.
    quotes = [create_quote(account, "BTCUSDT", "buy", Decimal(1)) for _ in range(14)]
    quotes += [create_quote(account, "BTCUSDT", "sell", Decimal(1)) for _ in range(6)]
    barrier = threading.Barrier(THREADS)
    outcomes: list[tuple[uuid.UUID, str]] = []
    lock = threading.Lock()

    def attempt(quote_id: uuid.UUID) -> None:
        try:
            execute_trade(account.pk, quote_id)
            result = "ok"
        except ApiError as exc:
            result = exc.code
        with lock:
            outcomes.append((quote_id, result))

    def worker(index: int) -> None:
        try:
            barrier.wait(timeout=30)
            # Its own quote, then, at once, another thread's: every quote is raced twice.
            attempt(quotes[index].id)
            attempt(quotes[(index + 7) % THREADS].id)
        finally:
            connection.close()  # each thread had its own connection

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert len(outcomes) == 2 * THREADS

    filled = [quote_id for quote_id, result in outcomes if result == "ok"]
    # No quote used twice: in the results, and in the database.
    assert len(filled) == len(set(filled))
    assert Trade.objects.count() == len(filled)
    assert set(Trade.objects.values_list("quote_id", flat=True)) == set(filled)
    assert Quote.objects.filter(used_at__isnull=False).count() == len(filled)

    # The books balance: cash and BTC are exactly the start plus the filled trades.
    trades = list(Trade.objects.all())
    bought = sum((t.notional for t in trades if t.side == "buy"), Decimal(0))
    sold = sum((t.notional for t in trades if t.side == "sell"), Decimal(0))
    net_btc = sum((t.quantity if t.side == "buy" else -t.quantity for t in trades), Decimal(0))
    account.refresh_from_db()
    assert account.cash == START_CASH - bought + sold
    assert account.cash >= 0
    holding = Holding.objects.filter(account=account).first()
    held = holding.quantity if holding else Decimal(0)
    assert held == START_BTC + net_btc
    assert held >= 0

    # And the race was real: the limits bit, and second attempts were refused.
    reasons = Counter(result for _, result in outcomes)
    assert reasons["ok"] < 20
    assert reasons["quote_used"] >= 1
    assert reasons["insufficient_funds"] + reasons["insufficient_holdings"] >= 1
    assert set(reasons) <= {"ok", "quote_used", "insufficient_funds", "insufficient_holdings"}
