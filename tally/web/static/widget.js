/* Tally's live counter (docs/api.md, "Live widget"):
   <tally-counter workspace="blog" name="visits" label="visits"></tally-counter>
   shows a public counter's value and follows it over its event stream, polling when
   the stream cannot open. Never sends a token: a private counter shows an error. */
(function (w) {
  "use strict";
  var tag = "tally-counter";
  if (!w.customElements || w.customElements.get(tag)) return;
  var base = new URL("v2/", w.document.currentScript.src).href;
  var POLL_MS = 15000;
  var CSS =
    ":host{display:inline-flex;vertical-align:middle;height:var(--tally-height,20px);" +
    "border-radius:var(--tally-radius,3px);overflow:hidden;color:var(--tally-color,#fff);" +
    "font:var(--tally-font-size,11px)/var(--tally-height,20px) var(--tally-font,Verdana,'DejaVu Sans',Geneva,sans-serif);" +
    "text-shadow:0 1px 0 rgba(1,1,1,.3);" +
    "background-image:linear-gradient(rgba(187,187,187,.1),rgba(0,0,0,.1))}" +
    "span{padding:0 var(--tally-padding,6px);white-space:nowrap}" +
    ".l{background-color:var(--tally-label-background,#555)}" +
    ".v{background-color:var(--tally-background,#007ec6);font-variant-numeric:tabular-nums}" +
    ":host([state=error]) .v{background-color:var(--tally-error-background,#9f9f9f)}" +
    ":host([hidden]){display:none}";

  function number(n) {
    return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  }

  class TallyCounter extends HTMLElement {
    static get observedAttributes() { return ["workspace", "name", "label"]; }

    constructor() {
      super();
      var root = this.attachShadow({ mode: "open" });
      root.innerHTML = "<style>" + CSS + "</style><span class=l part=label></span>" +
        "<span class=v part=value>\u2026</span>";
      this.l = root.querySelector(".l");
      this.v = root.querySelector(".v");
    }

    connectedCallback() { this.start(); }
    disconnectedCallback() { this.stop(); }
    attributeChangedCallback() {
      if (this.isConnected) { this.stop(); this.start(); }
    }

    start() {
      var ws = this.getAttribute("workspace"), name = this.getAttribute("name");
      var label = this.getAttribute("label");
      this.l.textContent = label === null ? name || "" : label;
      this.l.hidden = label === "";
      this.v.textContent = "\u2026";
      this.setAttribute("state", "loading");
      if (!ws || !name) return this.fail("no counter");
      this.url = base + encodeURIComponent(ws) + "/" + encodeURIComponent(name);
      if (!w.EventSource) return this.poll();
      var self = this, es = this.es = new w.EventSource(this.url + "/stream");
      es.onmessage = function (e) { self.show(JSON.parse(e.data), "live"); };
      es.addEventListener("end", function (e) {
        self.stop();
        var reason = JSON.parse(e.data).reason;
        if (reason === "stopping" || reason === "unavailable") {
          self.timer = setTimeout(function () { self.start(); }, 2000);
        } else self.fail(reason === "not_found" ? "not found" : "unavailable");
      });
      es.onerror = function () {
        // a refused stream (404, 429, ...) is closed for good; a dropped one reconnects
        if (es.readyState === 2) { self.stop(); self.poll(); }
      };
    }

    stop() {
      if (this.es) { this.es.close(); this.es = null; }
      clearTimeout(this.timer);
    }

    poll() {
      var self = this;
      w.fetch(this.url, { credentials: "omit", cache: "no-store" }).then(function (r) {
        return r.json().then(function (body) {
          if (!r.ok) throw body;
          self.show(body.data, "polling");
          self.timer = setTimeout(function () { self.poll(); }, POLL_MS);
        });
      }).catch(function (body) {
        self.fail(body && body.code === "404" ? "not found" : "unavailable");
        if (!body || body.code !== "404") {
          self.timer = setTimeout(function () { self.poll(); }, POLL_MS);
        }
      });
    }

    show(data, state) {
      this.v.textContent = number(data.value);
      this.setAttribute("state", state);
      this.setAttribute("value", String(data.value));
    }

    fail(message) {
      this.v.textContent = message;
      this.removeAttribute("value");
      this.setAttribute("state", "error");
    }
  }

  w.customElements.define(tag, TallyCounter);
})(window);
