// plumbline's refinement room: keyboard navigation of the backlog, and
// live updates. On a "ranking" event from /events the backlog page
// re-fetches the rows of the page it shows and marks those that moved.
"use strict";
(function () {
  var rows = document.getElementById("rows");
  if (!rows) return;
  var current = -1;
  function all() { return rows.querySelectorAll("tr[data-key]"); }
  function select(i) {
    var list = all();
    if (!list.length) return;
    i = Math.max(0, Math.min(list.length - 1, i));
    if (current >= 0 && list[current]) list[current].classList.remove("current");
    current = i;
    list[i].classList.add("current");
    list[i].focus();
  }
  document.addEventListener("keydown", function (e) {
    var t = e.target;
    if (e.altKey || e.ctrlKey || e.metaKey) return;
    if (t && (t.tagName === "INPUT" || t.tagName === "SELECT" || t.tagName === "TEXTAREA")) return;
    if (e.key === "j") { select(current + 1); e.preventDefault(); }
    else if (e.key === "k") { select(current - 1); e.preventDefault(); }
    else if (e.key === "Enter" && current >= 0) {
      var link = all()[current] && all()[current].querySelector("a.title");
      if (link) { window.location.href = link.href; e.preventDefault(); }
    }
  });

  if (!window.EventSource) return;
  var live = document.getElementById("live");
  var pending = false, again = false;
  function refresh() {
    if (pending) { again = true; return; }
    pending = true;
    var before = {};
    all().forEach(function (r) { before[r.dataset.key] = r.dataset.rank; });
    fetch("/fragments/backlog" + window.location.search, { credentials: "same-origin" })
      .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.text(); })
      .then(function (html) {
        var key = current >= 0 && all()[current] ? all()[current].dataset.key : null;
        rows.innerHTML = html;
        var moved = 0;
        all().forEach(function (r, i) {
          if (before[r.dataset.key] !== r.dataset.rank) { r.classList.add("moved"); moved++; }
          if (r.dataset.key === key) { current = i; r.classList.add("current"); }
        });
        document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
        if (live) live.textContent = moved ? moved + " item(s) moved" : "up to date";
      })
      .catch(function (err) { if (live) live.textContent = "live update failed: " + err.message; })
      .then(function () { pending = false; if (again) { again = false; refresh(); } });
  }
  var events = null;
  function connect() {
    events = new EventSource("/events");
    // A "hello" after the first is a reconnection (the stream ends with an
    // idle connection, a restart, a page shown again): changes may have
    // come meanwhile.
    events.addEventListener("hello", function () {
      if (document.body.dataset.live === "on") refresh();
      document.body.dataset.live = "on";
    });
    events.addEventListener("ranking", refresh);
  }
  connect();
  // A page left (or kept in the back/forward cache) closes its stream, so
  // that it does not hold one of the browser's six HTTP/1.1 connections to
  // this host; shown again, it opens a new one.
  window.addEventListener("pagehide", function () {
    if (events) { events.close(); events = null; }
  });
  window.addEventListener("pageshow", function (e) {
    if (e.persisted && !events) connect();
  });
})();
