/* headrace browser tracker: no dependencies. headrace.init({endpoint, stream, token}) then
   headrace.track(name, props). Options: batchSize (10), flushInterval ms (5000), pageViews (true),
   spa (false: also count history.pushState/popstate navigations), clicks (true: elements with
   data-headrace-event="name", extra data-headrace-* attributes become props), respectDnt (false),
   tokenParam (send the token as this query parameter, so sendBeacon can carry it), maxQueue (500).
   Browsers refuse a sendBeacon or keepalive body over 64 KB (and keepalive requests in flight
   together over 64 KB), so every request carries at most LIMIT bytes; what cannot leave when the
   page is hidden waits in localStorage and goes out on the next page of the same site. */
(function (w, d) {
  var LIMIT = 60000, c, q = [], timer = 0, due = 0, notBefore = 0, busy = 0, flying = 0, cut = 0, fails = 0, on = 0, last;
  function now() { return new Date().toISOString(); }
  function url() {
    var u = c.endpoint.replace(/\/+$/, "") + "/v1/streams/" + encodeURIComponent(c.stream) + "/events";
    return c.token && c.tokenParam ? u + "?" + c.tokenParam + "=" + encodeURIComponent(c.token) : u;
  }
  function headers() {
    var h = { "Content-Type": "application/json" };
    if (c.token && !c.tokenParam) h.Authorization = "Bearer " + c.token;
    return h;
  }
  /* one timer, for the earliest flush anyone asked for */
  function schedule(ms) {
    var at = Date.now() + ms;
    if (timer && at >= due) return;
    clearTimeout(timer);
    due = at;
    timer = setTimeout(function () { timer = 0; flush(); }, ms);
  }
  function bytes(s) { return new Blob([s]).size; }
  /* the events at the front of the queue that fit one request: at most max, LIMIT bytes (one
     event at least, however big: it is sent without keepalive) */
  function take(max) {
    var n = 0, size = 2;
    while (n < q.length && n < max) {
      size += bytes(JSON.stringify(q[n])) + 1;
      if (n && size > LIMIT) break;
      n++;
    }
    cut = n < max && n < q.length; /* the rest of a full batch goes out right after */
    return q.splice(0, n);
  }
  function key() { return "headrace:" + c.endpoint + ":" + c.stream; }
  /* events the browser would not take at page hide: kept for the next page (or for this one,
     should it become visible again); storage may be disabled or full, then they are lost */
  function stash(events) {
    try {
      var s = w.localStorage, old = JSON.parse(s.getItem(key()) || "[]");
      s.setItem(key(), JSON.stringify(old.concat(events).slice(-c.maxQueue)));
    } catch (e) {}
  }
  function unstash() {
    try {
      var s = w.localStorage, old = JSON.parse(s.getItem(key()) || "[]");
      s.removeItem(key());
      if (old.length) { q = old.concat(q).slice(0, c.maxQueue); schedule(0); }
    } catch (e) {}
  }
  function flush() {
    if (!on || busy || !q.length) return;
    /* after a refusal nothing goes out before the backoff or Retry-After, however many new
       events arrive meanwhile */
    var wait = notBefore - Date.now();
    if (wait > 0) return schedule(wait);
    var batch = take(c.batchSize), body = JSON.stringify(batch);
    var size = bytes(body), keepalive = size <= LIMIT;
    busy = 1;
    flying = keepalive ? size : 0;
    fetch(url(), { method: "POST", headers: headers(), body: body, keepalive: keepalive })
      .then(function (r) {
        flying = 0;
        if (r.ok) { fails = 0; notBefore = 0; return done(0); }
        if (r.status == 429 || r.status >= 500) return retry(batch, r.headers.get("Retry-After"));
        done(0); /* refused for good (4xx): retrying cannot help */
      }, function () { flying = 0; retry(batch); });
  }
  function done(wait) {
    busy = 0;
    if (q.length) schedule(wait || (q.length >= c.batchSize || cut ? 0 : c.flushInterval));
  }
  function retry(batch, after) {
    q = batch.concat(q).slice(0, c.maxQueue);
    fails++;
    var s = parseFloat(after);
    var wait = s >= 0 ? s * 1000 : Math.min(30000, 500 * Math.pow(2, fails - 1)) * (0.5 + Math.random() / 2);
    notBefore = Date.now() + wait;
    clearTimeout(timer); /* an earlier timer would only find notBefore ahead and wait again */
    timer = 0;
    done(wait);
    if (fails > 8) fails = 8;
  }
  /* page hide: the page may never run again, so hand everything to the browser at once */
  function drain() {
    if (!on || !q.length) return;
    var n = w.navigator, beacon = (!c.token || c.tokenParam) && n.sendBeacon, budget = LIMIT - flying;
    while (q.length) {
      var batch = take(Infinity), body = JSON.stringify(batch), size = bytes(body);
      /* beacons and keepalive requests in flight share one 64 KB budget: past it, a beacon is
         refused or a keepalive fetch fails while the page goes away, so keep the rest for later */
      if (size > budget) { stash(batch.concat(q.splice(0, q.length))); return; }
      budget -= size;
      if (!beacon || !n.sendBeacon(url(), new Blob([body], { type: "text/plain" }))) keep(batch, body);
    }
  }
  function keep(batch, body) {
    var back = function () { if (d.visibilityState == "hidden") stash(batch); else q = batch.concat(q); };
    try {
      fetch(url(), { method: "POST", headers: headers(), body: body, keepalive: true })
        .then(function (r) { if (r.status == 429 || r.status >= 500) back(); }, back);
    } catch (e) { back(); }
  }
  function add(ev) {
    if (!on) return;
    q.push(ev);
    if (q.length > c.maxQueue) q.shift();
    if (q.length >= c.batchSize) { clearTimeout(timer); timer = 0; flush(); } else schedule(c.flushInterval);
  }
  function base(name, props) {
    var l = w.location;
    return { event: name, props: props || {}, pagePath: l.pathname, url: l.href, title: d.title,
             referrer: d.referrer || null, userAgent: w.navigator.userAgent, timestamp: now() };
  }
  function page() {
    var ev = base("page_view");
    if (ev.url == last) return;
    if (last) ev.referrer = last;
    add(ev);
    last = ev.url;
  }
  function click(e) {
    for (var el = e.target; el && el.getAttribute; el = el.parentNode) {
      var name = el.getAttribute("data-headrace-event");
      if (name) {
        var props = {}, a = el.attributes;
        for (var i = 0; i < a.length; i++)
          if (a[i].name.indexOf("data-headrace-") == 0 && a[i].name != "data-headrace-event")
            props[a[i].name.slice(14)] = a[i].value;
        props.text = (el.textContent || "").trim().slice(0, 100);
        return add(base(name, props));
      }
    }
  }
  function init(o) {
    c = { batchSize: 10, flushInterval: 5000, pageViews: true, spa: false, clicks: true,
          respectDnt: false, maxQueue: 500 };
    for (var k in o) c[k] = o[k];
    if (!c.endpoint || !c.stream) throw new Error("headrace.init needs endpoint and stream");
    var n = w.navigator;
    if (c.respectDnt && (n.doNotTrack == "1" || w.doNotTrack == "1" || n.globalPrivacyControl)) return;
    if (on) return;
    on = 1;
    if (c.clicks) d.addEventListener("click", click, true);
    d.addEventListener("visibilitychange", function () {
      if (d.visibilityState == "hidden") drain(); else unstash();
    });
    w.addEventListener("pagehide", drain);
    if (c.spa) {
      ["pushState", "replaceState"].forEach(function (m) {
        var f = history[m];
        history[m] = function () { var r = f.apply(this, arguments); setTimeout(page, 0); return r; };
      });
      w.addEventListener("popstate", page);
    }
    unstash();
    if (c.pageViews) page();
  }
  w.headrace = { init: init, track: function (name, props) { add(base(name, props)); },
                 flush: flush, queued: function () { return q.length; } };
})(window, document);
