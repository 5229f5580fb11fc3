/* The headrace dashboard: a hash-routed page over the service's JSON endpoints.
   Views: overview (#/), explore a stream (#/explore/<stream>), page hits (#/pagehits),
   dead letters (#/deadletters), bad rows (#/badrows), bulk loads (#/loads); each lives in
   js/<view>.js, the shared pieces in js/core.js and js/charts.js. */
"use strict";
(function (HR) {
  var view = document.getElementById("view");
  var refreshTimer = 0, rendering = 0;

  HR.viewNode = function () { view.innerHTML = ""; return view; };
  HR.setRoute = function (hash, replace) {
    if (replace) { history.replaceState(null, "", hash); HR.render(); } else location.hash = hash;
  };
  function parseHash() {
    var raw = location.hash.replace(/^#\/?/, "");
    var cut = raw.indexOf("?"), path = cut < 0 ? raw : raw.slice(0, cut);
    var segs = path.split("/").filter(Boolean).map(decodeURIComponent);
    return { name: segs[0] || "overview", arg: segs[1] || "", params: new URLSearchParams(cut < 0 ? "" : raw.slice(cut + 1)) };
  }
  function start(route) {
    if (route.name === "explore") return HR.views.explore(route);
    if (route.name === "pagehits") return HR.views.pagehits(route);
    if (route.name === "deadletters" || route.name === "badrows") return HR.views.failures(route.name, route);
    if (route.name === "loads") return HR.views.loads(route);
    return HR.views.overview(route);
  }
  HR.render = function () {
    var route = parseHash(), mine = ++rendering;
    Array.prototype.forEach.call(document.querySelectorAll("[data-nav]"), function (a) {
      a.classList.toggle("active", a.getAttribute("data-nav") === route.name);
    });
    document.body.setAttribute("data-view", route.name);
    document.body.removeAttribute("data-ready");
    start(route).then(function () { if (mine === rendering) HR.ready(route.name); }, function () {});
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(function () {
      var again = document.getElementById("autorefresh").checked && (route.name === "overview" || route.name === "loads");
      if (again && parseHash().name === route.name && mine === rendering) HR.render();
    }, 10000);
  };

  var tz = document.getElementById("tz");
  tz.value = HR.utc() ? "utc" : "local";
  tz.options[0].textContent = "local time (" + HR.localZone() + ")";
  tz.addEventListener("change", function () { HR.setUtc(tz.value === "utc"); HR.render(); });
  document.getElementById("autorefresh").addEventListener("change", function (e) { if (e.target.checked) HR.render(); });
  window.addEventListener("hashchange", HR.render);
  HR.render();
})(HR);
