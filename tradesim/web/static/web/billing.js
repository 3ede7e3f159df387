// The billing page: the current tier, the plans, and upgrading through Stripe
// Checkout. After paying, Stripe sends the browser back here with ?checkout=success;
// the tier changes when Stripe's invoice.paid webhook arrives, so the page waits for
// it rather than trusting the redirect.
"use strict";

(function () {
  const T = window.Tradesim;
  const WAIT_MS = 60000;
  const POLL_MS = 1000;
  const STATUS_TEXT = {
    incomplete: "(waiting for the first payment)",
    active: "(active)",
    past_due: "(payment failed: Stripe is retrying; update your card to keep Pro)",
    canceled: "(canceled)",
  };

  function dateOf(seconds) {
    return new Date(seconds * 1000).toLocaleDateString([], { year: "numeric", month: "short", day: "numeric" });
  }

  function render(billing) {
    const tier = document.getElementById("current-tier");
    tier.dataset.tier = billing.tier;
    tier.textContent = billing.tier === "pro" ? "Pro" : "Free";
    const sub = billing.subscription;
    let status = sub ? STATUS_TEXT[sub.status] || "" : "";
    if (sub && sub.paid_through && sub.status !== "canceled") status += " · paid through " + dateOf(sub.paid_through);
    document.getElementById("subscription-status").textContent = status;
    T.setMe({ ...T.state.me, tier: billing.tier });

    const plans = document.getElementById("plans");
    plans.replaceChildren();
    for (const plan of billing.plans) {
      const card = document.createElement("article");
      card.className = "card plan" + (plan.tier === billing.tier ? " current" : "");
      card.dataset.tier = plan.tier;
      const name = document.createElement("h2");
      name.textContent = plan.name;
      const price = document.createElement("div");
      price.className = "plan-price";
      price.textContent = plan.price;
      const perks = document.createElement("ul");
      for (const perk of plan.perks) {
        const li = document.createElement("li");
        li.textContent = perk;
        perks.append(li);
      }
      card.append(name, price, perks);
      if (plan.tier === billing.tier) {
        const current = document.createElement("button");
        current.className = "btn btn-ghost";
        current.disabled = true;
        current.textContent = "Current plan";
        card.append(current);
      } else if (plan.tier === "pro") {
        const upgrade = document.createElement("button");
        upgrade.className = "btn btn-primary";
        upgrade.id = "upgrade";
        upgrade.textContent = "Upgrade to Pro";
        upgrade.disabled = !billing.checkout_enabled;
        if (!billing.checkout_enabled) upgrade.title = "Billing is not configured on this server";
        upgrade.addEventListener("click", () => startCheckout(upgrade));
        card.append(upgrade);
      }
      plans.append(card);
    }
  }

  async function startCheckout(button) {
    button.disabled = true;
    button.textContent = "Opening checkout…";
    try {
      const session = await T.api("POST", "/api/billing/checkout");
      location.assign(session.url);
    } catch (error) {
      T.notice("Could not start the checkout: " + error.detail, "error");
      button.disabled = false;
      button.textContent = "Upgrade to Pro";
    }
  }

  async function waitForPro() {
    const deadline = Date.now() + WAIT_MS;
    T.notice("Payment received. Activating Pro…");
    while (Date.now() < deadline) {
      const billing = await T.api("GET", "/api/billing");
      render(billing);
      if (billing.tier === "pro") {
        T.notice("Welcome to Pro: every market is open to you.", "success");
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
    T.notice("Stripe has not confirmed the payment yet. This page will show Pro once it does; try reloading in a minute.", "error");
  }

  async function start() {
    await T.requireLogin();
    const outcome = new URLSearchParams(location.search).get("checkout");
    try {
      render(await T.api("GET", "/api/billing"));
      if (outcome === "success") await waitForPro();
      else if (outcome === "canceled") T.notice("Checkout canceled: you were not charged.");
    } catch (error) {
      T.notice("Could not load your plan: " + error.detail, "error");
    }
  }

  start();
})();
