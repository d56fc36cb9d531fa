// Veto dashboard: live updates over server-sent events, tenant switch. No build step.
(function () {
  "use strict";
  function start() {
    document.querySelectorAll("select[data-autosubmit]").forEach(function (el) {
      el.addEventListener("change", function () { el.form.submit(); });
    });
    var csrf = document.querySelector("input[name=csrf_token]");
    document.body.addEventListener("htmx:configRequest", function (evt) {
      if (csrf) { evt.detail.headers["X-CSRF-Token"] = csrf.value; }
    });
    // A refresh of the list keeps the reason boxes (hx-preserve); if the browser cannot
    // move a focused node without blurring it, put the caret back where it was.
    var typing = null;
    document.body.addEventListener("htmx:beforeSwap", function () {
      var el = document.activeElement;
      typing = el && el.id && el.name === "reason" ?
        { id: el.id, start: el.selectionStart, end: el.selectionEnd } : null;
    });
    document.body.addEventListener("htmx:afterSwap", function () {
      if (!typing) { return; }
      var el = document.getElementById(typing.id);
      if (el && document.activeElement !== el) {
        el.focus();
        try { el.setSelectionRange(typing.start, typing.end); } catch (e) { /* not a text box */ }
      }
      typing = null;
    });
    var list = document.querySelector("[data-sse]");
    if (!list || !window.EventSource) { return; }
    var live = document.getElementById("live");
    var es = new EventSource(list.getAttribute("data-sse"));
    es.addEventListener("approvals", function () { htmx.trigger(list, "refresh"); });
    es.onopen = function () { if (live) { live.textContent = "live"; live.className = "muted live on"; } };
    es.onerror = function () { if (live) { live.textContent = "reconnecting…"; live.className = "muted live"; } };
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); } else { start(); }
})();
