// The counter page's charts (Chart.js), from the page's data.json; refreshed every 30 s
// and whenever the live counts change (at most once a second).
"use strict";

(function () {
  const section = document.getElementById("charts");
  if (!section || typeof Chart === "undefined") return;
  const UP = "#2563eb";
  const DOWN = "#dc2626";
  const charts = {};
  const narrow = window.matchMedia("(max-width: 40rem)").matches; // a phone: fewer labels
  const specs = [
    ["chart-hourly", "hourly", "bar"],
    ["chart-daily", "daily", "bar"],
    ["chart-hour-of-day", "hour_of_day", "bar"],
    ["chart-weekday", "weekday", "bar"],
  ];

  function datasets(series) {
    return [
      { label: "up", data: series.up, backgroundColor: UP },
      { label: "down", data: series.down, backgroundColor: DOWN },
    ];
  }

  function draw(data) {
    for (const [id, key, type] of specs) {
      const series = data[key];
      if (charts[id]) {
        charts[id].data.labels = series.labels;
        charts[id].data.datasets = datasets(series);
        charts[id].update("none");
        continue;
      }
      charts[id] = new Chart(document.getElementById(id), {
        type: type,
        data: { labels: series.labels, datasets: datasets(series) },
        options: {
          animation: false,
          maintainAspectRatio: false,
          scales: {
            // labels stay level: fewer of them rather than rotated
            x: { ticks: { maxTicksLimit: narrow ? 4 : 8, maxRotation: 0, autoSkip: true } },
            y: { beginAtZero: true, ticks: { precision: 0 } },
          },
          plugins: { legend: { position: "bottom" } },
        },
      });
    }
    for (const [key, prefix] of [["today", "today"], ["this_week", "week"]]) {
      const up = document.getElementById(prefix + "-up");
      const down = document.getElementById(prefix + "-down");
      if (up && data[key]) up.textContent = String(data[key].up);
      if (down && data[key]) down.textContent = data[key].down + " down";
    }
    section.dataset.loaded = String(data.up_count);
    section.dataset.seen = data.up_count + "/" + data.down_count;
  }

  async function load() {
    try {
      const response = await fetch(section.dataset.src, { credentials: "same-origin" });
      if (response.ok) draw(await response.json());
    } catch {
      // offline for a moment: the next refresh tries again
    }
  }

  load();
  setInterval(load, 30000);
  // the live counts (live.js) changed: redraw the charts too
  // (a busy counter changes up to 10 times a second: one reload a second at most)
  let queued = false;
  let last = 0;
  document.addEventListener("tally:counts", (event) => {
    const seen = event.detail.up_count + "/" + event.detail.down_count;
    if (seen === section.dataset.seen || queued) return;
    queued = true;
    setTimeout(() => { queued = false; last = Date.now(); load(); },
               Math.max(0, last + 1000 - Date.now()));
  });
})();
