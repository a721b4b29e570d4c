// Shared helpers: every state-changing request carries the page's CSRF token.
"use strict";
window.Unmask = (function () {
  function csrfToken() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }

  async function postForm(url, formData) {
    const response = await fetch(url, {
      method: "POST",
      body: formData,
      credentials: "same-origin",
      headers: { "X-CSRFToken": csrfToken(), Accept: "application/json" },
    });
    let body = null;
    try {
      body = await response.json();
    } catch (e) {
      body = { error: { message: "the server sent an unexpected answer (" + response.status + ")" } };
    }
    return { ok: response.ok, status: response.status, body: body };
  }

  function errorMessage(body, fallback) {
    return (body && body.error && body.error.message) || fallback || "something went wrong";
  }

  function percent(p) {
    return p === null || p === undefined ? "–" : Math.round(p * 100) + "%";
  }

  return { csrfToken: csrfToken, postForm: postForm, errorMessage: errorMessage, percent: percent };
})();
