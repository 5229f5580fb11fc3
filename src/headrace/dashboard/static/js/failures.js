/* Dead letters (#/deadletters) and bad rows (#/badrows): how many are pending, filters by
   sink/source, reason and stream (with their counts), pages of 50 newest first, the failure
   time and the failing field path; a click shows the whole row. */
"use strict";
(function (HR) {
  var el = HR.el;
  var PAGE = 50;
  var KINDS = {
    deadletters: { title: "Dead letters", owner: "sink", message: "error",
      about: "Events a sink refused for good. Send them back (after fixing the cause) with: headrace dlq replay --sink <sink>",
      none: "No dead letters: every event handed to a sink was stored." },
    badrows: { title: "Bad rows", owner: "source", message: "message",
      about: "Events and requests refused at ingest (schema, decoding, size, mapping). Check them again and deliver what now passes with: headrace badrows replay",
      none: "No bad rows: every request so far fitted its source." }
  };

  function filterSelect(name, label, choices, params, go) {
    var current = params.get(name) || "";
    var select = el("select", { id: "filter-" + name, "aria-label": label }, [el("option", { value: "", text: "every " + label })]);
    var seen = false;
    choices.forEach(function (c) {
      var o = el("option", { value: c.value, text: c.value + " (" + HR.thousands(c.count) + ")" });
      if (c.value === current) { o.selected = true; seen = true; }
      select.appendChild(o);
    });
    if (current && !seen) { var o = el("option", { value: current, text: current + " (0)" }); o.selected = true; select.appendChild(o); }
    select.addEventListener("change", function () {
      if (select.value) params.set(name, select.value); else params.delete(name);
      params.delete("before"); go();
    });
    return select;
  }

  function detail(kind, id, pre) {
    pre.textContent = "Loading…";
    return HR.api("/api/dashboard/" + kind + "/" + id).then(function (row) {
      var body = row.body;
      try { body = JSON.parse(body); } catch (e) { /* not JSON: shown as the text it is */ }
      pre.textContent = JSON.stringify(Object.assign({}, row, { body: body }), null, 2);
    });
  }

  function table(kind, info, rows, pre) {
    var heads = ["failed at (" + HR.zoneName() + ")", info.owner, "reason", "stream", "field path", info.message];
    if (kind === "deadletters") heads.push("attempts");
    var t = el("table", { id: kind }, [el("tr", {}, heads.map(function (h) { return el("th", { text: h }); }))]);
    rows.forEach(function (r) {
      var cells = [HR.timeNode("td", r.failed_at_us / 1000, { "class": "time" }), el("td", { text: r[info.owner] }),
        el("td", { text: r.reason }), el("td", { text: r.stream }), el("td", { "class": "path", text: r.field_path || "–" }),
        el("td", { "class": "message", text: r[info.message] || "" })];
      if (kind === "deadletters") cells.push(el("td", { "class": "num", text: String(r.attempts) }));
      var row = el("tr", { "class": "clickable", "data-id": String(r.id) }, cells);
      row.addEventListener("click", function () {
        Array.prototype.forEach.call(t.querySelectorAll("tr.selected"), function (x) { x.classList.remove("selected"); });
        row.classList.add("selected");
        detail(kind, r.id, pre);
      });
      t.appendChild(row);
    });
    return t;
  }

  HR.views.failures = function (kind, route) {
    var info = KINDS[kind], params = route.params;
    var stack = (params.get("pages") || "").split(",").filter(Boolean); /* the `before` of each earlier page */
    function go() { HR.setRoute("#/" + kind + "?" + params.toString(), true); }
    var q = [["limit", String(PAGE)]];
    [info.owner, "reason", "stream", "before", "replayed"].forEach(function (k) { if (params.get(k)) q.push([k, params.get(k)]); });
    return HR.api("/api/dashboard/" + kind, q).then(function (doc) {
      var view = HR.viewNode();
      var filtered = params.get(info.owner) || params.get("reason") || params.get("stream");
      view.appendChild(el("h2", {}, [info.title + " ", el("span", { "class": "count", id: "failure-total", "data-total": String(doc.total),
        text: HR.thousands(doc.total) + (params.get("replayed") === "true" ? " in all" : " pending") + (filtered ? " matching" : "") })]));
      view.appendChild(el("p", { "class": "muted", text: info.about }));
      var replayed = el("input", { type: "checkbox", id: "include-replayed" });
      replayed.checked = params.get("replayed") === "true";
      replayed.addEventListener("change", function () { if (replayed.checked) params.set("replayed", "true"); else params.delete("replayed"); params.delete("before"); params.delete("pages"); go(); });
      view.appendChild(el("div", { "class": "controls" }, [
        filterSelect(info.owner, info.owner, doc.choices[info.owner], params, go),
        filterSelect("reason", "reason", doc.choices.reason, params, go),
        filterSelect("stream", "stream", doc.choices.stream, params, go),
        el("label", {}, [replayed, " include replayed"])]));
      if (!doc.rows.length) {
        view.appendChild(el("p", { "class": "muted empty", id: "failures-empty", text: doc.total || filtered ? "None match these filters." : info.none }));
        return;
      }
      var first = stack.length * PAGE + 1, last = first + doc.rows.length - 1;
      var pager = el("div", { "class": "controls" }, [
        el("button", { "class": "plain", id: "newer-page", text: "← newer", disabled: stack.length ? null : "disabled", onclick: function () {
          var back = stack.slice(0, -1); params.set("pages", back.join(",")); if (back.length) params.set("before", back[back.length - 1]); else params.delete("before");
          if (!back.length) params.delete("pages"); go();
        } }),
        el("span", { "class": "muted", id: "failure-range", text: HR.thousands(first) + "–" + HR.thousands(last) + " of " + HR.thousands(doc.total) }),
        el("button", { "class": "plain", id: "older-page", text: "older →", disabled: doc.next_before ? null : "disabled", onclick: function () {
          params.set("pages", stack.concat([String(doc.next_before)]).join(",")); params.set("before", String(doc.next_before)); go();
        } })]);
      var pre = el("pre", { "class": "json", id: "row-json", text: "Click a row to see it whole." });
      view.appendChild(el("div", { "class": "split" }, [el("div", { "class": "card" }, [table(kind, info, doc.rows, pre), pager]), el("div", { "class": "card" }, [pre])]));
    });
  };
})(HR);
