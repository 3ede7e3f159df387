// Log in and register: one form, posted to the endpoint named on it.
"use strict";

(function () {
  const T = window.Tradesim;
  const form = document.getElementById("auth-form");
  const errorBox = document.getElementById("form-error");

  const MESSAGES = {
    invalid_credentials: "Wrong username or password.",
    username_taken: "That username is taken. Pick another one.",
    network_error: "The server could not be reached. Try again.",
  };

  // Carry ?next= across the log in / register links.
  const next = new URLSearchParams(location.search).get("next");
  if (next) {
    for (const link of document.querySelectorAll("a[data-keep-next]")) {
      link.href += "?next=" + encodeURIComponent(next);
    }
  }

  function showError(text) {
    errorBox.hidden = !text;
    errorBox.textContent = text || "";
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    showError("");
    const data = new FormData(form);
    const username = String(data.get("username") || "").trim();
    const password = String(data.get("password") || "");
    if (!username || !password) {
      showError("Enter a username and a password.");
      return;
    }
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const me = await T.api("POST", form.dataset.endpoint, { username, password });
      T.setMe(me);
      location.assign(T.nextUrl("/market"));
    } catch (error) {
      showError(MESSAGES[error.code] || error.detail);
      button.disabled = false;
    }
  });
})();
