/* Page hits (#/pagehits?stream=&range=|since=&until=&pagePath=&referrer_domain=): hits and
   unique visitors against the previous period, top pages and referrer domains (a click
   filters the whole view), browsers, systems and devices. With nothing to show, how to send
   hits: the tracker snippet and a curl line. */
"use strict";
(function (HR) {
  var el = HR.el;
  var FILTERS = { pagePath: "page", referrer_domain: "referrer" };

  function howToSend(stream, ingestPath) {
    var origin = location.origin;
    var snippet = "<script src=\"" + origin + "/sdk/headrace.js\"></script>\n<script>\n  headrace.init({endpoint: " + JSON.stringify(origin) + ", stream: " + JSON.stringify(stream) + "});\n</script>";
    var curl = "curl -X POST " + origin + ingestPath + " \\\n  -H 'Content-Type: application/json' \\\n  -d '{\"pagePath\": \"/pricing\", \"referrer\": \"https://example.org/\"}'";
    return el("div", { "class": "card empty-state", id: "hits-howto" }, [
      el("h3", { text: "Send page hits" }),
      el("p", { text: "Put the tracker on your pages (it records a page view on each load; add spa: true for single-page apps):" }),
      el("pre", { "class": "code", id: "snippet", text: snippet }),
      el("p", { text: "or send a hit from anywhere:" }),
      el("pre", { "class": "code", id: "curl", text: curl }),
      el("p", { "class": "muted", text: "For unique visitors, use the page-hits recipe (headrace init --recipe page-hits): it adds a daily salted visitor hash at ingest." })
    ]);
  }

  function change(now, before) {
    if (now == null || before == null) return null;
    if (!before) return el("span", { "class": "delta muted", text: now ? "new" : "±0" });
    var pct = Math.round(100 * (now - before) / before);
    return el("span", { "class": "delta " + (pct > 0 ? "up" : pct < 0 ? "down" : "muted"), title: "previous period: " + HR.thousands(before),
                        text: (pct > 0 ? "▲ " : pct < 0 ? "▼ " : "±") + Math.abs(pct) + "%" });
  }

  function stats(doc) {
    var prev = doc.previous;
    var cards = [HR.stat("hits", HR.thousands(doc.total), "", "hits", change(doc.total, prev.total))];
    if (doc.visitors != null) {
      cards.push(HR.stat("unique visitors", HR.thousands(doc.visitors), "", "visitors", change(doc.visitors, prev.visitors)));
      cards.push(HR.stat("hits per visitor", doc.visitors ? (doc.total / doc.visitors).toFixed(1) : "–", "", "per-visitor"));
    } else {
      cards.push(HR.stat("unique visitors", "–", "muted", "visitors",
        el("span", { "class": "muted hint", text: "hits carry no visitor field (see the page-hits recipe)" })));
    }
    return el("div", { "class": "stats", id: "hits-stats" }, cards.concat([
      el("div", { "class": "muted compare", text: "vs previous period " + HR.time(prev.since_us / 1000).slice(0, 16) + " – " + HR.time(prev.until_us / 1000).slice(0, 16) })]));
  }

  function chartSeries(doc) {
    var series = [{ name: "hits", values: doc.series.hits, total: doc.total, bars: true }];
    if (doc.series.visitors) series.push({ name: "visitors", values: doc.series.visitors, total: doc.visitors, color: "#1f8a4c" });
    series.push({ name: "hits, previous period", values: doc.previous.series.hits, total: doc.previous.total, dash: true, color: "#8a94a8" });
    return series;
  }

  HR.views.pagehits = function (route) {
    var params = route.params, stream = params.get("stream") || "analytics", range = HR.rangeOf(params);
    function go() { HR.setRoute("#/pagehits?" + params.toString(), true); }
    function header(view) {
      var streamIn = el("input", { id: "hits-stream", value: stream, size: 12, "aria-label": "stream" });
      view.appendChild(el("h2", { text: "Page hits" }));
      view.appendChild(el("div", { "class": "controls" }, [HR.rangePicker(params, go), "stream ", streamIn,
        el("button", { "class": "plain", text: "show", onclick: function () { params.set("stream", streamIn.value); go(); } })]));
    }
    return HR.streams().then(function (streams) {
      var known = streams.some(function (s) { return s.stream === stream; });
      if (!known) {
        HR.clearCharts();
        var view = HR.viewNode();
        header(view);
        view.appendChild(el("p", { id: "hits-unknown", text: "Nothing has been sent to the stream \"" + stream + "\" yet." }));
        view.appendChild(howToSend(stream, "/v1/streams/" + encodeURIComponent(stream) + "/events"));
        return;
      }
      var q = [["stream", stream], ["since", range.since], ["until", range.until], ["top", "10"]];
      Object.keys(FILTERS).forEach(function (k) { params.getAll(k).forEach(function (v) { q.push([k, v]); }); });
      return HR.api("/api/dashboard/pagehits", q).then(function (doc) { draw(doc, params, stream, range, header, go); });
    });
  };

  function draw(doc, params, stream, range, header, go) {
    HR.clearCharts();
    var view = HR.viewNode();
    header(view);
    view.appendChild(el("div", { id: "hit-filters" }, doc.filters.map(function (f) {
      var label = FILTERS[f[0]] || f[0], shown = f[1] === "(direct)" ? "Direct / None" : f[1];
      return el("span", { "class": "chip" }, [label + ": " + shown, el("button", { title: "remove", text: "×", onclick: function () { params.delete(f[0]); go(); } })]);
    })));
    var box = el("div", { "class": "card chart", id: "hits-chart" });
    view.appendChild(box);
    box.appendChild(stats(doc));
    box.appendChild(el("div", { "class": "muted", id: "hits-total", text: HR.thousands(doc.total) + " hits, per " + HR.per(doc.bucket_seconds) + " · " + HR.rangeText(range) }));
    var holder = el("div"); box.appendChild(holder);
    if (!doc.total) {
      holder.appendChild(el("p", { "class": "muted", text: "No hits in this range" + (doc.filters.length ? " with these filters." : ".") }));
      if (!doc.filters.length) view.appendChild(howToSend(stream, doc.ingest_path));
    } else {
      HR.chart(holder, doc.times, chartSeries(doc), { xRange: [range.sinceMs / 1000, range.untilMs / 1000] });
    }
    function pick(name) { return function (row) { params.delete(name); params.set(name, row.filter != null ? row.filter : row.value); go(); }; }
    var visitors = doc.visitors != null ? "visitors" : null;
    view.appendChild(el("div", { "class": "split even" }, [
      HR.topTable("top-pages", "Top pages", doc.top_pages, { label: "page", distinct: visitors, total: doc.total, onPick: pick("pagePath") }),
      HR.topTable("top-referrers", "Referrers", doc.top_referrers, { label: "domain", distinct: visitors, total: doc.total, onPick: pick("referrer_domain") })
    ]));
    view.appendChild(el("div", { "class": "grid three" }, [
      HR.topTable("browsers", "Browsers", doc.browsers.slice(0, 10), { label: "browser", total: doc.total }),
      HR.topTable("devices", "Devices", doc.devices, { label: "device", total: doc.total }),
      HR.topTable("systems", "Operating systems", doc.systems.slice(0, 10), { label: "system", total: doc.total })
    ]));
  }
})(HR);
