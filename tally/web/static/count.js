/* Tally page views (docs/api.md, "Page views"): counts a view of this page, and of each
   new path a single-page app goes to, in its workspace's counter of the page. */
(function (w, d) {
  "use strict";
  var s = d.currentScript, a = s && s.dataset, last;
  if (!a || !a.workspace) return;
  var endpoint = new URL("count", s.src).href;

  function view() {
    var l = w.location, page = l.pathname + ("query" in a ? l.search : "");
    if (page === last) return; // replaceState of the same path, a second push: once
    last = page;
    var url = endpoint + "?workspace=" + encodeURIComponent(a.workspace) +
      (a.counter ? "&counter=" + encodeURIComponent(a.counter) : "&page=" + encodeURIComponent(page));
    try {
      if (w.navigator.sendBeacon && w.navigator.sendBeacon(url)) return;
    } catch (e) { /* fall back to fetch */ }
    if (w.fetch) {
      w.fetch(url, { method: "POST", keepalive: true, mode: "no-cors", credentials: "omit" })
        .catch(function () {});
    }
  }

  var h = w.history;
  ["pushState", "replaceState"].forEach(function (k) {
    var f = h[k];
    if (typeof f !== "function") return;
    h[k] = function () {
      var r = f.apply(this, arguments);
      view();
      return r;
    };
  });
  w.addEventListener("popstate", view);
  if (d.prerendering) d.addEventListener("prerenderingchange", view, { once: true });
  else view();
})(window, document);
