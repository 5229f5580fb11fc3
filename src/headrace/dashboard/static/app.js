/* The headrace dashboard: a hash-routed page over the JSON endpoints of the service.
   Views: overview (#/), explore a stream (#/explore/<stream>), page hits (#/pagehits),
   dead letters (#/deadletters), bad rows (#/badrows), bulk loads (#/loads). Charts are uPlot
   (vendored). Every value from the service is put in the page as text, never as HTML. */
"use strict";
(function () {
  var view = document.getElementById("view");
  var errorBox = document.getElementById("error");
  var refreshTimer = 0;
  var charts = [];
  var COLORS = ["#2f6fde", "#e0783a", "#1f8a4c", "#9b4ddb", "#c8372d", "#1796a8", "#b58a00", "#5c6b80", "#999"];
  var RANGES = [["15m", 900], ["1h", 3600], ["6h", 21600], ["24h", 86400], ["7d", 604800], ["30d", 2592000]];

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    for (var k in attrs || {}) {
      if (k === "text") node.textContent = attrs[k];
      else if (k.slice(0, 2) === "on") node.addEventListener(k.slice(2), attrs[k]);
      else if (attrs[k] != null) node.setAttribute(k, attrs[k]); /* null: no attribute */
    }
    (children || []).forEach(function (c) { if (c != null) node.appendChild(typeof c === "string" ? document.createTextNode(c) : c); });
    return node;
  }
  function fmt(n) {
    if (n == null) return "–";
    if (Math.abs(n) >= 1e6) return (n / 1e6).toFixed(1) + "M";
    if (Math.abs(n) >= 1e4) return (n / 1e3).toFixed(1) + "k";
    return String(Math.round(n * 100) / 100);
  }
  function bytes(n) {
    if (n == null) return "–";
    var units = ["B", "KiB", "MiB", "GiB", "TiB"], i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : n) + " " + units[i];
  }
  function ago(seconds) {
    if (seconds == null) return "–";
    if (seconds < 90) return Math.round(seconds) + " s";
    if (seconds < 5400) return Math.round(seconds / 60) + " min";
    return (seconds / 3600).toFixed(1) + " h";
  }
  function iso(us) { return us ? new Date(us / 1000).toISOString().replace(".000Z", "Z") : "–"; }
  function stat(label, value, cls, name) {
    return el("div", { "class": "stat" + (cls ? " " + cls : ""), "data-stat": name || label },
      [el("b", { text: value }), el("span", { text: label })]);
  }
  function showError(message) {
    errorBox.textContent = message;
    errorBox.hidden = !message;
  }
  function api(path, params) {
    var q = new URLSearchParams();
    (params || []).forEach(function (p) { if (p[1] !== "" && p[1] != null) q.append(p[0], p[1]); });
    var url = path + (q.toString() ? "?" + q : "");
    return fetch(url, { credentials: "same-origin" }).then(function (r) {
      return r.json().then(function (body) {
        if (!r.ok) throw new Error((body.error || r.status) + ": " + (body.message || ""));
        showError("");
        return body;
      });
    }).catch(function (e) { showError(String(e.message || e)); throw e; });
  }
  function lastHour() { var now = Date.now() / 1000; return [now - 3600, now]; }
  function clearCharts() { charts.forEach(function (c) { c.destroy(); }); charts = []; }

  /* A time chart: xs in seconds, series {name: [values]}; bars when few points. */
  function chart(target, xs, series, opts) {
    opts = opts || {};
    var names = Object.keys(series);
    var total = 0;
    names.forEach(function (n) { series[n].forEach(function (v) { total += v || 0; }); });
    target.setAttribute("data-total", String(Math.round(total * 1000) / 1000));
    target.setAttribute("data-points", String(xs.length));
    target.innerHTML = "";
    if (!xs.length || !names.length) {
      target.appendChild(el("p", { "class": "muted", text: opts.empty || "No data in this range." }));
      return null;
    }
    var width = Math.max(300, target.clientWidth || 400);
    var bars = opts.bars && uPlot.paths && uPlot.paths.bars;
    var u = new uPlot({
      width: width, height: opts.height || 180,
      legend: { show: names.length > 1 || !!opts.legend },
      scales: { x: opts.xRange ? { time: true, range: function () { return opts.xRange; } } : { time: true } },
      axes: [{}, { size: 50, values: function (u, vals) { return vals.map(fmt); } }],
      series: [{}].concat(names.map(function (n, i) {
        var color = COLORS[i % COLORS.length];
        return { label: n, stroke: color, width: 1.5, fill: names.length === 1 ? color + "22" : undefined,
                 paths: bars ? uPlot.paths.bars({ size: [0.8, 40] }) : undefined, points: { show: false } };
      }))
    }, [xs].concat(names.map(function (n) { return series[n]; })), target);
    charts.push(u);
    return u;
  }

  function setRoute(hash, replace) {
    if (replace) history.replaceState(null, "", hash); else location.hash = hash;
    if (replace) render();
  }
  function parseHash() {
    var raw = location.hash.replace(/^#\/?/, "");
    var parts = raw.split("?");
    var segs = parts[0].split("/").filter(Boolean).map(decodeURIComponent);
    return { name: segs[0] || "overview", arg: segs[1] || "", params: new URLSearchParams(parts[1] || "") };
  }

  /* ---------- overview ---------- */
  function overview() {
    return api("/api/dashboard/overview").then(function (doc) {
      clearCharts();
      view.innerHTML = "";
      view.appendChild(el("h2", { text: "Sources" }));
      var grid = el("div", { "class": "grid" });
      doc.sources.forEach(function (s) {
        var rejected = 0; Object.keys(s.rejected).forEach(function (r) { rejected += s.rejected[r]; });
        var card = el("div", { "class": "card", id: "source-" + s.id, "data-source": s.id }, [
          el("h3", {}, [s.id + " ", el("span", { "class": "muted", text: "→ " + s.sinks.join(", ") })]),
          el("div", { "class": "stats" }, [
            stat("events accepted", fmt(s.accepted_events), "", "accepted"),
            stat("requests rejected", fmt(rejected), rejected ? "bad" : "", "rejected")
          ])
        ]);
        var reasons = Object.keys(s.rejected);
        if (reasons.length) {
          card.appendChild(el("table", { "class": "rejections" }, [el("tr", {}, [el("th", { text: "rejected because" }), el("th", { "class": "num", text: "requests" })])].concat(
            reasons.map(function (r) { return el("tr", { "data-reason": r }, [el("td", { text: r }), el("td", { "class": "num", text: fmt(s.rejected[r]) })]); }))));
        }
        var box = el("div", { "class": "chart rate" });
        card.appendChild(el("div", { "class": "muted", text: "events/s accepted, last hour" }));
        card.appendChild(box);
        grid.appendChild(card);
        requestAnimationFrame(function () {
          chart(box, s.rate.map(function (p) { return p[0]; }), { "events/s": s.rate.map(function (p) { return p[1]; }) },
            { height: 120, xRange: lastHour(), empty: "Rates appear after the server has run for 20 s." });
        });
      });
      view.appendChild(grid);

      view.appendChild(el("h2", { text: "Sinks" }));
      grid = el("div", { "class": "grid" });
      doc.sinks.forEach(function (s) {
        var dead = 0; Object.keys(s.dead_letters).forEach(function (r) { dead += s.dead_letters[r]; });
        var card = el("div", { "class": "card", id: "sink-" + s.id, "data-sink": s.id }, [
          el("h3", {}, [s.id + " ", el("span", { "class": "muted", text: s.type }), " ",
            el("span", { "class": s.healthy === 0 ? "bad" : "ok", text: s.healthy === 0 ? "● failing" : "● healthy" })]),
          el("div", { "class": "stats" }, [
            stat("events delivered", fmt(s.delivered_events), "", "delivered"),
            stat("backlog", bytes(s.backlog_bytes), "", "backlog"),
            stat("oldest undelivered", ago(s.oldest_undelivered_seconds), s.oldest_undelivered_seconds > 60 ? "bad" : "", "oldest"),
            stat("delivery retries", fmt(s.retries), s.retries ? "bad" : "", "retries"),
            stat("dead letters", fmt(dead), dead ? "bad" : "", "dead")
          ])
        ]);
        Object.keys(s.dead_letters).forEach(function (r) {
          card.appendChild(el("div", {}, [el("a", { href: "#/deadletters?sink=" + encodeURIComponent(s.id) + "&reason=" + encodeURIComponent(r), text: s.dead_letters[r] + " dead letter(s): " + r })]));
        });
        var box = el("div", { "class": "chart rate" });
        card.appendChild(el("div", { "class": "muted", text: "events/s delivered, last hour" }));
        card.appendChild(box);
        grid.appendChild(card);
        requestAnimationFrame(function () {
          chart(box, s.rate.map(function (p) { return p[0]; }), { "events/s": s.rate.map(function (p) { return p[1]; }) },
            { height: 120, xRange: lastHour(), empty: "Rates appear after the server has run for 20 s." });
        });
      });
      view.appendChild(grid);

      view.appendChild(el("h2", { text: "Streams" }));
      grid = el("div", { "class": "grid" });
      if (!doc.streams.length) grid.appendChild(el("p", { "class": "muted", text: "Nothing stored yet." }));
      doc.streams.forEach(function (s) {
        var box = el("div", { "class": "chart arrivals" });
        var hour = s.per_minute.reduce(function (a, b) { return a + b; }, 0);
        grid.appendChild(el("div", { "class": "card", id: "stream-" + s.stream, "data-stream": s.stream }, [
          el("h3", {}, [el("a", { href: "#/explore/" + encodeURIComponent(s.stream) + "?sink=" + encodeURIComponent(s.sink), text: s.stream }),
            " ", el("span", { "class": "muted", text: "in " + s.sink })]),
          el("div", { "class": "stats" }, [
            stat("events stored", fmt(s.events), "", "stored"),
            stat("received, last hour", fmt(hour), "", "hour"),
            s.table ? stat("table", s.table, "", "table") : stat("files", fmt(s.files), "", "files"),
            stat("size", bytes(s.bytes), "", "bytes"),
            s.last_us ? stat("newest event time", ago(Date.now() / 1000 - s.last_us / 1e6) + " ago", "", "newest") : null
          ]),
          s.error ? el("div", { "class": "bad", text: s.error }) : null,
          el("div", { "class": "muted", text: "events/min received, last hour" }), box
        ]));
        requestAnimationFrame(function () { chart(box, s.minutes, { "events/min": s.per_minute }, { height: 120, bars: true, xRange: lastHour() }); });
      });
      view.appendChild(grid);

      view.appendChild(el("h2", { text: "Bad rows" }));
      if (!doc.bad_rows.length) view.appendChild(el("p", { "class": "muted", text: "No refused events kept." }));
      else view.appendChild(el("table", { id: "badrow-counts", "class": "card" }, [el("tr", {}, [el("th", { text: "source" }), el("th", { text: "reason" }), el("th", { "class": "num", text: "rows" })])].concat(
        doc.bad_rows.map(function (b) {
          return el("tr", {}, [el("td", { text: b.source }), el("td", {}, [el("a", { href: "#/badrows?source=" + encodeURIComponent(b.source) + "&reason=" + encodeURIComponent(b.reason), text: b.reason })]), el("td", { "class": "num", text: fmt(b.count) })]);
        }))));
      document.getElementById("updated").textContent = "updated " + new Date(doc.generated_at).toLocaleTimeString();
    });
  }

  /* ---------- shared controls ---------- */
  function rangeOf(params) {
    var until = params.get("until"), since = params.get("since"), range = params.get("range") || "24h";
    if (since) return { since: since, until: until || "" , label: "custom" };
    var seconds = 86400;
    RANGES.forEach(function (r) { if (r[0] === range) seconds = r[1]; });
    var now = Date.now();
    return { since: new Date(now - seconds * 1000).toISOString(), until: new Date(now + 1000).toISOString(), label: range };
  }
  function rangePicker(params, onChange) {
    var current = params.get("since") ? "custom" : params.get("range") || "24h";
    var select = el("select", { id: "range" }, RANGES.map(function (r) {
      var o = el("option", { value: r[0], text: "last " + r[0] }); if (r[0] === current) o.selected = true; return o;
    }).concat([el("option", { value: "custom", text: "custom…" })]));
    if (current === "custom") select.value = "custom";
    function local(text) {
      if (!text) return "";
      var d = new Date(text); if (isNaN(d)) return "";
      return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
    }
    var from = el("input", { type: "datetime-local", id: "since", value: local(params.get("since")) });
    var to = el("input", { type: "datetime-local", id: "until", value: local(params.get("until")) });
    var custom = el("span", {}, [from, " – ", to, el("button", { "class": "plain", text: "apply", onclick: function () {
      /* the inputs show local time; the API takes UTC */
      params.delete("range"); params.set("since", from.value ? new Date(from.value).toISOString() : ""); params.set("until", to.value ? new Date(to.value).toISOString() : ""); onChange();
    } })]);
    custom.hidden = current !== "custom";
    select.addEventListener("change", function () {
      if (select.value === "custom") { custom.hidden = false; return; }
      params.delete("since"); params.delete("until"); params.set("range", select.value); onChange();
    });
    return el("span", {}, [select, " ", custom]);
  }

  /* ---------- explore ---------- */
  function explore(route) {
    var params = route.params, stream = route.arg;
    if (!stream) return api("/api/dashboard/overview").then(function (doc) {
      view.innerHTML = "";
      view.appendChild(el("h2", { text: "Explore a stream" }));
      view.appendChild(el("ul", {}, doc.streams.map(function (s) {
        return el("li", {}, [el("a", { href: "#/explore/" + encodeURIComponent(s.stream) + "?sink=" + encodeURIComponent(s.sink), text: s.stream + " (" + s.sink + ")" })]);
      })));
    });
    var base = "/api/dashboard/streams/" + encodeURIComponent(stream);
    var sink = params.get("sink") || "";
    var reserved = { sink: 1, range: 1, since: 1, until: 1, group_by: 1, cursor: 1 };
    var filters = [];
    params.forEach(function (v, k) { if (!reserved[k]) filters.push([k, v]); });
    var range = rangeOf(params);
    var common = [["sink", sink], ["since", range.since], ["until", range.until]].concat(filters);
    function go() { setRoute("#/explore/" + encodeURIComponent(stream) + "?" + params.toString(), true); }
    return api(base + "/columns", [["sink", sink]]).then(function (cols) {
      clearCharts();
      view.innerHTML = "";
      var names = Object.keys(cols.columns || {});
      var groupSel = el("select", { id: "group-by" }, [el("option", { value: "", text: "no grouping" })].concat(names.map(function (n) {
        var o = el("option", { value: n, text: "by " + n }); if (n === params.get("group_by")) o.selected = true; return o;
      })));
      groupSel.addEventListener("change", function () { if (groupSel.value) params.set("group_by", groupSel.value); else params.delete("group_by"); go(); });
      var fieldSel = el("select", { id: "filter-field" }, names.map(function (n) { return el("option", { value: n, text: n }); }));
      var valueIn = el("input", { id: "filter-value", placeholder: "value" });
      var exportParams = new URLSearchParams(); common.forEach(function (p) { if (p[1]) exportParams.append(p[0], p[1]); });
      view.appendChild(el("h2", {}, ["Explore ", el("code", { text: stream }), el("span", { "class": "muted", text: " in " + (cols.sink || sink) })]));
      view.appendChild(el("div", { "class": "controls" }, [
        rangePicker(params, go), groupSel,
        el("span", {}, [fieldSel, " = ", valueIn, " ", el("button", { id: "add-filter", "class": "plain", text: "add filter", onclick: function () {
          if (fieldSel.value && valueIn.value !== "") { params.append(fieldSel.value, valueIn.value); go(); }
        } })]),
        el("a", { "class": "button", id: "export-csv", href: base + "/export.csv?" + exportParams.toString(), download: stream + ".csv", text: "Export CSV" })
      ]));
      var chips = el("div", { id: "filters" }, filters.map(function (f) {
        return el("span", { "class": "chip" }, [f[0] + " = " + f[1], el("button", { title: "remove", text: "×", onclick: function () {
          var kept = params.getAll(f[0]).filter(function (v) { return v !== f[1]; }); params.delete(f[0]); kept.forEach(function (v) { params.append(f[0], v); }); go();
        } })]);
      }));
      view.appendChild(chips);
      var box = el("div", { "class": "card chart", id: "count-chart" });
      view.appendChild(box);
      var split = el("div", { "class": "split" });
      var tableCard = el("div", { "class": "card" });
      var jsonCard = el("div", { "class": "card" }, [el("h3", { text: "Event" }), el("pre", { "class": "json", id: "event-json", text: "Click a row to see the whole event." })]);
      split.appendChild(tableCard); split.appendChild(jsonCard);
      view.appendChild(split);
      var countParams = common.slice(); if (params.get("group_by")) countParams.push(["group_by", params.get("group_by")]);
      api(base + "/counts", countParams).then(function (doc) {
        box.appendChild(el("div", { "class": "muted", id: "count-total", text: fmt(doc.total) + " events, per " + ago(doc.bucket_seconds) }));
        var holder = el("div"); box.appendChild(holder);
        chart(holder, doc.times, doc.series, { bars: Object.keys(doc.series).length === 1, legend: true });
      });
      var cursors = [""];
      function page(index) {
        var eventParams = common.concat([["limit", "25"]]); if (cursors[index]) eventParams.push(["cursor", cursors[index]]);
        api(base + "/events", eventParams).then(function (doc) {
          if (doc.next_cursor) cursors[index + 1] = doc.next_cursor;
          var keys = [];
          doc.events.forEach(function (e) { Object.keys(e.data).forEach(function (k) { if (keys.indexOf(k) < 0 && keys.length < 6) keys.push(k); }); });
          tableCard.innerHTML = "";
          tableCard.appendChild(el("h3", { text: "Recent events (newest first)" }));
          var table = el("table", { id: "events" }, [el("tr", {}, [el("th", { text: "time" })].concat(keys.map(function (k) { return el("th", { text: k }); })))]);
          doc.events.forEach(function (e) {
            var row = el("tr", { "class": "clickable", "data-id": e.id }, [el("td", { text: e.time })].concat(keys.map(function (k) {
              var v = e.data[k]; return el("td", { text: v == null ? "" : typeof v === "object" ? JSON.stringify(v) : String(v) });
            })));
            row.addEventListener("click", function () {
              Array.prototype.forEach.call(table.querySelectorAll("tr.selected"), function (r) { r.classList.remove("selected"); });
              row.classList.add("selected");
              document.getElementById("event-json").textContent = JSON.stringify(e, null, 2);
            });
            table.appendChild(row);
          });
          tableCard.appendChild(table);
          if (!doc.events.length) tableCard.appendChild(el("p", { "class": "muted", text: "No events match." }));
          tableCard.appendChild(el("div", { "class": "controls" }, [
            el("button", { "class": "plain", id: "prev-page", text: "← newer", disabled: index ? null : "disabled", onclick: function () { page(index - 1); } }),
            el("span", { "class": "muted", id: "page-number", text: "page " + (index + 1) }),
            el("button", { "class": "plain", id: "next-page", text: "older →", disabled: doc.next_cursor ? null : "disabled", onclick: function () { page(index + 1); } })
          ]));
        });
      }
      page(0);
    });
  }

  /* ---------- page hits ---------- */
  function pagehits(route) {
    var params = route.params;
    var stream = params.get("stream") || "analytics";
    var range = rangeOf(params);
    function go() { setRoute("#/pagehits?" + params.toString(), true); }
    return api("/api/dashboard/pagehits", [["stream", stream], ["since", range.since], ["until", range.until], ["top", "10"]]).then(function (doc) {
      clearCharts();
      view.innerHTML = "";
      var streamIn = el("input", { id: "hits-stream", value: stream, size: 12 });
      view.appendChild(el("h2", { text: "Page hits" }));
      view.appendChild(el("div", { "class": "controls" }, [rangePicker(params, go), "stream ", streamIn,
        el("button", { "class": "plain", text: "show", onclick: function () { params.set("stream", streamIn.value); go(); } })]));
      var box = el("div", { "class": "card chart", id: "hits-chart" });
      view.appendChild(box);
      box.appendChild(el("div", { "class": "muted", id: "hits-total", text: fmt(doc.total) + " hits, per " + ago(doc.bucket_seconds) }));
      var holder = el("div"); box.appendChild(holder);
      chart(holder, doc.times, doc.series.events ? { hits: doc.series.events } : {}, { bars: true });
      function topTable(id, title, rows) {
        var max = rows.reduce(function (m, r) { return Math.max(m, r.count); }, 1);
        return el("div", { "class": "card" }, [el("h3", { text: title }), el("table", { id: id }, [el("tr", {}, [el("th", { text: "" }), el("th", { "class": "num", text: "hits" }), el("th", { text: "" })])].concat(
          rows.map(function (r) { return el("tr", {}, [el("td", { text: r.value }), el("td", { "class": "num", text: String(r.count) }), el("td", { style: "width:30%" }, [el("div", { "class": "bar", style: "width:" + (100 * r.count / max) + "%" })])]); })))]);
      }
      view.appendChild(el("div", { "class": "split" }, [topTable("top-pages", "Top pages", doc.top_pages), topTable("top-referrers", "Top referrers", doc.top_referrers)]));
    });
  }

  /* ---------- dead letters and bad rows ---------- */
  function listing(kind, route) {
    var params = route.params, isDead = kind === "deadletters";
    var q = []; params.forEach(function (v, k) { q.push([k, v]); });
    return api(isDead ? "/v1/deadletters" : "/v1/badrows", q.concat([["limit", "200"]])).then(function (doc) {
      view.innerHTML = "";
      var rows = isDead ? doc.dead_letters : doc.bad_rows;
      view.appendChild(el("h2", { text: (isDead ? "Dead letters" : "Bad rows") + (q.length ? " (" + q.map(function (p) { return p.join("="); }).join(", ") + ")" : "") }));
      view.appendChild(el("p", { "class": "muted", text: isDead
        ? "Events a sink refused for good. Send them back with: headrace dlq replay --sink <sink>"
        : "Events refused at ingest (schema, decoding, size). Send them back with: headrace badrows replay" }));
      var pre = el("pre", { "class": "json", id: "row-json", text: rows.length ? "Click a row to see it." : "None." });
      var table = el("table", { id: kind }, [el("tr", {}, ["id", isDead ? "sink" : "source", "reason", "stream", isDead ? "error" : "message"].map(function (h) { return el("th", { text: h }); }))]);
      rows.forEach(function (r) {
        var row = el("tr", { "class": "clickable" }, [r.id, isDead ? r.sink : r.source, r.reason, r.stream, isDead ? r.error : r.message].map(function (v) { return el("td", { text: String(v) }); }));
        row.addEventListener("click", function () { pre.textContent = JSON.stringify(r, null, 2); });
        table.appendChild(row);
      });
      view.appendChild(el("div", { "class": "split" }, [el("div", { "class": "card" }, [table]), el("div", { "class": "card" }, [pre])]));
    });
  }

  /* ---------- bulk loads ---------- */
  function loads(route) {
    var params = route.params;
    var q = []; params.forEach(function (v, k) { q.push([k, v]); });
    return api("/v1/loads", q.concat([["limit", "100"]])).then(function (doc) {
      view.innerHTML = "";
      view.appendChild(el("h2", { text: "Bulk loads" }));
      view.appendChild(el("div", { "class": "controls" }, [el("select", { id: "load-status" }, [el("option", { value: "", text: "every status" })].concat(
        ["pending", "fetching", "staged", "loading", "loaded", "failed", "expired", "skipped"].map(function (s) {
          var o = el("option", { value: s, text: s }); if (s === params.get("status")) o.selected = true; return o;
        })))]));
      document.getElementById("load-status").addEventListener("change", function (e) {
        if (e.target.value) params.set("status", e.target.value); else params.delete("status");
        setRoute("#/loads?" + params.toString(), true);
      });
      if (!doc.loads.length) { view.appendChild(el("p", { "class": "muted", text: "No load jobs yet." })); return; }
      var pre = el("pre", { "class": "json", id: "load-json", text: "Click a job to see it." });
      var table = el("table", { id: "loads" }, [el("tr", {}, ["id", "table", "kind", "status", "rows", "attempts", "finished", "error", ""].map(function (h) { return el("th", { text: h }); }))]);
      doc.loads.forEach(function (job) {
        var action = null;
        function act(name) {
          return el("button", { "class": "plain", "data-action": name, text: name, onclick: function (e) {
            e.stopPropagation();
            fetch("/v1/loads/" + job.id + "/" + name, { method: "POST", credentials: "same-origin" }).then(function (r) {
              return r.json().then(function (body) { if (!r.ok) throw new Error((body.error || r.status) + ": " + (body.message || "")); });
            }).then(function () { showError(""); render(); }, function (err) { showError(String(err.message || err)); });
          } });
        }
        if (job.status === "failed" || job.status === "expired") action = act("retry");
        else if (job.status === "pending" || job.status === "fetching" || job.status === "staged") action = act("cancel");
        var row = el("tr", { "class": "clickable status-" + job.status, "data-id": String(job.id) }, [
          el("td", { text: String(job.id) }), el("td", { text: job.table }), el("td", { text: job.kind }),
          el("td", { "class": job.status === "loaded" ? "" : (job.status === "failed" || job.status === "expired") ? "bad" : "muted", text: job.status }),
          el("td", { "class": "num", text: job.rows == null ? "–" : fmt(job.rows) }), el("td", { "class": "num", text: String(job.attempts) }),
          el("td", { text: job.finished_at ? new Date(job.finished_at * 1000).toISOString().replace(/\.\d+Z$/, "Z") : "–" }),
          el("td", { text: job.error || "" }), el("td", {}, [action])
        ]);
        row.addEventListener("click", function () { pre.textContent = JSON.stringify(job, null, 2); });
        table.appendChild(row);
      });
      view.appendChild(el("div", { "class": "split" }, [el("div", { "class": "card" }, [table]), el("div", { "class": "card" }, [pre])]));
    });
  }

  function render() {
    var route = parseHash();
    Array.prototype.forEach.call(document.querySelectorAll("[data-nav]"), function (a) {
      a.classList.toggle("active", a.getAttribute("data-nav") === route.name);
    });
    var done;
    if (route.name === "explore") done = explore(route);
    else if (route.name === "pagehits") done = pagehits(route);
    else if (route.name === "deadletters" || route.name === "badrows") done = listing(route.name, route);
    else if (route.name === "loads") done = loads(route);
    else done = overview();
    document.body.setAttribute("data-view", route.name);
    done.then(function () { document.body.setAttribute("data-ready", route.name); }, function () {});
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(function () {
      if (document.getElementById("autorefresh").checked && (route.name === "overview" || route.name === "loads") && parseHash().name === route.name) render();
      else { refreshTimer = 0; }
    }, 10000);
  }
  document.getElementById("autorefresh").addEventListener("change", function (e) { if (e.target.checked) render(); });
  window.addEventListener("hashchange", render);
  render();
})();
