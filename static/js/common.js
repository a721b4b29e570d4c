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

  // The two thresholds a result or model card carries ({real, fake}, on the calibrated
  // probability); an older card's single `threshold` is both.
  function thresholdsOf(rules) {
    if (rules.thresholds) return rules.thresholds;
    return { real: rules.threshold, fake: rules.threshold };
  }

  // The verdict for a fake probability, detector/results.py's face_verdict, the server's rule:
  // "uncertain" between the thresholds, so a score that cannot tell accuses no one. The job page,
  // the webcam page and the on-device engine all judge with this one function.
  function verdict(p, rules) {
    if (p === null || p === undefined) return null;
    const t = thresholdsOf(rules);
    return p >= t.fake ? "fake" : p < t.real ? "real" : "uncertain";
  }

  return {
    csrfToken: csrfToken,
    postForm: postForm,
    errorMessage: errorMessage,
    percent: percent,
    thresholdsOf: thresholdsOf,
    verdict: verdict,
  };
})();
