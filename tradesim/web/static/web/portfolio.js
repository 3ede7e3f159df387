// The portfolio page: summary, allocation donut, holdings with P&L. Refreshes every
// few seconds, since holdings are valued at the live last price.
"use strict";

(function () {
  const T = window.Tradesim;
  const SVG = "http://www.w3.org/2000/svg";
  const REFRESH_MS = 5000;
  const PALETTE = ["#3b82f6", "#f59e0b", "#a855f7", "#14b8a6", "#ec4899", "#84cc16", "#f97316"];
  const CASH_COLOR = "#64748b";

  function colorOf(asset, index) {
    return asset === "cash" ? CASH_COLOR : PALETTE[index % PALETTE.length];
  }

  function svg(tag, attributes) {
    const el = document.createElementNS(SVG, tag);
    for (const [key, value] of Object.entries(attributes)) el.setAttribute(key, String(value));
    return el;
  }

  function drawAllocation(allocation, total) {
    const chart = document.getElementById("allocation-chart");
    const legend = document.getElementById("allocation-legend");
    chart.dataset.allocation = JSON.stringify(allocation);
    chart.replaceChildren();
    legend.replaceChildren();
    // Cash last, the rest largest first.
    const entries = Object.entries(allocation)
      .filter(([asset]) => asset !== "cash")
      .sort((a, b) => +b[1] - +a[1]);
    if ("cash" in allocation) entries.push(["cash", allocation.cash]);
    const radius = 48;
    const circumference = 2 * Math.PI * radius;
    chart.append(svg("circle", { cx: 60, cy: 60, r: radius, fill: "none", stroke: "#1a2540", "stroke-width": 16 }));
    let offset = 0;
    entries.forEach(([asset, percent], index) => {
      const share = Math.max(0, +percent) / 100;
      const color = colorOf(asset, index);
      if (share > 0) {
        const arc = svg("circle", {
          cx: 60,
          cy: 60,
          r: radius,
          fill: "none",
          stroke: color,
          "stroke-width": 16,
          "stroke-dasharray": share * circumference + " " + circumference,
          "stroke-dashoffset": -offset * circumference,
          transform: "rotate(-90 60 60)",
        });
        arc.dataset.asset = asset;
        const title = svg("title", {});
        title.textContent = asset + " " + percent + "%";
        arc.append(title);
        chart.append(arc);
        offset += share;
      }
      const item = document.createElement("li");
      item.dataset.asset = asset;
      const dot = document.createElement("span");
      dot.className = "dot";
      dot.style.background = color;
      const name = document.createElement("span");
      name.textContent = asset === "cash" ? "Cash (USDT)" : asset;
      const pct = document.createElement("span");
      pct.className = "pct";
      pct.textContent = (+percent).toFixed(2) + "%";
      item.append(dot, name, pct);
      legend.append(item);
    });
    const label = svg("text", { x: 60, y: 60, "text-anchor": "middle", class: "donut-total" });
    label.textContent = T.money(total, 0);
    const caption = svg("text", { x: 60, y: 70, "text-anchor": "middle", class: "donut-caption" });
    caption.textContent = "USDT total";
    chart.append(label, caption);
  }

  function cell(text, className) {
    const td = document.createElement("td");
    if (className) td.className = className;
    td.textContent = text;
    return td;
  }

  function drawHoldings(holdings) {
    const body = document.getElementById("holdings-body");
    body.replaceChildren();
    if (!holdings.length) {
      const row = document.createElement("tr");
      const td = cell("", "muted");
      td.colSpan = 6;
      td.append("No holdings yet. ");
      const link = document.createElement("a");
      link.href = "/market";
      link.textContent = "Make your first trade →";
      td.append(link);
      row.append(td);
      body.append(row);
      return;
    }
    for (const h of holdings) {
      const row = document.createElement("tr");
      row.dataset.symbol = h.symbol;
      const asset = document.createElement("td");
      asset.className = "asset-cell";
      const name = document.createElement("b");
      name.textContent = h.asset;
      const symbol = document.createElement("span");
      symbol.textContent = h.symbol;
      asset.append(name, symbol);
      const pnl = cell(T.signed(h.pnl) + " (" + T.signed(h.pnl_percent, "%") + ")", "num");
      T.trend(pnl, h.pnl);
      row.append(
        asset,
        cell(T.quantity(h.quantity), "num"),
        cell(T.price(h.average_price), "num"),
        cell(h.price === null ? "—" : T.price(h.price), "num"),
        cell(T.money(h.market_value), "num"),
        pnl,
      );
      body.append(row);
    }
  }

  function drawSummary(p) {
    document.getElementById("total-value").textContent = T.money(p.total_value) + " USDT";
    document.getElementById("cash").textContent = T.money(p.cash) + " USDT";
    const pnl = document.getElementById("pnl");
    pnl.textContent = T.signed(p.pnl);
    T.trend(pnl, p.pnl);
    const realized = document.getElementById("realized-pnl");
    realized.textContent = T.signed(p.realized_pnl);
    T.trend(realized, p.realized_pnl);
  }

  async function refresh() {
    try {
      const p = await T.api("GET", "/api/portfolio");
      drawSummary(p);
      drawAllocation(p.allocation, p.total_value);
      drawHoldings(p.holdings);
      T.notice("");
    } catch (error) {
      if (error.status === 401) {
        location.replace("/login?next=/portfolio");
        return;
      }
      T.notice("Could not load the portfolio: " + error.detail, "error");
    }
  }

  T.requireLogin().then(() => {
    refresh();
    setInterval(() => {
      if (!document.hidden) refresh();
    }, REFRESH_MS);
  });
})();
