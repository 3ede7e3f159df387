// The market page: a live candlestick chart (10 s candles, EMA 12, EMA 26) fed by
// /api/candles and the /api/stream event stream, and the trade ticket.
"use strict";

(function () {
  const T = window.Tradesim;
  const LC = window.LightweightCharts;
  const HISTORY = 500; // candles loaded on open: ~83 minutes of 10 s candles
  const INTERVAL = 10; // seconds per candle
  const COLORS = { up: "#22c55e", down: "#ef4444", ema12: "#f59e0b", ema26: "#a855f7" };

  const chartEl = document.getElementById("chart");
  const priceEl = document.getElementById("last-price");
  const changeEl = document.getElementById("price-change");
  const streamEl = document.getElementById("stream-state");

  const view = {
    symbols: [],
    symbol: null,
    generation: 0,
    me: null,
    freeSymbols: null,
    lastTime: null, // newest bar on the chart (Unix seconds)
    forming: null, // the bar the ticks are building, until its candle event closes it
    firstOpen: null,
    lastPrice: null,
    ticks: 0,
    liveCandles: 0,
    stream: null,
  };

  // --- chart -----------------------------------------------------------------

  let chart = null;
  let candles = null;
  let ema12 = null;
  let ema26 = null;

  function localTime(time) {
    return new Date(time * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  }

  function setupChart() {
    if (!LC) {
      T.notice("The chart library did not load. Run `npm ci && npm run build` in frontend/.", "error");
      return false;
    }
    chart = LC.createChart(chartEl, {
      autoSize: true,
      layout: {
        background: { type: LC.ColorType.Solid, color: "#111a2e" },
        textColor: "#8a9bb8",
        fontFamily: getComputedStyle(document.body).fontFamily,
      },
      grid: { vertLines: { color: "#1a2540" }, horzLines: { color: "#1a2540" } },
      rightPriceScale: { borderColor: "#22304d" },
      timeScale: {
        borderColor: "#22304d",
        timeVisible: true,
        secondsVisible: true,
        rightOffset: 3,
        tickMarkFormatter: (time) => localTime(time),
      },
      localization: { timeFormatter: (time) => localTime(time) },
      crosshair: { mode: LC.CrosshairMode.Normal },
    });
    candles = chart.addSeries(LC.CandlestickSeries, {
      upColor: COLORS.up,
      downColor: COLORS.down,
      wickUpColor: COLORS.up,
      wickDownColor: COLORS.down,
      borderVisible: false,
    });
    const line = { lineWidth: 2, priceLineVisible: false, lastValueVisible: false, crosshairMarkerVisible: false };
    ema12 = chart.addSeries(LC.LineSeries, { ...line, color: COLORS.ema12 });
    ema26 = chart.addSeries(LC.LineSeries, { ...line, color: COLORS.ema26 });
    return true;
  }

  function bar(candle) {
    return {
      time: candle.time,
      open: +candle.open,
      high: +candle.high,
      low: +candle.low,
      close: +candle.close,
    };
  }

  function precisionOf(price) {
    return price >= 1 ? 2 : 6;
  }

  // What the page shows, as attributes: handy in a browser's inspector and in tests.
  function publish() {
    chartEl.dataset.symbol = view.symbol || "";
    chartEl.dataset.candles = String(candles ? candles.data().length : 0);
    chartEl.dataset.ema12 = String(ema12 ? ema12.data().length : 0);
    chartEl.dataset.ema26 = String(ema26 ? ema26.data().length : 0);
    chartEl.dataset.ticks = String(view.ticks);
    chartEl.dataset.liveCandles = String(view.liveCandles);
    chartEl.dataset.lastPrice = view.lastPrice === null ? "" : String(view.lastPrice);
  }

  function showEma(id, value) {
    document.getElementById(id).textContent = value === null || value === undefined ? "—" : T.price(value);
  }

  function showPrice(text) {
    const value = +text;
    if (view.lastPrice !== null && value !== view.lastPrice) {
      priceEl.classList.remove("tick-up", "tick-down");
      void priceEl.offsetWidth; // restart the colour transition
      priceEl.classList.add(value > view.lastPrice ? "tick-up" : "tick-down");
    }
    view.lastPrice = value;
    priceEl.textContent = T.price(value);
    if (view.firstOpen) {
      const change = ((value - view.firstOpen) / view.firstOpen) * 100;
      changeEl.textContent = (change > 0 ? "+" : "") + change.toFixed(2) + "%";
      changeEl.title = "change since the first candle on the chart";
      T.trend(changeEl, change);
    }
    updateEstimate();
  }

  // --- data ------------------------------------------------------------------

  async function loadSymbol(name) {
    const generation = ++view.generation;
    view.symbol = name;
    closeStream();
    renderTabs();
    document.getElementById("symbol-name").textContent = name;
    document.getElementById("ticket-symbol").textContent = name;
    const info = view.symbols.find((s) => s.symbol === name);
    document.getElementById("ticket-base").textContent = info ? "(" + info.base + ")" : "";
    const url = new URL(location.href);
    url.searchParams.set("symbol", name);
    history.replaceState(null, "", url);
    resetTicket();

    let data;
    try {
      data = await T.api("GET", "/api/candles?symbol=" + encodeURIComponent(name) + "&limit=" + HISTORY);
    } catch (error) {
      T.notice("Could not load " + name + " candles: " + error.detail, "error");
      return;
    }
    if (generation !== view.generation) return; // another symbol was picked meanwhile
    T.notice("");
    const bars = [];
    const e12 = [];
    const e26 = [];
    for (const candle of data.candles) {
      bars.push(bar(candle));
      if (candle.ema12 !== null) e12.push({ time: candle.time, value: +candle.ema12 });
      if (candle.ema26 !== null) e26.push({ time: candle.time, value: +candle.ema26 });
    }
    const last = data.candles[data.candles.length - 1];
    const reference = last ? +last.close : info && info.price ? +info.price : 1;
    candles.applyOptions({
      priceFormat: { type: "price", precision: precisionOf(reference), minMove: 1 / 10 ** precisionOf(reference) },
    });
    candles.setData(bars);
    ema12.setData(e12);
    ema26.setData(e26);
    view.lastTime = last ? last.time : null;
    view.forming = last && !last.closed ? bar(last) : null;
    view.firstOpen = bars.length ? bars[0].open : null;
    view.lastPrice = null;
    showEma("ema12-value", e12.length ? e12[e12.length - 1].value : null);
    showEma("ema26-value", e26.length ? e26[e26.length - 1].value : null);
    const price = info && info.price ? info.price : last ? last.close : null;
    if (price !== null) showPrice(price);
    // A short history fills the width; a long one shows its newest part.
    if (bars.length < 150) chart.timeScale().fitContent();
    else chart.timeScale().scrollToRealTime();
    publish();
    openStream(name, generation);
  }

  function onTick(tick) {
    if (tick.symbol !== view.symbol) return;
    const price = +tick.price;
    const time = Math.floor(tick.time_ms / 1000 / INTERVAL) * INTERVAL;
    if (view.forming && view.forming.time === time) {
      view.forming.high = Math.max(view.forming.high, price);
      view.forming.low = Math.min(view.forming.low, price);
      view.forming.close = price;
    } else if (view.lastTime === null || time > view.lastTime) {
      view.forming = { time, open: price, high: price, low: price, close: price };
      view.lastTime = time;
    } else {
      return; // a tick for a candle the chart has already moved past
    }
    candles.update({ ...view.forming });
    view.ticks += 1;
    showPrice(tick.price);
    publish();
  }

  function onCandle(candle) {
    if (candle.symbol !== view.symbol) return;
    const closed = bar(candle);
    // A closed candle older than the newest bar (a tick of the next one came first)
    // replaces the bar the ticks built: the server's candle is the truth.
    const historical = view.lastTime !== null && closed.time < view.lastTime;
    candles.update(closed, historical);
    if (!historical) view.lastTime = closed.time;
    if (view.forming && view.forming.time === closed.time) view.forming = null;
    if (candle.ema12 !== null) {
      ema12.update({ time: candle.time, value: +candle.ema12 }, historical);
      showEma("ema12-value", candle.ema12);
    }
    if (candle.ema26 !== null) {
      ema26.update({ time: candle.time, value: +candle.ema26 }, historical);
      showEma("ema26-value", candle.ema26);
    }
    view.liveCandles += 1;
    publish();
  }

  function streamState(state, text) {
    streamEl.dataset.state = state;
    streamEl.textContent = text;
  }

  function openStream(name, generation) {
    const source = new EventSource("/api/stream?symbols=" + encodeURIComponent(name));
    view.stream = source;
    const handle = (fn) => (event) => {
      if (generation !== view.generation) return;
      try {
        fn(JSON.parse(event.data));
      } catch (error) {
        console.error("bad stream event", error, event.data);
      }
    };
    source.addEventListener("tick", handle(onTick));
    source.addEventListener("candle", handle(onCandle));
    source.addEventListener("open", () => streamState("live", "live"));
    source.addEventListener("error", () => {
      // EventSource reconnects by itself, resuming from Last-Event-ID.
      streamState(source.readyState === EventSource.CLOSED ? "error" : "connecting", "reconnecting…");
    });
  }

  function closeStream() {
    if (view.stream) view.stream.close();
    view.stream = null;
    streamState("connecting", "connecting…");
  }

  // --- symbol tabs -------------------------------------------------------------

  function renderTabs() {
    const tabs = document.getElementById("symbol-tabs");
    tabs.replaceChildren();
    for (const info of view.symbols) {
      const tab = document.createElement("button");
      tab.type = "button";
      tab.className = "symbol-tab";
      tab.setAttribute("role", "tab");
      tab.setAttribute("aria-selected", String(info.symbol === view.symbol));
      tab.dataset.symbol = info.symbol;
      tab.textContent = info.base + "/" + info.quote;
      if (view.me && view.me.tier !== "pro" && view.freeSymbols && !view.freeSymbols.includes(info.symbol)) {
        const tag = document.createElement("span");
        tag.className = "pro-tag";
        tag.textContent = "PRO";
        tag.title = "Buying this market needs the pro plan";
        tab.append(tag);
      }
      tab.addEventListener("click", () => {
        if (info.symbol !== view.symbol) loadSymbol(info.symbol);
      });
      tabs.append(tab);
    }
  }

  // --- trade ticket ------------------------------------------------------------

  const form = document.getElementById("ticket-form");
  const quantityInput = document.getElementById("quantity");
  const quoteBox = document.getElementById("quote-box");
  const result = document.getElementById("trade-result");
  const confirmButton = document.getElementById("confirm-trade");
  const quoteButton = document.getElementById("get-quote");
  let quote = null;
  let countdown = null;

  const REASONS = {
    quote_expired: "The quote expired",
    quote_used: "This quote was already traded",
    insufficient_funds: "Not enough cash",
    insufficient_holdings: "Not enough to sell",
    pro_required: "This market needs the pro plan",
    order_too_small: "Order too small",
    order_too_large: "Order too large",
    invalid_quantity: "Check the quantity",
    invalid_field: "Check the quantity",
    price_unavailable: "No price yet",
    price_stale: "The price is stale",
    not_authenticated: "You are logged out",
    session_revoked: "Your session ended",
    network_error: "Connection problem",
  };

  function side() {
    return form.querySelector("input[name=side]:checked").value;
  }

  function updateEstimate() {
    const qty = parseFloat(quantityInput.value);
    const el = document.getElementById("ticket-estimate");
    el.textContent = isFinite(qty) && view.lastPrice ? T.money(qty * view.lastPrice) + " USDT" : "—";
  }

  function showResult(kind, title, lines, link) {
    result.hidden = false;
    result.className = "result " + kind;
    result.replaceChildren();
    const heading = document.createElement("b");
    heading.textContent = title;
    result.append(heading);
    for (const line of lines) {
      const p = document.createElement("div");
      p.textContent = line;
      result.append(p);
    }
    if (link) {
      const a = document.createElement("a");
      a.href = link.href;
      a.textContent = link.text;
      result.append(a);
    }
  }

  function showError(error) {
    const link = error.code === "pro_required"
      ? { href: "/billing", text: "Upgrade to Pro →" }
      : error.status === 401 ? { href: "/login?next=/market", text: "Log in again →" } : null;
    showResult("error", REASONS[error.code] || "Trade failed", [error.detail], link);
  }

  function stopCountdown() {
    if (countdown) clearInterval(countdown);
    countdown = null;
  }

  function resetTicket() {
    stopCountdown();
    quote = null;
    quoteBox.hidden = true;
    quoteButton.disabled = false;
    result.hidden = true;
  }

  function tickCountdown() {
    if (!quote) return;
    const left = quote.expiresAt - Date.now();
    const bar = document.getElementById("countdown-bar");
    const text = document.getElementById("countdown-text");
    const box = document.getElementById("countdown");
    if (left <= 0) {
      stopCountdown();
      bar.style.width = "0%";
      box.classList.add("expired");
      text.textContent = "Expired: get a new quote";
      confirmButton.disabled = true;
      quoteButton.disabled = false;
      return;
    }
    bar.style.width = Math.max(0, Math.min(100, (left / quote.ttl) * 100)) + "%";
    text.textContent = "Valid for " + (left / 1000).toFixed(1) + " s";
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    resetTicket();
    quoteButton.disabled = true;
    try {
      const body = await T.api("POST", "/api/quotes", {
        symbol: view.symbol,
        side: side(),
        quantity: quantityInput.value.trim(),
      });
      const expiresAt = Date.parse(body.expires_at);
      quote = { ...body, expiresAt, ttl: Math.max(1, expiresAt - Date.now()) };
      document.getElementById("quote-price").textContent = T.price(body.price);
      document.getElementById("quote-quantity").textContent = T.quantity(body.quantity);
      document.getElementById("quote-notional-label").textContent = body.side === "buy" ? "You pay" : "You receive";
      document.getElementById("quote-notional").textContent = T.money(body.notional) + " USDT";
      confirmButton.textContent = body.side === "buy" ? "Confirm buy" : "Confirm sell";
      confirmButton.className = "btn " + (body.side === "buy" ? "btn-buy" : "btn-sell");
      confirmButton.disabled = false;
      document.getElementById("countdown").classList.remove("expired");
      quoteBox.hidden = false;
      tickCountdown();
      countdown = setInterval(tickCountdown, 100);
    } catch (error) {
      quoteButton.disabled = false;
      showError(error);
    }
  });

  confirmButton.addEventListener("click", async () => {
    if (!quote) return;
    const pending = quote;
    confirmButton.disabled = true;
    stopCountdown();
    try {
      const body = await T.api("POST", "/api/trades", { quote_id: pending.id });
      const trade = body.trade;
      const info = view.symbols.find((s) => s.symbol === trade.symbol);
      const base = info ? info.base : trade.symbol;
      quoteBox.hidden = true;
      quote = null;
      quoteButton.disabled = false;
      showResult(
        "ok",
        (trade.side === "buy" ? "Bought " : "Sold ") + T.quantity(trade.quantity) + " " + base,
        [
          "at " + T.price(trade.price) + " for " + T.money(trade.notional) + " USDT",
          "Cash now " + T.money(body.cash) + " USDT",
        ],
        { href: "/portfolio", text: "View portfolio →" },
      );
      document.getElementById("ticket-cash").textContent = T.money(body.cash) + " USDT";
    } catch (error) {
      quoteBox.hidden = true;
      quote = null;
      quoteButton.disabled = false;
      showError(error);
    }
  });

  document.getElementById("cancel-quote").addEventListener("click", resetTicket);
  quantityInput.addEventListener("input", updateEstimate);

  // --- start -----------------------------------------------------------------

  async function start() {
    if (!setupChart()) return;
    publish();
    let listed;
    try {
      listed = await T.api("GET", "/api/symbols");
    } catch (error) {
      T.notice("Could not load the markets: " + error.detail, "error");
      return;
    }
    view.symbols = listed.symbols;
    if (!view.symbols.length) {
      T.notice("No markets yet: is the price feed running?", "error");
      return;
    }
    const wanted = (new URLSearchParams(location.search).get("symbol") || "").toUpperCase();
    const first = view.symbols.find((s) => s.symbol === wanted) || view.symbols[0];
    const mePromise = T.loadMe().then(async (me) => {
      view.me = me;
      document.getElementById("ticket-login").hidden = Boolean(me);
      form.hidden = !me;
      if (!me) return;
      document.getElementById("ticket-cash").textContent = T.money(me.cash) + " USDT";
      try {
        const billing = await T.api("GET", "/api/billing");
        view.freeSymbols = billing.free_symbols;
      } catch (error) {
        view.freeSymbols = null;
      }
      renderTabs();
    });
    await Promise.all([loadSymbol(first.symbol), mePromise]);
  }

  start();
})();
