/* Interlock live dashboard: polls admin/dashboard/data, derives rates from successive
 * samples, draws uPlot charts and plain tables. No build step, no dependencies but the
 * vendored uPlot. All text reaches the page through textContent (never innerHTML), and
 * the admin key lives in this tab's sessionStorage only (sent as a Bearer header). */
(function () {
  "use strict";

  var KEY_SLOT = "interlock.dashboard.adminKey";
  var POLL_MS = 1500;
  var ALERTS_MS = 5000;
  var KEEP_S = 300;         // the charts show the last 5 minutes
  var RATE_WINDOW_S = 10;   // requests/s tile
  var RECENT_WINDOW_S = 30; // percentiles, error rate, hit rate
  var DATA_URL = "admin/dashboard/data";
  var ALERT_URLS = ["admin/alerts", "admin/budgets/alerts"];

  var samples = [];   // {t, s}: server time (seconds) and the sample
  var charts = {};
  var pollTimer = null;
  var alertsTimer = null;
  var alertUrl = 0;
  var lastOk = 0;

  function $(id) { return document.getElementById(id); }

  function setText(id, text) {
    var el = $(id);
    if (el && el.textContent !== text) { el.textContent = text; }
  }

  function fmtInt(n) {
    return n === null || n === undefined ? "—" : Math.round(n).toLocaleString("en-US");
  }
  function fmtRate(n) {
    if (n === null || n === undefined || !isFinite(n)) { return "—"; }
    return n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n.toFixed(2);
  }
  function fmtMs(ms) {
    if (ms === null || ms === undefined || !isFinite(ms)) { return "—"; }
    if (ms >= 10000) { return (ms / 1000).toFixed(1) + " s"; }
    return (ms >= 100 ? ms.toFixed(0) : ms.toFixed(1)) + " ms";
  }
  function fmtPct(x) {
    if (x === null || x === undefined || !isFinite(x)) { return "—"; }
    var p = x * 100;
    return (p === 0 || p >= 10 ? p.toFixed(0) : p.toFixed(1)) + " %";
  }
  function fmtUsd(text) {
    if (text === null || text === undefined) { return "—"; }
    var v = Number(text);
    if (!isFinite(v)) { return String(text); }
    if (v !== 0 && Math.abs(v) < 0.01) { return "$" + v.toPrecision(2); } // $0.000024, not $0.0000
    return "$" + (v !== 0 && Math.abs(v) < 1 ? v.toFixed(4) : v.toLocaleString("en-US", {
      minimumFractionDigits: 2, maximumFractionDigits: 2 }));
  }
  function fmtAge(s) {
    if (s === null || s === undefined || !isFinite(s)) { return "—"; }
    if (s < 1) { return "none"; }
    if (s < 120) { return s.toFixed(0) + " s"; }
    if (s < 7200) { return (s / 60).toFixed(0) + " min"; }
    return (s / 3600).toFixed(1) + " h";
  }
  function fmtTime(value) {
    if (!value) { return "—"; }
    var d = typeof value === "number" ? new Date(value * 1000) : new Date(value);
    return isNaN(d.getTime()) ? String(value) : d.toLocaleString();
  }

  /* -- the latency histogram --------------------------------------------------------- */

  function bounds(sample) {
    return sample.traffic.latency.bounds.map(function (b) { return b === "+Inf" ? Infinity : b; });
  }

  // Prometheus' histogram_quantile over cumulative counts.
  function quantile(q, les, counts) {
    var n = counts.length ? counts[counts.length - 1] : 0;
    if (n <= 0) { return null; }
    var rank = q * n, prevB = 0, prevC = 0;
    for (var i = 0; i < les.length; i++) {
      if (counts[i] >= rank) {
        if (les[i] === Infinity) { return prevB; }
        if (counts[i] === prevC) { return les[i]; }
        return prevB + (les[i] - prevB) * (rank - prevC) / (counts[i] - prevC);
      }
      prevB = les[i]; prevC = counts[i];
    }
    return prevB;
  }

  // Bucket counts of the requests finished between two samples.
  function bucketDelta(a, b) {
    var la = a.traffic.latency, lb = b.traffic.latency;
    if (la.bounds.length !== lb.bounds.length) { return { les: bounds(b), counts: lb.counts }; }
    return { les: bounds(b), counts: lb.counts.map(function (c, i) { return c - la.counts[i]; }) };
  }

  function percentilesBetween(a, b) {
    var d = bucketDelta(a, b);
    return [0.5, 0.95, 0.99].map(function (q) {
      var v = quantile(q, d.les, d.counts);
      return v === null ? null : v * 1000;
    });
  }

  /* -- rates from successive samples ---------------------------------------------------- */

  function sampleBefore(seconds) {
    var last = samples[samples.length - 1];
    var pick = samples[0];
    for (var i = samples.length - 1; i >= 0; i--) {
      if (last.t - samples[i].t >= seconds) { pick = samples[i]; break; }
    }
    return pick;
  }

  function between(a, b) {
    var dt = b.t - a.t, ta = a.s.traffic, tb = b.s.traffic;
    var dreq = tb.requests_total - ta.requests_total;
    var derr = tb.errors_total - ta.errors_total;
    var dans = tb.cache.answered_total - ta.cache.answered_total;
    var dhit = tb.cache.hits_total - ta.cache.hits_total;
    var byType = {};
    Object.keys(tb.errors_by_type).forEach(function (k) {
      byType[k] = tb.errors_by_type[k] - (ta.errors_by_type[k] || 0);
    });
    return {
      dt: dt,
      rps: dt > 0 ? dreq / dt : null,
      eps: dt > 0 ? derr / dt : null,
      errorRate: dreq > 0 ? derr / dreq : (dt > 0 ? 0 : null),
      hitRate: dans > 0 ? Math.min(1, dhit / dans) : null,
      requests: dreq,
      byType: byType,
      pct: percentilesBetween(a.s, b.s)
    };
  }

  /* -- charts ---------------------------------------------------------------------------- */

  var COLORS = { blue: "#2563eb", red: "#dc2626", green: "#16a34a", amber: "#d97706",
    violet: "#7c3aed", slate: "#475569" };

  function chartWidth(el) { return Math.max(280, el.parentNode.clientWidth - 8); }

  function makeChart(id, series, yLabel, fmt, minY) {
    var el = $(id);
    var opts = {
      width: chartWidth(el),
      height: 190,
      cursor: { drag: { x: false, y: false } },
      scales: {
        // At least a minute across, so the time axis reads in seconds, not milliseconds.
        x: { time: true, range: function (u, min, max) { return max === null ? [min, max] : [Math.min(min, max - 60), max]; } },
        y: { range: function (u, min, max) { return [0, Math.max(max || 0, minY) * 1.15]; } }
      },
      axes: [
        { stroke: "#475569", grid: { stroke: "#e2e8f0" } },
        { stroke: "#475569", grid: { stroke: "#e2e8f0" }, size: 56, label: yLabel,
          values: function (u, vals) { return vals.map(function (v) { return fmt(v); }); } }
      ],
      series: [{ label: "time", value: function (u, v) { return v === null ? "—" : new Date(v * 1000).toLocaleTimeString(); } }]
        .concat(series.map(function (s) {
          return { label: s.label, stroke: s.color, width: 2, spanGaps: false,
            points: { show: false },
            value: function (u, v) { return v === null || v === undefined ? "—" : fmt(v); } };
        }))
    };
    var data = [[]].concat(series.map(function () { return []; }));
    charts[id] = new uPlot(opts, data, el);
  }

  function initCharts() {
    if (charts["chart-rps"] || typeof uPlot === "undefined") { return; }
    makeChart("chart-rps", [{ label: "requests/s", color: COLORS.blue },
      { label: "errors/s", color: COLORS.red }], "req/s", fmtRate, 1);
    makeChart("chart-latency", [{ label: "p50", color: COLORS.green },
      { label: "p95", color: COLORS.amber }, { label: "p99", color: COLORS.red }], "ms",
      function (v) { return fmtMs(v); }, 1);
    makeChart("chart-rates", [{ label: "cache hit rate", color: COLORS.violet },
      { label: "error rate", color: COLORS.red }], "%", function (v) { return v.toFixed(v < 10 ? 1 : 0) + "%"; }, 10);
    makeChart("chart-queue", [{ label: "queue depth", color: COLORS.slate },
      { label: "in flight", color: COLORS.blue }], "count", function (v) { return Number.isInteger(v) ? fmtInt(v) : v.toFixed(1); }, 4);
    window.addEventListener("resize", function () {
      Object.keys(charts).forEach(function (id) {
        charts[id].setSize({ width: chartWidth($(id)), height: 190 });
      });
    });
  }

  function updateCharts() {
    if (!charts["chart-rps"]) { return; }
    var x = [], rps = [], eps = [], p50 = [], p95 = [], p99 = [], hit = [], err = [], q = [], fl = [];
    for (var i = 1; i < samples.length; i++) {
      var r = between(samples[i - 1], samples[i]);
      var s = samples[i].s;
      x.push(samples[i].t);
      rps.push(r.rps); eps.push(r.eps);
      p50.push(r.pct[0]); p95.push(r.pct[1]); p99.push(r.pct[2]);
      hit.push(r.hitRate === null ? null : r.hitRate * 100);
      err.push(r.errorRate === null ? null : r.errorRate * 100);
      q.push(s.queue.depth); fl.push(s.traffic.in_flight);
    }
    charts["chart-rps"].setData([x, rps, eps]);
    charts["chart-latency"].setData([x, p50, p95, p99]);
    charts["chart-rates"].setData([x, hit, err]);
    charts["chart-queue"].setData([x, q, fl]);
  }

  /* -- tables ---------------------------------------------------------------------------- */

  function cell(row, text, cls, title) {
    var td = document.createElement("td");
    td.textContent = text;
    if (cls) { td.className = cls; }
    if (title) { td.title = title; }
    row.appendChild(td);
    return td;
  }

  function fill(tbodyId, items, render, emptyText, columns) {
    var tbody = $(tbodyId);
    var rows = document.createDocumentFragment();
    if (!items.length) {
      var tr = document.createElement("tr");
      var td = cell(tr, emptyText, "empty");
      td.colSpan = columns;
      rows.appendChild(tr);
    }
    items.forEach(function (item) {
      var row = document.createElement("tr");
      render(row, item);
      rows.appendChild(row);
    });
    tbody.replaceChildren(rows);
  }

  function meterCell(row, used, title) {
    var td = document.createElement("td");
    if (used === null || used === undefined) {
      td.textContent = "—";
    } else {
      var m = document.createElement("meter");
      m.min = 0; m.max = 1; m.low = 0.5; m.high = 0.8; m.optimum = 0;
      m.value = Math.min(1, used);
      td.appendChild(m);
      var span = document.createElement("span");
      span.className = "pct";
      span.textContent = " " + fmtPct(used);
      td.appendChild(span);
    }
    if (title) { td.title = title; }
    row.appendChild(td);
  }

  function renderErrors(s, recent) {
    var types = s.error_types;
    fill("errors-body", types, function (row, t) {
      row.dataset.type = t.type;
      cell(row, t.type.replace("_", " "), "", t.meaning);
      var d = recent ? recent.byType[t.type] || 0 : null;
      cell(row, recent && recent.dt > 0 ? fmtRate(d / recent.dt) : "—", "num");
      cell(row, recent && recent.requests > 0 ? fmtPct(d / recent.requests) : "—", "num");
      cell(row, fmtInt(s.traffic.errors_by_type[t.type] || 0), "num count");
    }, "", 4);
  }

  function renderCircuits(s) {
    fill("circuits-body", s.circuits, function (row, c) {
      row.dataset.deployment = c.deployment;
      cell(row, c.deployment);
      cell(row, c.provider + " / " + c.model, "muted");
      var st = cell(row, c.state.replace("_", "-"), "state state-" + c.state,
        c.state === "open" ? "open for another " + fmtAge(c.open_for_s) : "");
      st.dataset.state = c.state;
      cell(row, fmtInt(c.trips), "num");
      cell(row, c.latency_ms === null ? "—" : fmtMs(c.latency_ms), "num");
    }, "no deployments configured", 5);
  }

  function renderSpend(s) {
    var sp = s.spend;
    ["team", "feature"].forEach(function (dim) {
      fill("spend-" + dim + "-body", sp["by_" + dim], function (row, r) {
        row.dataset.group = r.group;
        cell(row, r.group);
        cell(row, fmtInt(r.requests), "num");
        cell(row, fmtUsd(r.cost_usd), "num");
        var b = r.budget;
        meterCell(row, b ? b.used : null, b ? fmtUsd(b.spent_usd) + " of " + fmtUsd(b.limit_usd) +
          " (" + b.window + " budget " + b.id + ")" : "no budget covers this " + dim);
      }, "no spend today", 4);
    });
    fill("spend-model-body", sp.by_model, function (row, r) {
      row.dataset.group = r.group;
      cell(row, r.group);
      cell(row, fmtInt(r.requests), "num");
      cell(row, fmtUsd(r.cost_usd), "num");
      cell(row, fmtPct(r.share), "num");
    }, "no spend today", 4);
  }

  function renderBudgets(s) {
    fill("budgets-body", s.budgets, function (row, b) {
      row.dataset.budget = b.id;
      cell(row, b.description, "", b.id);
      cell(row, b.window + (b.timezone && b.timezone !== "UTC" ? " (" + b.timezone + ")" : ""));
      cell(row, fmtUsd(b.spent_usd), "num");
      cell(row, fmtUsd(b.reserved_usd), "num", "held for requests in flight");
      cell(row, b.limit_usd ? fmtUsd(b.limit_usd) + " limit" : fmtUsd(b.budget_usd) + " budget", "num");
      meterCell(row, b.used, b.burn_usd_per_hour ? "burning " + fmtUsd(b.burn_usd_per_hour) + " per hour" : "");
      cell(row, b.exhausted_at ? fmtTime(b.exhausted_at) : "—", "", "projected from this window's burn rate");
    }, "no budgets configured", 7);
  }

  /* -- alerts (the alert engine's /admin/alerts, or budget alerts before it exists) ------ */

  function alertList(body) {
    if (Array.isArray(body)) { return body; }
    var list = body.active || body.data || body.alerts || [];
    var budget = Array.isArray(body.budget_alerts) ? body.budget_alerts : [];
    return (Array.isArray(list) ? list : []).concat(budget);
  }

  function isActive(a) {
    var st = String(a.state || a.status || "firing").toLowerCase();
    return st !== "resolved" && st !== "ok" && st !== "inactive";
  }

  function renderAlerts(list) {
    var active = list.filter(isActive).slice(-50).reverse();
    fill("alerts-body", active, function (row, a) {
      var sev = String(a.severity || a.level || "info").toLowerCase();
      cell(row, sev, "sev sev-" + sev.replace(/[^a-z]/g, ""));
      var what = a.summary || a.description || a.message || a.rule || a.name || a.budget_id || "alert";
      var detail = [a.threshold, a.value !== undefined ? "value " + a.value : "", a.spent_usd ? "spent " + fmtUsd(a.spent_usd) : ""]
        .filter(Boolean).join(" · ");
      cell(row, detail ? what + " — " + detail : String(what));
      cell(row, fmtTime(a.since || a.started_at || a.fired_at || a.at));
    }, "no active alerts", 3);
    var badge = $("alert-count");
    badge.hidden = false;
    badge.textContent = active.length ? active.length + " alert" + (active.length > 1 ? "s" : "") : "no alerts";
    badge.className = "badge " + (active.length ? "badge-warn" : "badge-ok");
  }

  function pollAlerts() {
    var key = sessionStorage.getItem(KEY_SLOT);
    if (!key) { return; }
    request(ALERT_URLS[alertUrl], key).then(function (res) {
      if (res.status === 404 && alertUrl + 1 < ALERT_URLS.length) {
        alertUrl += 1;
        return pollAlerts();
      }
      if (res.ok) { return res.json().then(function (body) { renderAlerts(alertList(body)); }); }
      return null;
    }).catch(function () { /* the data poll reports connection problems */ });
  }

  /* -- the tiles ------------------------------------------------------------------------- */

  function renderTiles(s, recent, rateWin) {
    var t = s.traffic;
    setText("kpi-rps", rateWin ? fmtRate(rateWin.rps) : "—");
    setText("total-requests", fmtInt(t.requests_total));
    setText("kpi-p50", recent ? fmtMs(recent.pct[0]) : "—");
    setText("kpi-p95", recent ? fmtMs(recent.pct[1]) : "—");
    setText("kpi-p99", recent ? fmtMs(recent.pct[2]) : "—");
    setText("total-p95", fmtMs(t.latency.p95_ms));
    setText("kpi-error-rate", recent ? fmtPct(recent.errorRate) : "—");
    setText("total-errors", fmtInt(t.errors_total));
    setText("kpi-hit-rate", recent ? fmtPct(recent.hitRate) : "—");
    setText("total-cache-hits", fmtInt(t.cache.hits_total));
    setText("kpi-saved", fmtUsd(s.spend.saved_usd));
    setText("today-hits", fmtInt(s.spend.cache_hits));
    setText("kpi-spend", fmtUsd(s.spend.total_usd));
    setText("today-requests", fmtInt(s.spend.requests));
    setText("kpi-queue", s.queue.depth === null ? "—" : fmtInt(s.queue.depth));
    setText("queue-age", fmtAge(s.queue.oldest_age_s));
    setText("kpi-inflight", fmtInt(t.in_flight));
    setText("total-retries", fmtInt(t.reliability.retries_total) + " / " + fmtInt(t.reliability.fallbacks_total));
    var d = s.degradation, badge = $("degradation");
    badge.hidden = false;
    badge.textContent = "level: " + d.level + (d.mode === "forced" ? " (forced)" : "");
    badge.className = "badge level-" + d.level;
    badge.dataset.level = d.level;
    if (d.reason) { badge.title = "Degradation level " + d.level + ": " + d.reason; }
  }

  function render() {
    var last = samples[samples.length - 1];
    var s = last.s;
    var recent = samples.length > 1 ? between(sampleBefore(RECENT_WINDOW_S), last) : null;
    var rateWin = samples.length > 1 ? between(sampleBefore(RATE_WINDOW_S), last) : null;
    renderTiles(s, recent, rateWin);
    renderErrors(s, recent);
    renderCircuits(s);
    renderSpend(s);
    renderBudgets(s);
    updateCharts();
  }

  /* -- polling and sign-in --------------------------------------------------------------- */

  function request(url, key) {
    return fetch(url, { headers: { "Authorization": "Bearer " + key, "Accept": "application/json" },
      cache: "no-store", credentials: "omit", redirect: "error" });
  }

  function addSample(s) {
    var prev = samples[samples.length - 1];
    if (prev && s.traffic.requests_total < prev.s.traffic.requests_total) { samples = []; } // restarted
    samples.push({ t: s.time, s: s });
    while (samples.length > 2 && samples[samples.length - 1].t - samples[0].t > KEEP_S) { samples.shift(); }
  }

  function updateLive() {
    var el = $("live");
    el.hidden = false;
    var age = (Date.now() - lastOk) / 1000;
    if (lastOk && age < 5) {
      el.textContent = "live · updated " + new Date(lastOk).toLocaleTimeString();
      el.className = "live live-ok";
    } else {
      el.textContent = lastOk ? "no answer for " + age.toFixed(0) + " s — retrying" : "connecting…";
      el.className = "live live-stale";
    }
  }

  function poll() {
    var key = sessionStorage.getItem(KEY_SLOT);
    if (!key) { return; }
    request(DATA_URL, key).then(function (res) {
      if (res.status === 401 || res.status === 403) {
        signOut(res.status === 401 ? "The admin key is no longer accepted. Sign in again."
          : "That key is not an admin key.");
        return null;
      }
      if (!res.ok) { throw new Error("HTTP " + res.status); }
      return res.json().then(function (s) {
        addSample(s);
        lastOk = Date.now();
        render();
      });
    }).catch(function () { /* shown by the live indicator */ }).then(function () {
      updateLive();
      if (sessionStorage.getItem(KEY_SLOT)) { pollTimer = setTimeout(poll, POLL_MS); }
    });
  }

  function showBoard() {
    $("login").hidden = true;
    $("board").hidden = false;
    $("signout").hidden = false;
    initCharts();
    clearTimeout(pollTimer);
    clearInterval(alertsTimer);
    poll();
    pollAlerts();
    alertsTimer = setInterval(pollAlerts, ALERTS_MS);
  }

  function signOut(message) {
    sessionStorage.removeItem(KEY_SLOT);
    clearTimeout(pollTimer);
    clearInterval(alertsTimer);
    samples = [];
    lastOk = 0;
    $("board").hidden = true;
    $("signout").hidden = true;
    $("live").hidden = true;
    $("degradation").hidden = true;
    $("alert-count").hidden = true;
    $("login").hidden = false;
    $("login-error").textContent = message || "";
    $("admin-key").value = "";
    $("admin-key").focus();
  }

  function onLogin(ev) {
    ev.preventDefault();
    var key = $("admin-key").value.trim();
    var err = $("login-error");
    if (!key) { err.textContent = "Enter the admin key."; return; }
    err.textContent = "Checking…";
    request(DATA_URL, key).then(function (res) {
      if (res.status === 401) { err.textContent = "That key was not accepted (unknown, revoked or mistyped)."; return; }
      if (res.status === 403) { err.textContent = "That key is valid but not an admin key."; return; }
      if (!res.ok) { err.textContent = "The gateway answered HTTP " + res.status + "; try again."; return; }
      sessionStorage.setItem(KEY_SLOT, key);
      $("admin-key").value = "";
      err.textContent = "";
      showBoard();
    }).catch(function () { err.textContent = "Could not reach the gateway."; });
  }

  function start() {
    $("login-form").addEventListener("submit", onLogin);
    $("signout").addEventListener("click", function () { signOut("Signed out."); });
    setInterval(function () { if (!$("board").hidden) { updateLive(); } }, 1000);
    if (sessionStorage.getItem(KEY_SLOT)) { showBoard(); } else { signOut(""); }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
