// Draws the report's and the comparison's charts from the JSON the page carries
// (id "report-data"); every number in the tables is the page's own HTML.
"use strict";
(function () {
  const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2",
                  "#db2777", "#65a30d"];
  const data = JSON.parse(document.getElementById("report-data").textContent);
  const width = (el) => Math.max(320, el.clientWidth - 12);
  const axisStyle = () => {
    const fg = getComputedStyle(document.body).color;
    return { stroke: fg, grid: { stroke: "rgba(128,128,128,0.15)" },
             ticks: { stroke: "rgba(128,128,128,0.3)" } };
  };

  function chart(id, title, opts, rows) {
    const el = document.getElementById(id);
    if (!el || !rows || !rows[0] || rows[0].length === 0) {
      if (el) el.insertAdjacentHTML("beforeend", "<div class=muted>no data</div>");
      return null;
    }
    const head = document.createElement("div");
    head.className = "title";
    head.textContent = title;
    el.appendChild(head);
    opts.width = width(el);
    opts.height = opts.height || 220;
    opts.axes = (opts.axes || [{}, {}]).map((a) => Object.assign(axisStyle(), a));
    return new uPlot(opts, rows, el);
  }

  const line = (label, color, extra) =>
    Object.assign({ label, stroke: color, width: 1.5, spanGaps: true }, extra || {});
  const band = (label, color) => line(label, color, { width: 1, alpha: 0.35, dash: [4, 3] });
  const timeAxis = { label: "s since start" };

  function minMeanMax(id, title, unit, s) {
    return chart(id, title, {
      scales: { x: { time: false } }, series: [{}, band("min", COLORS[0]),
        line("mean", COLORS[0]), band("max", COLORS[1])],
      axes: [timeAxis, { label: unit }],
    }, s && [s.t, s.min, s.mean, s.max]);
  }

  function pairCharts(prefix, p) {
    const lat = p.latency_time, pw = p.power_time;
    let rows = lat && [lat.t, lat.max, lat.mean];
    const series = [{}, band("latency max (ms)", COLORS[1]), line("latency mean (ms)",
      COLORS[0])];
    const axes = [timeAxis, { label: "ms" }];
    const scales = { x: { time: false } };
    if (lat && pw && pw.t.length) {
      rows = uPlot.join([[lat.t, lat.max, lat.mean], [pw.t, pw.mean]]);
      series.push(line(`power ${p.power_source} (W)`, COLORS[2], { scale: "W" }));
      axes.push({ scale: "W", side: 1, label: "W", grid: { show: false } });
    }
    chart(prefix + "-latency", "Latency over time, with power", { scales, series, axes }, rows);
    const h = p.histogram;
    if (h && h.counts.length) {
      const mids = h.counts.map((_, i) => (h.edges[i] + h.edges[i + 1]) / 2);
      chart(prefix + "-hist", "Latency distribution" + (h.over ? ` (${h.over} above the 99.9th` +
        " percentile not shown)" : ""), {
        scales: { x: { time: false } }, series: [{}, { label: "frames", stroke: COLORS[0],
          fill: COLORS[0] + "55", paths: uPlot.paths.bars({ size: [0.9, 50] }) }],
        axes: [{ label: "ms" }, { label: "frames" }],
      }, [mids, h.counts]);
    }
    chart(prefix + "-cdf", "Latency CDF", {
      scales: { x: { time: false } }, series: [{}, line("share of frames", COLORS[0])],
      axes: [{ label: "ms" }, { label: "share" }],
    }, p.cdf && [p.cdf.x, p.cdf.y]);
    chart(prefix + "-scatter", `Latency vs power (${p.power_source || "no power source"})`, {
      mode: 1, scales: { x: { time: false } }, series: [{}, { label: "latency (ms)",
        stroke: COLORS[0], fill: COLORS[0], paths: () => null, points: { show: true,
          size: 3, fill: COLORS[0] } }],
      axes: [{ label: "W" }, { label: "ms" }],
    }, p.scatter && [p.scatter.x, p.scatter.y]);
    minMeanMax(prefix + "-energy", `Energy per frame (${p.power_source || "-"})`, "mJ",
      p.energy_time);
    minMeanMax(prefix + "-frametime", "Frame times", "ms", p.frame_time);
  }

  function histChart(id, title, h) {
    if (!h || !h.counts.length) return chart(id, title, {}, null);
    const mids = h.counts.map((_, i) => (h.edges[i] + h.edges[i + 1]) / 2);
    return chart(id, title + (h.over ? ` (${h.over} above the 99.9th percentile not shown)`
      : ""), {
      scales: { x: { time: false } }, series: [{}, { label: "frames", stroke: COLORS[0],
        fill: COLORS[0] + "55", paths: uPlot.paths.bars({ size: [0.9, 50] }) }],
      axes: [{ label: "ms" }, { label: "frames" }],
    }, [mids, h.counts]);
  }

  // A stream's own charts (its pair's, thinner), drawn into the element ``id``.
  function streamCharts(id, s, which) {
    const root = document.getElementById(id);
    which.forEach((k) => root.insertAdjacentHTML("beforeend",
      `<div class="chart" id="${id}-${k}"></div>`));
    const name = s.stream;
    const draw = {
      latency: () => minMeanMax(`${id}-latency`, `${name}: latency over time`, "ms",
        s.latency_time),
      hist: () => histChart(`${id}-hist`, `${name}: latency distribution`, s.histogram),
      cdf: () => chart(`${id}-cdf`, `${name}: latency CDF`, {
        scales: { x: { time: false } }, series: [{}, line("share of frames", COLORS[0])],
        axes: [{ label: "ms" }, { label: "share" }] }, s.cdf && [s.cdf.x, s.cdf.y]),
      energy: () => minMeanMax(`${id}-energy`, `${name}: energy per frame ` +
        `(${s.power_source || "-"})`, "mJ", s.energy_time),
      frametime: () => minMeanMax(`${id}-frametime`, `${name}: frame times`, "ms",
        s.frame_time),
    };
    which.forEach((k) => draw[k]());
  }

  document.addEventListener("click", (e) => {
    const b = e.target.closest("button.open");
    if (!b) return;
    const [si, pi] = b.dataset.prefix.slice(1).split("-p").map(Number);
    const j = Number(b.dataset.streamIndex);
    const row = b.closest("tr").nextElementSibling;
    const opening = row.hidden;
    row.hidden = !opening;
    b.setAttribute("aria-expanded", String(opening));
    b.textContent = opening ? "close" : "charts";
    const id = `${b.dataset.prefix}-st${j}`;
    if (opening && !document.getElementById(id).childElementCount) {
      streamCharts(id, data.sessions[si].pairs[pi].streams[j],
        ["latency", "hist", "cdf", "energy", "frametime"]);
    }
  });

  function powerChart(id, sources) {
    const names = Object.keys(sources || {});
    if (!names.length) return chart(id, "Power sources", {}, null);
    const rows = uPlot.join(names.map((n) => [sources[n].t, sources[n].mean]));
    chart(id, "Every power source over time (W, mean per bucket)", {
      scales: { x: { time: false } },
      series: [{}].concat(names.map((n, i) => line(n, COLORS[i % COLORS.length]))),
      axes: [timeAxis, { label: "W" }],
    }, rows);
  }

  function compareCharts(c, k) {
    c.pairs.forEach((p, i) => {
      const b = p.cdf.baseline, c2 = p.cdf.candidate;
      if (b && c2 && b.x.length && c2.x.length) {
        const rows = uPlot.join([[b.x, b.y], [c2.x, c2.y]]);
        chart(`c${k}-${i}-cdf`, "Latency CDF: baseline and candidate", {
          scales: { x: { time: false } }, series: [{}, line("baseline", COLORS[0]),
            line("candidate", COLORS[1])],
          axes: [{ label: "ms" }, { label: "share" }],
        }, rows);
      }
      const m = p.metrics.filter((x) => x.ci_pct);
      const xs = m.map((_, j) => j);
      chart(`c${k}-${i}-changes`, "Change (%) with its interval, per metric", {
        scales: { x: { time: false, range: [-0.5, m.length - 0.5] } },
        series: [{}, { label: "change %", stroke: COLORS[0], fill: COLORS[0] + "66",
          paths: uPlot.paths.bars({ size: [0.5, 40] }) },
          { label: "low", stroke: COLORS[1], paths: () => null, points: { show: true,
            size: 7 } },
          { label: "high", stroke: COLORS[1], paths: () => null, points: { show: true,
            size: 7 } }],
        axes: [{ values: (u, vals) => vals.map((v) => (m[v] ? m[v].metric : "")),
          rotate: -20, size: 60 }, { label: "%" }],
      }, [xs, m.map((x) => x.change_pct), m.map((x) => x.ci_pct[0]),
        m.map((x) => x.ci_pct[1])]);
    });
  }

  if (data.kind === "compare") {
    data.results.forEach(compareCharts);
  } else {
    data.sessions.forEach((s, si) => {
      s.pairs.forEach((p, pi) => {
        pairCharts(`s${si}-p${pi}`, p);
        (p.streams || []).slice(0, 3).forEach((st, j) => {
          const id = `s${si}-p${pi}-w${j}`;
          minMeanMax(`${id}-latency`, `${st.stream}: latency over time`, "ms",
            st.latency_time);
          histChart(`${id}-hist`, `${st.stream}: latency distribution`, st.histogram);
        });
      });
      powerChart(`s${si}-power`, s.power);
    });
  }
  document.body.dataset.drawn = "yes";
})();
