// docker-manager dashboard: confirmations, host charts, log scrolling. No inline scripts (CSP).
(function () {
  "use strict";

  // Forms that change things ask first.
  document.addEventListener("submit", function (event) {
    var message = event.target.getAttribute("data-confirm");
    if (message && !window.confirm(message)) { event.preventDefault(); }
  });

  // Keep the task log scrolled to its end while lines arrive (unless the reader scrolled up).
  document.addEventListener("htmx:sseMessage", function (event) {
    var log = document.getElementById("log");
    if (log && log.scrollHeight - log.scrollTop - log.clientHeight < 80) { log.scrollTop = log.scrollHeight; }
    if (event.detail && event.detail.type === "end") {
      var status = document.getElementById("status");
      var final = document.querySelector("#final li");
      if (status && final) {
        status.textContent = final.getAttribute("data-status");
        status.className = "badge " + status.textContent;
      }
    }
  });

  function chart(target, title, series, width, values) {
    var opts = {
      title: title, width: width, height: 180,
      scales: { x: { time: true } },
      series: [{}].concat(series),
      axes: [{}, values ? { size: 84, values: values } : { size: 50 }]
    };
    return new window.uPlot(opts, [[]].concat(series.map(function () { return []; })), target);
  }

  function bytesPerSecond(u, values) {
    return values.map(function (v) {
      if (v == null) { return ""; }
      var units = ["B/s", "KiB/s", "MiB/s", "GiB/s"], i = 0;
      while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
      return v.toFixed(i ? 1 : 0) + " " + units[i];
    });
  }

  function startCharts() {
    var box = document.getElementById("charts");
    if (!box || !window.uPlot) { return; }
    box.textContent = "";
    var width = Math.max(280, Math.min(560, box.clientWidth - 16));
    var percent = document.createElement("div"), net = document.createElement("div");
    percent.className = "chart"; net.className = "chart";
    box.appendChild(percent); box.appendChild(net);
    var usage = chart(percent, "CPU, memory, disk (%)", [
      { label: "CPU %", stroke: "#1f5fbf" }, { label: "Memory %", stroke: "#1a7f37" }, { label: "Disk /", stroke: "#8a5a00" }
    ], width);
    var traffic = chart(net, "Network", [
      { label: "in", stroke: "#6f42c1" }, { label: "out", stroke: "#b3261e" }
    ], width, bytesPerSecond);
    function refresh() {
      fetch(box.getAttribute("data-src"), { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (d) {
          if (!d) { return; }
          usage.setData([d.ts, d.cpu, d.memory, d.disk]);
          traffic.setData([d.ts, d.recv, d.sent]);
          box.setAttribute("data-points", String(d.ts.length));
        })
        .catch(function () { /* the next round tries again */ });
    }
    refresh();
    window.setInterval(refresh, 5000);
  }

  // A container's log: while "Follow" is ticked, its last lines are fetched again every 2 s
  // (an escaped HTML fragment from this service) and the view stays at the end.
  function startFollow() {
    var log = document.getElementById("container-log"), box = document.getElementById("follow");
    if (!log || !box) { return; }
    function refresh() {
      if (!box.checked) { return; }
      fetch(log.getAttribute("data-src"), { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) {
          if (html === null) { return; }
          log.innerHTML = html;
          log.scrollTop = log.scrollHeight;
          log.setAttribute("data-refreshed", String(Date.now()));
        })
        .catch(function () { /* the next round tries again */ });
    }
    box.addEventListener("change", refresh);
    window.setInterval(refresh, 2000);
  }

  function start() { startCharts(); startFollow(); }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); } else { start(); }
})();
