/* Explore a stream (#/explore/<stream>?sink=&range=|since=&until=&group_by=&<field>=<value>):
   counts over time, optionally grouped by a field worth grouping by, the events page by page,
   CSV export of the same selection. A stream the service does not know says so. */
"use strict";
(function (HR) {
  var el = HR.el, fmt = HR.fmt;
  var RESERVED = { sink: 1, range: 1, since: 1, until: 1, group_by: 1, cursor: 1 };

  function streamLink(s) {
    return "#/explore/" + encodeURIComponent(s.stream) + "?sink=" + encodeURIComponent(s.sink);
  }
  function pickStream(streams) {
    var view = HR.viewNode();
    view.appendChild(el("h2", { text: "Explore a stream" }));
    if (!streams.length) {
      view.appendChild(el("p", { "class": "muted", id: "no-streams", text: "No stream yet: the first events sent to POST /v1/streams/<name>/events make one." }));
    }
    view.appendChild(el("ul", { id: "stream-list" }, streams.map(function (s) {
      return el("li", {}, [el("a", { href: streamLink(s), text: s.stream }),
        el("span", { "class": "muted", text: " in " + s.sink + (s.events != null ? ", " + HR.thousands(s.events) + " events" : "") })]);
    })));
  }
  function unknownStream(stream, sink, streams) {
    var view = HR.viewNode();
    view.appendChild(el("div", { "class": "card notfound", id: "unknown-stream", "data-error": "unknown_stream" }, [
      el("h2", {}, ["404 · no stream ", el("code", { text: stream }), sink ? " in " + sink : ""]),
      el("p", { text: "Nothing has been stored in it and the pipeline does not name it. Streams appear once their first events are delivered; check the name, or pick one of these:" }),
      el("ul", {}, streams.map(function (s) { return el("li", {}, [el("a", { href: streamLink(s), text: s.stream + " (" + s.sink + ")" })]); }))
    ]));
  }

  /* a range that holds `ms`: the smallest "last …" one, else a day around it */
  function rangeHolding(params, ms) {
    var age = (Date.now() - ms) / 1000;
    for (var i = 0; i < HR.RANGES.length; i++) {
      if (HR.RANGES[i][1] > age + 60) { params.delete("since"); params.delete("until"); params.set("range", HR.RANGES[i][0]); return; }
    }
    params.delete("range");
    params.set("since", new Date(ms - 43200000).toISOString()); params.set("until", new Date(ms + 43200000).toISOString());
  }
  function emptyCounts(box, entry, range, filters, params, go) {
    var note = el("div", { "class": "empty-state", id: "count-empty" }, [
      el("p", { text: "No events between " + HR.rangeText(range) + (filters.length ? " that match the filters." : ".") })]);
    if (entry.last_us && entry.last_us / 1000 < range.sinceMs) {
      note.appendChild(el("p", {}, ["The newest event is from " + HR.time(entry.last_us / 1000) + " (" + HR.ago(Date.now() / 1000 - entry.last_us / 1e6) + " ago). ",
        el("button", { "class": "plain", id: "show-newest", text: "show it", onclick: function () { rangeHolding(params, entry.last_us / 1000); go(); } })]));
    }
    if (filters.length) note.appendChild(el("p", { "class": "muted", text: "Remove a filter (×) to widen the selection." }));
    box.appendChild(note);
  }

  function controls(stream, entry, streams, fields, params, filters, exportHref, go) {
    var groupSel = el("select", { id: "group-by", "aria-label": "group by" }, [el("option", { value: "", text: "no grouping" })]);
    var current = params.get("group_by");
    fields.forEach(function (f) {
      if (!f.groupable && f.name !== current) return;
      var label = "by " + f.name + (f.distinct != null ? " (" + f.distinct + ")" : "");
      var o = el("option", { value: f.name, text: label }); if (f.name === current) o.selected = true; groupSel.appendChild(o);
    });
    groupSel.addEventListener("change", function () { if (groupSel.value) params.set("group_by", groupSel.value); else params.delete("group_by"); go(); });
    var fieldSel = el("select", { id: "filter-field", "aria-label": "filter field" }, fields.map(function (f) { return el("option", { value: f.name, text: f.name }); }));
    var valueIn = el("input", { id: "filter-value", placeholder: "value", "aria-label": "filter value" });
    var streamSel = el("select", { id: "stream-pick", "aria-label": "stream" }, streams.map(function (s) {
      var o = el("option", { value: streamLink(s), text: s.stream + " (" + s.sink + ")" });
      if (s.stream === stream && s.sink === entry.sink) o.selected = true; return o;
    }));
    streamSel.addEventListener("change", function () { location.hash = streamSel.value; });
    return el("div", { "class": "controls" }, [streamSel, HR.rangePicker(params, go), groupSel,
      el("span", {}, [fieldSel, " = ", valueIn, " ", el("button", { id: "add-filter", "class": "plain", text: "add filter", onclick: function () {
        if (fieldSel.value && valueIn.value !== "") { params.append(fieldSel.value, valueIn.value); go(); }
      } })]),
      el("a", { "class": "button", id: "export-csv", href: exportHref, download: stream + ".csv", text: "Export CSV" })]);
  }
  function chips(params, filters, go) {
    return el("div", { id: "filters" }, filters.map(function (f) {
      return el("span", { "class": "chip" }, [f[0] + " = " + f[1], el("button", { title: "remove", text: "×", onclick: function () {
        var kept = params.getAll(f[0]).filter(function (v) { return v !== f[1]; }); params.delete(f[0]); kept.forEach(function (v) { params.append(f[0], v); }); go();
      } })]);
    }));
  }

  function drawCounts(box, doc, entry, range, filters, params, go) {
    box.appendChild(el("div", { "class": "muted", id: "count-total", text: HR.thousands(doc.total) + (doc.total === 1 ? " event" : " events") + ", per " + HR.per(doc.bucket_seconds) + " · " + HR.rangeText(range) }));
    var holder = el("div"); box.appendChild(holder);
    var single = doc.groups.length === 1;
    var series = doc.groups.map(function (g) { return { name: g.name, values: doc.series[g.name], total: g.total, bars: single }; });
    if (!doc.total) { holder.setAttribute("data-total", "0"); emptyCounts(holder, entry, range, filters, params, go); return; }
    HR.chart(holder, doc.times, series, { xRange: [range.sinceMs / 1000, range.untilMs / 1000] });
  }

  function cellOf(name, value, timeColumn) {
    if (value == null) return el("td", { text: "" });
    if (timeColumn) {
      var ms = HR.momentOf(name, value);
      return el("td", { "class": "time", text: HR.time(ms), title: String(value) + " · " + HR.otherTime(ms), "data-ms": String(ms) });
    }
    var text = typeof value === "object" ? JSON.stringify(value) : String(value);
    return el("td", { text: text, title: text.length > 40 ? text : null }); /* cut to a line; whole on hover */
  }
  function eventsTable(doc) {
    var keys = [];
    doc.events.forEach(function (e) { Object.keys(e.data).forEach(function (k) { if (keys.indexOf(k) < 0 && keys.length < 6) keys.push(k); }); });
    /* a column reads as times when every value it shows is one */
    var timeCols = {};
    keys.forEach(function (k) {
      var seen = doc.events.map(function (e) { return e.data[k]; }).filter(function (v) { return v != null; });
      timeCols[k] = seen.length > 0 && seen.every(function (v) { return HR.momentOf(k, v) != null; });
    });
    var table = el("table", { id: "events" }, [el("tr", {}, [el("th", { text: "time (" + HR.zoneName() + ")" })].concat(keys.map(function (k) { return el("th", { text: k }); })))]);
    doc.events.forEach(function (e) {
      var row = el("tr", { "class": "clickable", "data-id": e.id }, [HR.timeNode("td", Date.parse(e.time), { "class": "time" })].concat(
        keys.map(function (k) { return cellOf(k, e.data[k], timeCols[k]); })));
      row.addEventListener("click", function () {
        Array.prototype.forEach.call(table.querySelectorAll("tr.selected"), function (r) { r.classList.remove("selected"); });
        row.classList.add("selected");
        document.getElementById("event-json").textContent = JSON.stringify(e, null, 2);
      });
      table.appendChild(row);
    });
    return table;
  }

  function exploreStream(route, entry, streams) {
    var params = route.params, stream = route.arg, sink = params.get("sink") || entry.sink;
    var base = "/api/dashboard/streams/" + encodeURIComponent(stream);
    var filters = [];
    params.forEach(function (v, k) { if (!RESERVED[k]) filters.push([k, v]); });
    var range = HR.rangeOf(params);
    var common = [["sink", sink], ["since", range.since], ["until", range.until]].concat(filters);
    function go() { HR.setRoute("#/explore/" + encodeURIComponent(stream) + "?" + params.toString(), true); }
    return HR.api(base + "/fields", common).then(function (found) {
      HR.clearCharts();
      var view = HR.viewNode();
      var exportParams = new URLSearchParams(); common.forEach(function (p) { if (p[1]) exportParams.append(p[0], p[1]); });
      view.appendChild(el("h2", {}, ["Explore ", el("code", { text: stream }), el("span", { "class": "muted", text: " in " + sink })]));
      view.appendChild(controls(stream, entry, streams, found.fields, params, filters, base + "/export.csv?" + exportParams.toString(), go));
      view.appendChild(chips(params, filters, go));
      var box = el("div", { "class": "card chart", id: "count-chart" });
      var tableCard = el("div", { "class": "card" });
      var jsonCard = el("div", { "class": "card" }, [el("h3", { text: "Event" }), el("pre", { "class": "json", id: "event-json", text: "Click a row to see the whole event." })]);
      view.appendChild(box);
      view.appendChild(el("div", { "class": "split" }, [tableCard, jsonCard]));
      var countParams = common.slice(); if (params.get("group_by")) countParams.push(["group_by", params.get("group_by")]);
      var counted = HR.api(base + "/counts", countParams).then(function (doc) { drawCounts(box, doc, entry, range, filters, params, go); });
      var cursors = [""];
      function page(index) {
        var eventParams = common.concat([["limit", "25"]]); if (cursors[index]) eventParams.push(["cursor", cursors[index]]);
        return HR.api(base + "/events", eventParams).then(function (doc) {
          if (doc.next_cursor) cursors[index + 1] = doc.next_cursor;
          tableCard.innerHTML = "";
          tableCard.appendChild(el("h3", { text: "Events, newest first" }));
          tableCard.appendChild(eventsTable(doc));
          if (!doc.events.length) tableCard.appendChild(el("p", { "class": "muted", text: "No events match." }));
          tableCard.appendChild(el("div", { "class": "controls" }, [
            el("button", { "class": "plain", id: "prev-page", text: "← newer", disabled: index ? null : "disabled", onclick: function () { page(index - 1); } }),
            el("span", { "class": "muted", id: "page-number", text: "page " + (index + 1) }),
            el("button", { "class": "plain", id: "next-page", text: "older →", disabled: doc.next_cursor ? null : "disabled", onclick: function () { page(index + 1); } })
          ]));
        });
      }
      return Promise.all([counted, page(0)]);
    });
  }

  HR.views.explore = function (route) {
    return HR.streams().then(function (streams) {
      HR.clearCharts();
      if (!route.arg) { pickStream(streams); return; }
      var sink = route.params.get("sink");
      var entry = streams.filter(function (s) { return s.stream === route.arg && (!sink || s.sink === sink); })[0];
      if (!entry) { unknownStream(route.arg, sink, streams); return; }
      return exploreStream(route, entry, streams);
    });
  };
})(HR);
