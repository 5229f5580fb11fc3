/* Time charts (uPlot): counts start at zero, series keep the order they are given (the service
   sorts groups by volume) and with it their colours, the legend shows each series' total until
   the pointer picks a moment, the time axis is in the page's zone with labels spaced so they
   never overlap, and a previous period can be drawn dashed beside the current one. */
"use strict";
(function (HR) {
  var PALETTE = ["#2f6fde", "#e0783a", "#1f8a4c", "#9b4ddb", "#c8372d", "#1796a8", "#b58a00", "#d0458f"];
  var FIXED = { "(other)": "#9aa3b2", "(none)": "#c3c8d2" };
  var MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
  HR.colorFor = function (name, index) { return FIXED[name] || PALETTE[index % PALETTE.length]; };

  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function zoned(seconds) { /* a Date whose local fields read as the page's zone */
    var d = new Date(seconds * 1000);
    return HR.utc() ? uPlot.tzDate(d, "Etc/UTC") : d;
  }
  /* Tick labels by the tick step: times within a day, the date where the day changes; dates
     for steps of a day or more. */
  function timeLabels(u, splits, axis, space, incr) {
    var lastDay = null;
    return splits.map(function (s) {
      var d = zoned(s), day = MONTHS[d.getMonth()] + " " + d.getDate();
      if (incr >= 86400) return incr >= 86400 * 28 ? MONTHS[d.getMonth()] + " " + d.getFullYear() : day;
      var text = pad(d.getHours()) + ":" + pad(d.getMinutes());
      if (day !== lastDay) { text += "\n" + day; lastDay = day; }
      return text;
    });
  }
  function niceMax(max) {
    if (!(max > 0)) return 1;
    return uPlot.rangeNum(0, max, 0.05, true)[1];
  }
  HR.niceMax = niceMax;

  /* chart(target, xs in seconds, [{name, values, total?, color?, dash?, bars?}], opts) */
  HR.chart = function (target, xs, series, opts) {
    opts = opts || {};
    var total = 0;
    series.forEach(function (s) {
      if (s.total == null) s.total = s.values.reduce(function (a, v) { return a + (v || 0); }, 0);
      if (!s.dash) total += s.total;
    });
    target.setAttribute("data-total", String(Math.round(total * 1000) / 1000));
    target.setAttribute("data-points", String(xs.length));
    target.innerHTML = "";
    if (!xs.length || !series.length) {
      target.appendChild(HR.el("p", { "class": "muted empty", text: opts.empty || "No data in this range." }));
      return null;
    }
    var width = Math.max(300, target.clientWidth || 400);
    var canBar = uPlot.paths && uPlot.paths.bars;
    var format = opts.format || HR.fmt;
    var u = new uPlot({
      width: width, height: opts.height || 180,
      legend: { show: opts.legend !== false },
      cursor: { points: { show: false } },
      tzDate: zoned,
      scales: {
        x: opts.xRange ? { time: true, range: function () { return opts.xRange; } } : { time: true },
        y: { range: function (u, min, max) { return [0, niceMax(max)]; } } /* counts from zero */
      },
      axes: [
        { space: 72, values: timeLabels, font: "11px system-ui, sans-serif" },
        { size: 50, space: 28, values: function (u, vals) { return vals.map(format); }, font: "11px system-ui, sans-serif" }
      ],
      series: [{ value: function (u, v) { return v == null ? "whole range" : HR.time(v * 1000).slice(0, 16); } }].concat(series.map(function (s, i) {
        var color = s.color || HR.colorFor(s.name, i);
        return {
          label: s.name, stroke: color, width: s.dash ? 1.25 : 1.5, dash: s.dash ? [5, 4] : undefined,
          fill: s.bars && !s.dash ? color + "33" : undefined,
          paths: s.bars && canBar ? uPlot.paths.bars({ size: [0.8, 40] }) : undefined,
          points: { show: false },
          /* without a moment picked, the legend shows the series' total */
          value: function (u, v, si, idx) { return idx == null ? (s.summary != null ? s.summary : format(s.total)) : format(v); }
        };
      }))
    }, [xs].concat(series.map(function (s) { return s.values; })), target);
    u.headraceSeries = series;
    HR.charts.push(u);
    return u;
  };
  HR.clearCharts = function () { HR.charts.forEach(function (c) { c.destroy(); }); HR.charts = []; };
  HR.chartIn = function (node) { /* the chart drawn in node (tests read its scales) */
    for (var i = 0; i < HR.charts.length; i++) if (node.contains(HR.charts[i].root)) return HR.charts[i];
    return null;
  };
  var resizing = 0;
  window.addEventListener("resize", function () {
    clearTimeout(resizing);
    resizing = setTimeout(function () {
      HR.charts.forEach(function (u) {
        var w = u.root.parentNode && u.root.parentNode.clientWidth;
        if (w && Math.abs(w - u.width) > 4) u.setSize({ width: Math.max(300, w), height: u.height });
      });
    }, 150);
  });

  /* A small table of counts with bars: rows [{value, count, ...}]; onPick(row) makes rows
     clickable filters. */
  HR.topTable = function (id, title, rows, opts) {
    opts = opts || {};
    var el = HR.el, max = rows.reduce(function (m, r) { return Math.max(m, r.count); }, 1);
    var sum = opts.total || rows.reduce(function (a, r) { return a + r.count; }, 0) || 1;
    var head = [el("th", { text: opts.label || "" }), el("th", { "class": "num", text: opts.countLabel || "hits" })];
    if (opts.distinct) head.push(el("th", { "class": "num", text: opts.distinct }));
    head.push(el("th", { "class": "num", text: "%" }), el("th", { "class": "barcell", text: "" }));
    var table = el("table", { id: id, "class": "top" }, [el("tr", {}, head)]);
    rows.forEach(function (r) {
      var cells = [el("td", { "class": "value", text: String(r.value) }), el("td", { "class": "num", text: HR.thousands(r.count) })];
      if (opts.distinct) cells.push(el("td", { "class": "num", text: r.distinct == null ? "–" : HR.thousands(r.distinct) }));
      cells.push(el("td", { "class": "num muted", text: (100 * r.count / sum).toFixed(1) }),
                 el("td", { "class": "barcell" }, [el("div", { "class": "bar", style: "width:" + (100 * r.count / max).toFixed(1) + "%" })]));
      var row = el("tr", { "class": opts.onPick ? "clickable" : null, "data-value": String(r.filter != null ? r.filter : r.value) }, cells);
      if (opts.onPick) {
        row.title = "show only " + r.value;
        row.addEventListener("click", function () { opts.onPick(r); });
      }
      table.appendChild(row);
    });
    var card = el("div", { "class": "card" }, [el("h3", { text: title }), table]);
    if (!rows.length) card.appendChild(el("p", { "class": "muted", text: opts.empty || "None in this range." }));
    return card;
  };
})(HR);
