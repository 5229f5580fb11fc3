/* headrace dashboard, shared pieces: DOM building (every value from the service goes in as
   text, never as HTML), number and time formatting in one time zone for the whole page (local
   or UTC, chosen in the header; the other one on hover), the JSON client, the time-range
   control, and the "view is drawn" signal that tests and load-time figures wait for. */
"use strict";
var HR = (function () {
  var HR = { views: {}, charts: [] };
  var errorBox = document.getElementById("error");
  var RANGES = [["15m", 900], ["1h", 3600], ["6h", 21600], ["24h", 86400], ["7d", 604800], ["30d", 2592000]];
  HR.RANGES = RANGES;

  HR.el = function (tag, attrs, children) {
    var node = document.createElement(tag);
    for (var k in attrs || {}) {
      if (attrs[k] == null) continue; /* null: no attribute */
      if (k === "text") node.textContent = attrs[k];
      else if (k.slice(0, 2) === "on") node.addEventListener(k.slice(2), attrs[k]);
      else node.setAttribute(k, attrs[k]);
    }
    (children || []).forEach(function (c) {
      if (c != null) node.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    });
    return node;
  };
  var el = HR.el;

  HR.fmt = function (n) {
    if (n == null) return "–";
    if (Math.abs(n) >= 1e6) return (n / 1e6).toFixed(1) + "M";
    if (Math.abs(n) >= 1e4) return (n / 1e3).toFixed(1) + "k";
    return String(Math.round(n * 100) / 100);
  };
  HR.thousands = function (n) { return n == null ? "–" : Number(n).toLocaleString("en-US"); };
  HR.bytes = function (n) {
    if (n == null) return "–";
    var units = ["B", "KiB", "MiB", "GiB", "TiB"], i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : n) + " " + units[i];
  };
  HR.ago = function (seconds) {
    if (seconds == null) return "–";
    if (seconds < 90) return Math.round(seconds) + " s";
    if (seconds < 5400) return Math.round(seconds / 60) + " min";
    if (seconds < 172800) return (seconds / 3600).toFixed(1) + " h";
    return Math.round(seconds / 86400) + " days";
  };
  HR.per = function (seconds) { /* a bucket's length as words: "per 15 min" */
    if (seconds % 86400 === 0) return seconds === 86400 ? "day" : seconds / 86400 + " days";
    if (seconds % 3600 === 0) return seconds === 3600 ? "hour" : seconds / 3600 + " h";
    if (seconds === 60) return "minute";
    return seconds % 60 === 0 ? seconds / 60 + " min" : seconds + " s";
  };

  /* ---- one time zone for the page ---- */
  HR.utc = function () { try { return localStorage.getItem("headrace.tz") === "utc"; } catch (e) { return false; } };
  HR.setUtc = function (on) { try { localStorage.setItem("headrace.tz", on ? "utc" : "local"); } catch (e) {} };
  HR.zoneName = function () {
    if (HR.utc()) return "UTC";
    try { return Intl.DateTimeFormat().resolvedOptions().timeZone || "local time"; } catch (e) { return "local time"; }
  };
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function parts(d, utc) {
    return utc ? [d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate(), d.getUTCHours(), d.getUTCMinutes(), d.getUTCSeconds()]
               : [d.getFullYear(), d.getMonth(), d.getDate(), d.getHours(), d.getMinutes(), d.getSeconds()];
  }
  /* ms since the epoch as "2026-01-31 13:05:09" in the page's zone (utc: force UTC) */
  HR.time = function (ms, utc) {
    if (ms == null || isNaN(ms)) return "–";
    var p = parts(new Date(ms), utc == null ? HR.utc() : utc);
    return p[0] + "-" + pad(p[1] + 1) + "-" + pad(p[2]) + " " + pad(p[3]) + ":" + pad(p[4]) + ":" + pad(p[5]);
  };
  /* the same moment in the other zone, for a title */
  HR.otherTime = function (ms) {
    if (ms == null || isNaN(ms)) return null;
    return HR.utc() ? HR.time(ms, false) + " (" + localZone() + ")" : new Date(ms).toISOString();
  };
  function localZone() { try { return Intl.DateTimeFormat().resolvedOptions().timeZone || "local"; } catch (e) { return "local"; } }
  HR.localZone = localZone;
  /* a table cell or span showing a moment: the page's zone, the other on hover */
  HR.timeNode = function (tag, ms, attrs) {
    var a = attrs || {};
    a.text = HR.time(ms); a.title = HR.otherTime(ms); a["data-ms"] = ms == null ? null : String(ms);
    return el(tag, a);
  };
  /* "YYYY-MM-DDTHH:mm" for a datetime-local input, in the page's zone, and back */
  HR.toInput = function (ms) {
    if (ms == null || isNaN(ms)) return "";
    var p = parts(new Date(ms), HR.utc());
    return p[0] + "-" + pad(p[1] + 1) + "-" + pad(p[2]) + "T" + pad(p[3]) + ":" + pad(p[4]);
  };
  HR.fromInput = function (text) {
    if (!text) return null;
    var ms = HR.utc() ? Date.parse(text + ":00Z") : new Date(text).getTime();
    return isNaN(ms) ? null : ms;
  };

  /* Field values that are moments: a field named like a time whose value is an ISO 8601 text,
     or a whole number that is a plausible epoch in ms (2001..2100) or s (for *_at / *At). */
  var TIME_NAME = /(^|[_.\-])(time|timestamp|ts|date|datetime)$|(_at|At|Time|Timestamp|Date)$/;
  HR.momentOf = function (name, value) {
    if (!TIME_NAME.test(name)) return null;
    if (typeof value === "number" && Math.floor(value) === value) {
      if (value >= 978307200000 && value < 4102444800000) return value;
      if (value >= 978307200 && value < 4102444800) return value * 1000;
      return null;
    }
    if (typeof value === "string" && /^\d{4}-\d\d-\d\d[T ]\d\d:\d\d/.test(value)) {
      var ms = Date.parse(/[zZ]|[+-]\d\d:?\d\d$/.test(value) ? value : value.replace(" ", "T") + "Z");
      return isNaN(ms) ? null : ms;
    }
    return null;
  };

  HR.stat = function (label, value, cls, name, extra) {
    return el("div", { "class": "stat" + (cls ? " " + cls : ""), "data-stat": name || label },
      [el("b", { text: value }), el("span", { text: label })].concat(extra ? [extra] : []));
  };
  HR.showError = function (message) {
    errorBox.textContent = message;
    errorBox.hidden = !message;
  };
  HR.api = function (path, params) {
    var q = new URLSearchParams();
    (params || []).forEach(function (p) { if (p[1] !== "" && p[1] != null) q.append(p[0], p[1]); });
    var url = path + (q.toString() ? "?" + q : "");
    return fetch(url, { credentials: "same-origin" }).then(function (r) {
      return r.json().then(function (body) {
        if (!r.ok) throw new Error((body.error || r.status) + ": " + (body.message || ""));
        HR.showError("");
        return body;
      });
    }).catch(function (e) { HR.showError(String(e.message || e)); throw e; });
  };
  /* the streams the service knows, shared by the views of one render */
  HR.streams = function () { return HR.api("/api/dashboard/streams").then(function (d) { return d.streams; }); };

  /* ---- time range: "range=24h", or since/until (ISO 8601 UTC) in the route's parameters ---- */
  HR.rangeOf = function (params, fallback) {
    var until = params.get("until"), since = params.get("since"), range = params.get("range") || fallback || "24h";
    if (since) {
      var s = Date.parse(since), u = until ? Date.parse(until) : Date.now();
      return { since: since, until: until || "", sinceMs: s, untilMs: u, label: "custom" };
    }
    var seconds = 86400;
    RANGES.forEach(function (r) { if (r[0] === range) seconds = r[1]; });
    var now = Date.now();
    return { since: new Date(now - seconds * 1000).toISOString(), until: new Date(now + 1000).toISOString(),
             sinceMs: now - seconds * 1000, untilMs: now, label: "last " + range, seconds: seconds };
  };
  HR.rangePicker = function (params, onChange, fallback) {
    var current = params.get("since") ? "custom" : params.get("range") || fallback || "24h";
    var select = el("select", { id: "range", "aria-label": "time range" }, RANGES.map(function (r) {
      var o = el("option", { value: r[0], text: "last " + r[0] }); if (r[0] === current) o.selected = true; return o;
    }).concat([el("option", { value: "custom", text: "custom…" })]));
    if (current === "custom") select.value = "custom";
    var from = el("input", { type: "datetime-local", id: "since", value: HR.toInput(Date.parse(params.get("since"))) });
    var to = el("input", { type: "datetime-local", id: "until", value: HR.toInput(Date.parse(params.get("until"))) });
    var custom = el("span", {}, [from, " – ", to, " ", el("span", { "class": "muted", text: HR.zoneName() + " " }),
      el("button", { "class": "plain", id: "apply-range", text: "apply", onclick: function () {
        var s = HR.fromInput(from.value), u = HR.fromInput(to.value);
        params.delete("range");
        params.set("since", s == null ? "" : new Date(s).toISOString());
        params.set("until", u == null ? "" : new Date(u).toISOString());
        onChange();
      } })]);
    custom.hidden = current !== "custom";
    select.addEventListener("change", function () {
      if (select.value === "custom") { custom.hidden = false; return; }
      params.delete("since"); params.delete("until"); params.set("range", select.value); onChange();
    });
    return el("span", { "class": "range" }, [select, " ", custom]);
  };
  /* "2026-01-01 00:00 – 2026-01-02 00:00 (UTC)" */
  HR.rangeText = function (r) {
    return HR.time(r.sinceMs).slice(0, 16) + " – " + HR.time(r.untilMs).slice(0, 16) + " (" + HR.zoneName() + ")";
  };

  /* A view has drawn its data: tests wait for body[data-ready=<view>]; the time from the
     navigation's start is kept for the load-time figures. */
  HR.ready = function (name) {
    window.headraceReadyAt = performance.now();
    document.body.setAttribute("data-ready", name);
    document.getElementById("updated").textContent = "updated " + HR.time(Date.now()).slice(11);
  };
  return HR;
})();
