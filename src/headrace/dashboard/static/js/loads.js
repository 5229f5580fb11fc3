/* Bulk loads (#/loads?status=): the batch history of table-export loads, with retry and
   cancel. */
"use strict";
(function (HR) {
  var el = HR.el;
  var STATUSES = ["pending", "fetching", "staged", "loading", "loaded", "failed", "expired", "skipped"];

  function act(job, name) {
    return el("button", { "class": "plain", "data-action": name, text: name, onclick: function (e) {
      e.stopPropagation();
      fetch("/v1/loads/" + job.id + "/" + name, { method: "POST", credentials: "same-origin" }).then(function (r) {
        return r.json().then(function (body) { if (!r.ok) throw new Error((body.error || r.status) + ": " + (body.message || "")); });
      }).then(function () { HR.showError(""); HR.render(); }, function (err) { HR.showError(String(err.message || err)); });
    } });
  }

  function row(job, pre) {
    var action = null;
    if (job.status === "failed" || job.status === "expired") action = act(job, "retry");
    else if (job.status === "pending" || job.status === "fetching" || job.status === "staged") action = act(job, "cancel");
    var failed = job.status === "failed" || job.status === "expired";
    var tr = el("tr", { "class": "clickable status-" + job.status, "data-id": String(job.id) }, [
      el("td", { text: String(job.id) }), el("td", { text: job.table }), el("td", { text: job.kind }),
      el("td", { "class": job.status === "loaded" ? "" : failed ? "bad" : "muted", text: job.status }),
      el("td", { "class": "num", text: job.rows == null ? "–" : HR.fmt(job.rows) }), el("td", { "class": "num", text: String(job.attempts) }),
      job.finished_at ? HR.timeNode("td", job.finished_at * 1000, { "class": "time" }) : el("td", { text: "–" }),
      el("td", { text: job.error || "" }), el("td", {}, [action])
    ]);
    tr.addEventListener("click", function () { pre.textContent = JSON.stringify(job, null, 2); });
    return tr;
  }

  HR.views.loads = function (route) {
    var params = route.params;
    var q = []; params.forEach(function (v, k) { q.push([k, v]); });
    return HR.api("/v1/loads", q.concat([["limit", "100"]])).then(function (doc) {
      var view = HR.viewNode();
      view.appendChild(el("h2", { text: "Bulk loads" }));
      var status = el("select", { id: "load-status", "aria-label": "status" }, [el("option", { value: "", text: "every status" })].concat(
        STATUSES.map(function (s) { var o = el("option", { value: s, text: s }); if (s === params.get("status")) o.selected = true; return o; })));
      status.addEventListener("change", function () {
        if (status.value) params.set("status", status.value); else params.delete("status");
        HR.setRoute("#/loads?" + params.toString(), true);
      });
      view.appendChild(el("div", { "class": "controls" }, [status]));
      if (!doc.loads.length) {
        view.appendChild(el("p", { "class": "muted", id: "loads-empty", text: params.get("status") ? "No load jobs with this status."
          : "No load jobs yet. A table-export webhook (headrace init --recipe controlshift-bulk) or headrace load creates them." }));
        return;
      }
      var pre = el("pre", { "class": "json", id: "load-json", text: "Click a job to see it." });
      var table = el("table", { id: "loads" }, [el("tr", {}, ["id", "table", "kind", "status", "rows", "attempts", "finished (" + HR.zoneName() + ")", "error", ""].map(function (h) { return el("th", { text: h }); }))]);
      doc.loads.forEach(function (job) { table.appendChild(row(job, pre)); });
      view.appendChild(el("div", { "class": "split" }, [el("div", { "class": "card" }, [table]), el("div", { "class": "card" }, [pre])]));
    });
  };
})(HR);
