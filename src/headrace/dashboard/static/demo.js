/* The demo shop page: starts the tracker with the options in the query string (a file, not an
   inline script, so the page works under the dashboard's Content-Security-Policy). */
var params = new URLSearchParams(location.search);
var stream = params.get("stream") || "demo";
document.getElementById("stream-name").textContent = stream;
headrace.init({ endpoint: location.origin, stream: stream, spa: true,
                batchSize: +params.get("batch") || 5, flushInterval: +params.get("interval") || 2000,
                respectDnt: params.get("dnt") === "1" });
document.getElementById("custom").addEventListener("click", function () {
  headrace.track("custom_event", { plan: "pro", seats: 3 });
});
document.getElementById("spa").addEventListener("click", function (e) {
  e.preventDefault();
  history.pushState({}, "", "/demo/checkout" + location.search);
});
