/* Overview (#/): per source, per sink and per stream, over a chosen range (the last hour by
   default); bad rows by source and reason. */
"use strict";
(function (HR) {
  var el = HR.el, fmt = HR.fmt;

  function rateSeries(points, label) {
    return [{ name: label, values: points.map(function (p) { return p[1]; }), total: null }];
  }
  function rateChart(box, points, label, range, doc) {
    var xs = points.map(function (p) { return p[0]; });
    var series = rateSeries(points, label);
    /* events/s summed over samples means nothing: the legend shows the mean */
    var values = series[0].values;
    series[0].total = values.length ? values.reduce(function (a, b) { return a + b; }, 0) / values.length : 0;
    series[0].summary = "mean " + fmt(series[0].total);
    HR.chart(box, xs, series, { height: 120, xRange: [range.sinceMs / 1000, range.untilMs / 1000],
      empty: doc.history_from ? "Nothing in this range." : "Rates appear after the server has run for 20 s." });
  }
  function historyNote(doc, range) {
    if (doc.history_from && doc.history_from * 1000 > range.sinceMs + 60000) {
      return el("div", { "class": "muted note", text: "the rate history begins " + HR.time(doc.history_from * 1000).slice(0, 16) + " (the server keeps a day of it)" });
    }
    return null;
  }

  function sourceCard(s, doc, range, later) {
    var rejected = 0; Object.keys(s.rejected).forEach(function (r) { rejected += s.rejected[r]; });
    var card = el("div", { "class": "card", id: "source-" + s.id, "data-source": s.id }, [
      el("h3", {}, [s.id + " ", el("span", { "class": "muted", text: "→ " + s.sinks.join(", ") })]),
      el("div", { "class": "stats" }, [
        HR.stat("events accepted", fmt(s.accepted_events), "", "accepted"),
        HR.stat("requests rejected", fmt(rejected), rejected ? "bad" : "", "rejected")
      ])
    ]);
    var reasons = Object.keys(s.rejected);
    if (reasons.length) {
      card.appendChild(el("table", { "class": "rejections" }, [el("tr", {}, [el("th", { text: "rejected because" }), el("th", { "class": "num", text: "requests" })])].concat(
        reasons.map(function (r) { return el("tr", { "data-reason": r }, [el("td", { text: r }), el("td", { "class": "num", text: fmt(s.rejected[r]) })]); }))));
    }
    var box = el("div", { "class": "chart rate" });
    card.appendChild(el("div", { "class": "muted", text: "events/s accepted" }));
    card.appendChild(box);
    card.appendChild(historyNote(doc, range) || el("span"));
    later.push(function () { rateChart(box, s.rate, "events/s", range, doc); });
    return card;
  }

  function sinkCard(s, doc, range, later) {
    var dead = 0; Object.keys(s.dead_letters).forEach(function (r) { dead += s.dead_letters[r]; });
    var card = el("div", { "class": "card", id: "sink-" + s.id, "data-sink": s.id }, [
      el("h3", {}, [s.id + " ", el("span", { "class": "muted", text: s.type }), " ",
        el("span", { "class": s.healthy === 0 ? "bad" : "ok", text: s.healthy === 0 ? "● failing" : "● healthy" })]),
      el("div", { "class": "stats" }, s.consumer ? consumerStats(s) : [
        HR.stat("events delivered", fmt(s.delivered_events), "", "delivered"),
        HR.stat("backlog", HR.bytes(s.backlog_bytes), "", "backlog"),
        HR.stat("oldest undelivered", HR.ago(s.oldest_undelivered_seconds), s.oldest_undelivered_seconds > 60 ? "bad" : "", "oldest"),
        HR.stat("delivery retries", fmt(s.retries), s.retries ? "bad" : "", "retries"),
        HR.stat("dead letters", fmt(dead), dead ? "bad" : "", "dead")
      ])
    ]);
    Object.keys(s.dead_letters).forEach(function (r) {
      card.appendChild(el("div", { "class": "dead-link" }, [el("a", { href: "#/deadletters?sink=" + encodeURIComponent(s.id) + "&reason=" + encodeURIComponent(r), text: s.dead_letters[r] + " dead letter(s): " + r })]));
    });
    var box = el("div", { "class": "chart rate" });
    card.appendChild(el("div", { "class": "muted", text: "events/s delivered" }));
    card.appendChild(box);
    later.push(function () { rateChart(box, s.rate, "events/s", range, doc); });
    return card;
  }

  // With a nats buffer the sink is delivered to from any machine: its figures are JetStream's
  // (the consumer every worker of the sink shares), counted in messages (accepted requests).
  function consumerStats(s) {
    var c = s.consumer, dead = 0;
    Object.keys(s.dead_letters).forEach(function (r) { dead += s.dead_letters[r]; });
    return [
      HR.stat("waiting in JetStream", fmt(c.pending), c.pending > 1000 ? "bad" : "", "consumer-pending"),
      HR.stat("delivered, not yet acknowledged", fmt(c.ack_pending), "", "consumer-ack-pending"),
      HR.stat("redelivered", fmt(c.redelivered), c.redelivered ? "bad" : "", "consumer-redelivered"),
      HR.stat("idle workers' fetches", fmt(c.waiting), "", "consumer-waiting"),
      HR.stat("dead letters here", fmt(dead), dead ? "bad" : "", "dead")
    ];
  }

  function bufferNote(doc) {
    var b = doc.buffer || {};
    if (b.type !== "nats") return null;
    if (b.problem) return el("p", { "class": "bad", id: "buffer-problem", text: "JetStream cannot be read: " + b.problem });
    if (!b.stream) return null;
    var st = b.stream;
    return el("p", { "class": "muted", id: "buffer-stream", text: "Buffer: JetStream stream " + st.name + ", " +
      fmt(st.messages) + " messages (" + HR.bytes(st.bytes) + "), " + st.replicas + " replica(s)" +
      (st.leader ? ", led by " + st.leader : "") + ". Sink figures are in messages (one per accepted request), across every delivering machine." });
  }

  function streamCard(s, range, later) {
    var box = el("div", { "class": "chart arrivals" });
    var card = el("div", { "class": "card", id: "stream-" + s.stream, "data-stream": s.stream }, [
      el("h3", {}, [el("a", { href: "#/explore/" + encodeURIComponent(s.stream) + "?sink=" + encodeURIComponent(s.sink), text: s.stream }),
        " ", el("span", { "class": "muted", text: "in " + s.sink })]),
      el("div", { "class": "stats" }, [
        HR.stat("events stored", fmt(s.events), "", "stored"),
        HR.stat("received in range", fmt(s.received), "", "received"),
        s.table ? HR.stat("table", s.table, "", "table") : HR.stat("files", fmt(s.files), "", "files"),
        HR.stat("size", HR.bytes(s.bytes), "", "bytes"),
        s.last_us ? HR.stat("newest event", HR.ago(Date.now() / 1000 - s.last_us / 1e6) + " ago", "", "newest") : null
      ]),
      s.error ? el("div", { "class": "bad", text: s.error }) : null,
      el("div", { "class": "muted", text: "events received per " + HR.per(s.bucket_seconds) }), box
    ]);
    later.push(function () {
      HR.chart(box, s.times, [{ name: "events", values: s.arrivals, bars: true }],
        { height: 120, xRange: [range.sinceMs / 1000, range.untilMs / 1000] });
    });
    return card;
  }

  function firstEvent() {
    var origin = location.origin;
    return el("div", { "class": "card empty-state", id: "streams-empty" }, [
      el("p", { text: "Nothing stored yet. Send a first event (any stream name works):" }),
      el("pre", { "class": "code", text: "curl -X POST " + origin + "/v1/streams/clicks/events \\\n  -H 'Content-Type: application/json' \\\n  -d '{\"action\": \"signup\", \"plan\": \"pro\"}'" }),
      el("p", { "class": "muted", text: "It shows here about a second later (delivery batches for up to 1 s)." })
    ]);
  }

  HR.views.overview = function (route) {
    var params = route.params, range = HR.rangeOf(params, "1h");
    function go() { HR.setRoute("#/?" + params.toString(), true); }
    return HR.api("/api/dashboard/overview", [["since", range.since], ["until", params.get("until") || ""]]).then(function (doc) {
      HR.clearCharts();
      var view = HR.viewNode(), later = [];
      view.appendChild(el("div", { "class": "controls" }, [HR.rangePicker(params, go, "1h"),
        el("span", { "class": "muted", id: "range-text", text: HR.rangeText(range) })]));
      view.appendChild(el("h2", { text: "Sources" }));
      view.appendChild(el("div", { "class": "grid" }, doc.sources.map(function (s) { return sourceCard(s, doc, range, later); })));
      view.appendChild(el("h2", { text: "Sinks" }));
      var note = bufferNote(doc);
      if (note) view.appendChild(note);
      view.appendChild(el("div", { "class": "grid" }, doc.sinks.map(function (s) { return sinkCard(s, doc, range, later); })));
      view.appendChild(el("h2", { text: "Streams" }));
      var grid = el("div", { "class": "grid" }, doc.streams.map(function (s) { return streamCard(s, range, later); }));
      view.appendChild(doc.streams.length ? grid : firstEvent());
      view.appendChild(el("h2", { text: "Bad rows" }));
      if (!doc.bad_rows.length) view.appendChild(el("p", { "class": "muted", text: "No refused events kept: every request so far fitted its source." }));
      else view.appendChild(el("table", { id: "badrow-counts", "class": "card" }, [el("tr", {}, [el("th", { text: "source" }), el("th", { text: "reason" }), el("th", { "class": "num", text: "rows" })])].concat(
        doc.bad_rows.map(function (b) {
          return el("tr", {}, [el("td", { text: b.source }), el("td", {}, [el("a", { href: "#/badrows?source=" + encodeURIComponent(b.source) + "&reason=" + encodeURIComponent(b.reason), text: b.reason })]), el("td", { "class": "num", text: fmt(b.count) })]);
        }))));
      /* charts need the cards laid out (their width) */
      return new Promise(function (resolve) {
        requestAnimationFrame(function () { later.forEach(function (f) { f(); }); resolve(); });
      });
    });
  };
})(HR);
