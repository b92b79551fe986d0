// cairn's one script: small helpers the server-rendered pages use. Every page works
// without it where it reasonably can (forms post normally); this adds conveniences.
//
//   - fetch(): non-GET same-origin requests get the X-CSRF-Token header from
//     <meta name="csrf"> automatically; cairn.post(url, json) posts JSON.
//   - <input type="checkbox" data-select-all="item">: toggles every checkbox named
//     "item" in the same form (or table); rows of checked boxes get class "selected".
//   - <time datetime="2026-12-03T10:00:00Z">: shown as "3 h ago" / "in 5 min", the
//     original text kept as the tooltip (opt out with data-absolute).
//   - data-confirm="Really?" on a form or button: asks before submitting.
//   - cairn.live(url, handlers): EventSource with JSON data and reconnects;
//     cairn.progress(el, fraction): fills a <div class="bar"><span></span></div> or <progress>.
//   - the current section's nav link gets class "active".
(function () {
  "use strict";

  function csrf() {
    var m = document.querySelector('meta[name="csrf"]');
    return m ? m.getAttribute("content") || "" : "";
  }

  // fetch with the CSRF header on state-changing same-origin requests.
  var plainFetch = window.fetch ? window.fetch.bind(window) : null;
  if (plainFetch) {
    window.fetch = function (input, init) {
      init = init || {};
      var method = (init.method || (input && input.method) || "GET").toUpperCase();
      var url = typeof input === "string" ? input : (input && input.url) || "";
      var same = new URL(url, location.href).origin === location.origin;
      if (same && method !== "GET" && method !== "HEAD") {
        var headers = new Headers(init.headers || (input && input.headers) || {});
        if (!headers.has("X-CSRF-Token")) headers.set("X-CSRF-Token", csrf());
        init.headers = headers;
        if (!init.credentials) init.credentials = "same-origin";
      }
      return plainFetch(input, init);
    };
  }

  function post(url, body) {
    return fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(body === undefined ? {} : body),
    });
  }

  // "3 h ago", "in 5 min", "just now".
  function ago(date, now) {
    now = now || Date.now();
    var s = Math.round((now - date.getTime()) / 1000);
    var future = s < 0;
    s = Math.abs(s);
    var text;
    if (s < 45) return future ? "in a moment" : "just now";
    if (s < 90 * 60) text = Math.round(s / 60) + " min";
    else if (s < 36 * 3600) text = Math.round(s / 3600) + " h";
    else if (s < 45 * 86400) text = Math.round(s / 86400) + " d";
    else if (s < 548 * 86400) text = Math.round(s / (30.44 * 86400)) + " mo";
    else text = (s / (365.25 * 86400)).toFixed(1) + " y";
    return future ? "in " + text : text + " ago";
  }

  function relativeTimes(root) {
    var els = (root || document).querySelectorAll("time[datetime]:not([data-absolute])");
    for (var i = 0; i < els.length; i++) {
      var el = els[i];
      var d = new Date(el.getAttribute("datetime"));
      if (isNaN(d.getTime())) continue;
      if (!el.hasAttribute("title")) el.setAttribute("title", el.textContent.trim() || d.toLocaleString());
      el.textContent = ago(d);
    }
  }

  function bytes(n) {
    var units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    var i = 0;
    n = Number(n) || 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i === 0 ? n : n.toFixed(n < 10 ? 2 : n < 100 ? 1 : 0)) + " " + units[i];
  }

  function progress(el, fraction) {
    if (typeof el === "string") el = document.getElementById(el);
    if (!el) return;
    var f = Math.max(0, Math.min(1, Number(fraction) || 0));
    if (el.tagName === "PROGRESS") { el.max = 1; el.value = f; }
    else {
      var span = el.querySelector("span") || el.appendChild(document.createElement("span"));
      span.style.width = (f * 100).toFixed(1) + "%";
    }
    el.setAttribute("data-percent", (f * 100).toFixed(1));
  }

  // EventSource helper: handlers maps event names ("message" for unnamed events) to
  // functions of the parsed JSON data (the raw string when it is not JSON). The browser
  // reconnects by itself; handlers.error is called on each interruption.
  function live(url, handlers) {
    if (!window.EventSource) return null;
    var es = new EventSource(url);
    Object.keys(handlers || {}).forEach(function (name) {
      if (name === "error" || name === "open") return;
      es.addEventListener(name, function (ev) {
        var data = ev.data;
        try { data = JSON.parse(ev.data); } catch (e) { /* not JSON */ }
        handlers[name](data, ev);
      });
    });
    if (handlers && handlers.error) es.onerror = handlers.error;
    if (handlers && handlers.open) es.onopen = handlers.open;
    return es;
  }

  function selectAll() {
    document.addEventListener("change", function (ev) {
      var box = ev.target;
      if (!box || box.type !== "checkbox") return;
      var scope = box.closest("form") || box.closest("table") || document;
      if (box.hasAttribute("data-select-all")) {
        var name = box.getAttribute("data-select-all") || "item";
        var items = scope.querySelectorAll('input[type="checkbox"][name="' + name + '"]');
        for (var i = 0; i < items.length; i++) {
          if (items[i].disabled) continue;
          items[i].checked = box.checked;
          mark(items[i]);
        }
      } else if (box.name) {
        mark(box);
        var all = scope.querySelector('input[data-select-all="' + box.name + '"]');
        if (all) {
          var boxes = scope.querySelectorAll('input[type="checkbox"][name="' + box.name + '"]');
          var on = 0;
          for (var j = 0; j < boxes.length; j++) if (boxes[j].checked) on++;
          all.checked = on > 0 && on === boxes.length;
          all.indeterminate = on > 0 && on < boxes.length;
        }
      }
    });
    function mark(b) {
      var tr = b.closest("tr");
      if (tr) tr.classList.toggle("selected", b.checked);
    }
  }

  function confirms() {
    document.addEventListener("submit", function (ev) {
      var f = ev.target;
      var btn = ev.submitter;
      var msg = (btn && btn.getAttribute("data-confirm")) || (f && f.getAttribute("data-confirm"));
      if (msg && !window.confirm(msg)) ev.preventDefault();
    }, true);
  }

  function activeNav() {
    var links = document.querySelectorAll("body > nav a[href]:not(.brand)");
    var path = location.pathname;
    var best = null;
    for (var i = 0; i < links.length; i++) {
      var h = links[i].getAttribute("href");
      var hit = h === "/" ? path === "/" : path === h || path.indexOf(h + "/") === 0;
      if (hit && (!best || h.length > best.getAttribute("href").length)) best = links[i];
    }
    if (best) best.classList.add("active");
  }

  window.cairn = { csrf: csrf, post: post, ago: ago, bytes: bytes, progress: progress, live: live, relativeTimes: relativeTimes };

  function start() {
    relativeTimes();
    setInterval(relativeTimes, 30000);
    selectAll();
    confirms();
    activeNav();
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
