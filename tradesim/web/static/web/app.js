// Shared by every page: the API client (CSRF, silent token refresh), the account
// header, formatting. No framework; each page's own script builds on window.Tradesim.
"use strict";

(function () {
  class ApiError extends Error {
    constructor(status, code, detail) {
      super(detail || code);
      this.status = status;
      this.code = code;
      this.detail = detail || code;
    }
  }

  function cookie(name) {
    const prefix = name + "=";
    for (const part of document.cookie.split(";")) {
      const item = part.trim();
      if (item.startsWith(prefix)) return decodeURIComponent(item.slice(prefix.length));
    }
    return "";
  }

  async function csrfToken() {
    let token = cookie("csrftoken");
    if (!token) {
      const response = await fetch("/api/auth/csrf", { credentials: "same-origin" });
      const body = await response.json();
      token = cookie("csrftoken") || body.csrf_token;
    }
    return token;
  }

  async function send(method, path, body) {
    const headers = { Accept: "application/json" };
    const init = { method, headers, credentials: "same-origin" };
    if (method !== "GET") {
      headers["X-CSRFToken"] = await csrfToken();
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body || {});
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (error) {
      throw new ApiError(0, "network_error", "The server could not be reached. Check your connection.");
    }
    if (response.status === 204) return null;
    let data = null;
    try {
      data = await response.json();
    } catch (error) {
      data = null;
    }
    if (!response.ok) {
      const code = (data && data.error) || "http_" + response.status;
      const detail = (data && data.detail) || response.statusText || "request failed";
      throw new ApiError(response.status, code, detail);
    }
    return data;
  }

  const SESSION_ERRORS = new Set(["not_authenticated", "token_expired", "token_invalid"]);
  let refreshing = null;

  // The access cookie lives 5 minutes; the refresh cookie a week. A 401 from an
  // expired access token is answered by one refresh and a retry.
  async function refreshSession() {
    if (!refreshing) {
      refreshing = send("POST", "/api/auth/refresh").finally(() => {
        setTimeout(() => { refreshing = null; }, 0);
      });
    }
    return refreshing;
  }

  async function api(method, path, body) {
    try {
      return await send(method, path, body);
    } catch (error) {
      if (!(error instanceof ApiError) || error.status !== 401 || !SESSION_ERRORS.has(error.code)) throw error;
      try {
        await refreshSession();
      } catch (refreshError) {
        throw error;
      }
      return send(method, path, body);
    }
  }

  const state = { me: null, meLoaded: null };

  function loadMe() {
    if (!state.meLoaded) {
      state.meLoaded = api("GET", "/api/me").then(
        (me) => { state.me = me; renderAccount(me); return me; },
        (error) => {
          if (error.status !== 401) console.warn("could not load the account", error);
          renderAccount(null);
          return null;
        },
      );
    }
    return state.meLoaded;
  }

  function setMe(me) {
    state.me = me;
    state.meLoaded = Promise.resolve(me);
    renderAccount(me);
  }

  function renderAccount(me) {
    for (const el of document.querySelectorAll("[data-auth]")) {
      el.hidden = (el.dataset.auth === "in") !== Boolean(me);
    }
    if (!me) return;
    document.getElementById("account-username").textContent = me.username;
    const badge = document.getElementById("tier-badge");
    badge.dataset.tier = me.tier;
    badge.textContent = me.tier === "pro" ? "Pro" : "Free";
    badge.title = me.tier === "pro" ? "Pro plan" : "Free plan: upgrade to trade every market";
  }

  async function requireLogin() {
    const me = await loadMe();
    if (!me) {
      const next = location.pathname + location.search;
      location.replace("/login?next=" + encodeURIComponent(next));
      return new Promise(() => {}); // never resolves: the page is going away
    }
    return me;
  }

  async function logout() {
    try {
      await send("POST", "/api/auth/logout");
    } finally {
      location.assign("/login");
    }
  }

  function notice(text, kind) {
    const el = document.getElementById("notice");
    if (!el) return;
    el.hidden = !text;
    el.textContent = text || "";
    el.className = "notice" + (kind ? " notice-" + kind : "");
  }

  function toNumber(value) {
    return typeof value === "number" ? value : parseFloat(value);
  }

  // Display only: amounts travel as decimal strings and are never computed with here.
  function money(value, digits) {
    const number = toNumber(value);
    if (!isFinite(number)) return "—";
    const places = digits === undefined ? 2 : digits;
    return number.toLocaleString("en-US", { minimumFractionDigits: places, maximumFractionDigits: places });
  }

  function price(value) {
    const number = toNumber(value);
    if (!isFinite(number)) return "—";
    return money(number, Math.abs(number) >= 1 ? 2 : 6);
  }

  function quantity(value) {
    const number = toNumber(value);
    if (!isFinite(number)) return "—";
    return number.toLocaleString("en-US", { maximumFractionDigits: 8 });
  }

  function signed(value, suffix) {
    const number = toNumber(value);
    if (!isFinite(number)) return "—";
    return (number > 0 ? "+" : "") + money(number) + (suffix || "");
  }

  function trend(el, value) {
    const number = toNumber(value);
    el.classList.toggle("up", number > 0);
    el.classList.toggle("down", number < 0);
  }

  function nextUrl(fallback) {
    const next = new URLSearchParams(location.search).get("next");
    // Only a path on this site: never an open redirect.
    return next && next.startsWith("/") && !next.startsWith("//") ? next : fallback;
  }

  document.addEventListener("DOMContentLoaded", () => {
    const button = document.getElementById("logout");
    if (button) button.addEventListener("click", logout);
    loadMe();
  });

  window.Tradesim = {
    ApiError, api, loadMe, setMe, requireLogin, notice, money, price, quantity, signed, trend, nextUrl, state,
  };
})();
