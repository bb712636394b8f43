// Draws the charts of a dashboard page with plotly.js, from the view embedded as JSON.
// Each chart is a <div data-chart="kind">; the data is the page's model (#view-data).
(function () {
  "use strict";
  var source = document.getElementById("view-data");
  if (!source || typeof Plotly === "undefined") { return; }
  var view = JSON.parse(source.textContent);
  var layout = { margin: { t: 36, r: 16, b: 40, l: 52 }, legend: { orientation: "h" } };
  var config = { displaylogo: false, responsive: true };

  function pluck(rows, key) { return rows.map(function (r) { return r[key]; }); }
  function line(rows, x, key, name) { return { x: pluck(rows, x), y: pluck(rows, key), name: name, type: "scatter", mode: "lines" }; }
  function bars(rows, x, key, name) { return { x: pluck(rows, x), y: pluck(rows, key), name: name, type: "bar" }; }
  function hours(rows, key) { return rows.map(function (r) { return r[key] === null ? null : r[key] / 3600; }); }
  function titled(text, extra) { return Object.assign({}, layout, { title: { text: text } }, extra || {}); }

  var charts = {
    "active": function () {
      var s = view.series;
      return [[line(s, "day", "dau", "DAU"), line(s, "day", "wau", "WAU"), line(s, "day", "mau", "MAU")],
        titled("Active members")];
    },
    "growth": function () {
      var s = view.series;
      return [[bars(s, "day", "joins", "Joins"), bars(s, "day", "leaves", "Leaves"), line(s, "day", "net_growth", "Net growth")],
        titled("Growth", { barmode: "group" })];
    },
    "content": function () {
      var s = view.series;
      return [[bars(s, "day", "posts", "Posts"), bars(s, "day", "replies", "Replies")],
        titled("Posts and replies per day", { barmode: "stack" })];
    },
    "first-reply": function () {
      var d = view.days;
      return [[
        { x: pluck(d, "day"), y: hours(d, "median_first_reply_seconds"), name: "Median", type: "scatter", mode: "lines+markers" },
        { x: pluck(d, "day"), y: hours(d, "p90_first_reply_seconds"), name: "p90", type: "scatter", mode: "lines+markers" }
      ], titled("Time to first reply (hours)")];
    },
    "crisis": function () {
      var h = view.hours;
      var upper = h.map(function (r) { return r.baseline_mean + view.k * r.baseline_std; });
      var alerts = h.filter(function (r) { return r.alert; });
      return [[
        bars(h, "hour", "signal", "Signal"),
        { x: pluck(h, "hour"), y: upper, name: "Mean + k·std", type: "scatter", mode: "lines" },
        { x: pluck(alerts, "hour"), y: pluck(alerts, "signal"), name: "Alert", type: "scatter", mode: "markers", marker: { size: 10, color: "#c0392b" } }
      ], titled("Reports + negative reactions per hour")];
    }
  };

  document.querySelectorAll("[data-chart]").forEach(function (el) {
    var make = charts[el.dataset.chart];
    if (!make) { return; }
    var figure = make();
    Plotly.newPlot(el, figure[0], figure[1], config);
  });
})();
