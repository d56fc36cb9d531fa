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
