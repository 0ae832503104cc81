// The live page: polls /api/live (every 1-5 s) for the chosen window and draws, per
// pair, cards, latency p50/p95 with power on a second axis, a histogram and a scatter.
"use strict";
(function () {
  const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#d97706"];
  const $ = (id) => document.getElementById(id);
  const themeKey = "otel-benchlab-theme";
  const state = { paused: false, window: 60, charts: {}, names: "" };

  function applyTheme(t) {
    document.documentElement.dataset.theme = t;
    document.body.dataset.theme = t;
    $("theme").textContent = t === "dark" ? "Light mode" : "Dark mode";
  }
  applyTheme(localStorage.getItem(themeKey) || "light");
  $("theme").onclick = () => {
    const t = document.documentElement.dataset.theme === "dark" ? "light" : "dark";
    localStorage.setItem(themeKey, t);
    applyTheme(t);
    state.names = "";  // redraw the charts in the new colours
  };
  $("pause").onclick = () => {
    state.paused = !state.paused;
    $("pause").textContent = state.paused ? "Resume" : "Pause";
    document.body.dataset.paused = state.paused ? "yes" : "no";
    if (!state.paused) poll();
  };
  $("window").onchange = () => {
    state.window = Number($("window").value);
    $("csv").href = `/api/live.csv?window=${state.window}`;
    poll();
  };

  const fmt = (v, d) => (v === null || v === undefined ? "—" :
    Number(v).toPrecision(d || 4).replace(/\.?0+$/, (m) => (m.includes(".") ? "" : m)));
  const axis = () => ({ stroke: getComputedStyle(document.body).color,
    grid: { stroke: "rgba(128,128,128,0.15)" } });
  const size = (el) => ({ width: Math.max(320, el.clientWidth - 12), height: 200 });

  function card(k, v, unit, key) {
    return `<div class="card" data-card="${key || k}"><div class="k">${k}</div>` +
      `<div class="v">${fmt(v)}${unit ? " " + unit : ""}</div></div>`;
  }

  function build(pairs) {
    const root = $("pairs");
    root.innerHTML = "";
    state.charts = {};
    pairs.forEach((p, i) => {
      const sec = document.createElement("section");
      sec.innerHTML = `<h2>${p.name}</h2><div class="muted" id="cover-${i}"></div>` +
        `<div class="cards" id="cards-${i}"></div>` +
        `<div class="charts"><div class="chart" id="live-${i}-time"></div>` +
        `<div class="chart" id="live-${i}-hist"></div>` +
        `<div class="chart" id="live-${i}-scatter"></div></div>`;
      root.appendChild(sec);
      const mk = (id, title, opts) => {
        const el = $(id);
        el.insertAdjacentHTML("beforeend", `<div class="title">${title}</div>`);
        Object.assign(opts, size(el));
        opts.axes = opts.axes.map((a) => Object.assign(axis(), a));
        return new uPlot(opts, opts.empty, el);
      };
      state.charts[i] = {
        time: mk(`live-${i}-time`, "Latency p50 / p95 per second, and power", {
          series: [{}, { label: "p50 ms", stroke: COLORS[0], width: 1.5, spanGaps: true },
            { label: "p95 ms", stroke: COLORS[1], width: 1, spanGaps: true },
            { label: "power W", stroke: COLORS[2], scale: "W", spanGaps: true }],
          axes: [{}, { label: "ms" }, { scale: "W", side: 1, label: "W",
            grid: { show: false } }],
          empty: [[], [], [], []] }),
        hist: mk(`live-${i}-hist`, "Latency histogram (window)", {
          scales: { x: { time: false } },
          series: [{}, { label: "frames", stroke: COLORS[0], fill: COLORS[0] + "55",
            paths: uPlot.paths.bars({ size: [0.9, 40] }) }],
          axes: [{ label: "ms" }, { label: "frames" }], empty: [[], []] }),
        scatter: mk(`live-${i}-scatter`, "Latency vs power (window)", {
          scales: { x: { time: false } },
          series: [{}, { label: "latency ms", stroke: COLORS[0], paths: () => null,
            points: { show: true, size: 3, fill: COLORS[0] } }],
          axes: [{ label: "W" }, { label: "ms" }], empty: [[], []] }),
      };
    });
  }

  function draw(d) {
    const names = d.pairs.map((p) => p.name).join("|");
    if (names !== state.names) { build(d.pairs); state.names = names; }
    const st = d.status || {};
    $("session").textContent = st.session || "";
    $("status").innerHTML = (st.sources || []).map((s) =>
      `<div class="card" data-source="${s.name}"><div class="k">${s.name}</div>` +
      `<div class="v ${s.up ? "up" : "down"}">${s.up ? "up" : "down"}</div></div>`).join("") +
      Object.entries(st.losses || {}).map(([k, v]) => card(k, v, "", "loss-" + k)).join("");
    d.pairs.forEach((p, i) => {
      const c = p.cards;
      $(`cards-${i}`).innerHTML = card("now p50", c.now, "ms", "now") +
        card("min", c.min, "ms") + card("max", c.max, "ms") + card("mean", c.mean, "ms") +
        card("p95", c.p95, "ms") + card("p99", c.p99, "ms") + card("frames/s", c.fps, "",
          "fps") + card(`energy/frame ${d.primary || ""}`, c.energy_mj_per_frame, "mJ",
          "energy") + card("frames", c.frames, "", "frames");
      $(`cover-${i}`).textContent = p.ring_full && p.covers_s < d.window_s ?
        `at this rate the page keeps the newest ${fmt(p.covers_s, 3)} s of this pair` : "";
      const ch = state.charts[i];
      const s = p.seconds;
      ch.time.setData([s.t, s.p50, s.p95, s.power]);
      const h = p.histogram;
      ch.hist.setData([h.counts.map((_, j) => (h.edges[j] + h.edges[j + 1]) / 2), h.counts]);
      ch.scatter.setData([p.scatter.x, p.scatter.y]);
    });
    $("updated").textContent = "updated " + new Date(d.now * 1000).toLocaleTimeString();
    document.body.dataset.drawn = "yes";
    document.body.dataset.window = String(d.window_s);
  }

  let timer = null;
  async function poll() {
    clearTimeout(timer);
    if (state.paused) return;
    try {
      const r = await fetch(`/api/live?window=${state.window}`, { cache: "no-store" });
      if (r.ok && !state.paused) draw(await r.json());
    } catch (e) {
      $("updated").textContent = "the agent does not answer";
    }
    // A longer window changes less from second to second and costs the agent more to
    // answer: 1 s up to a minute, 2 s up to 5 minutes, 5 s beyond (< 0.5 % of a core).
    const every = state.window <= 60 ? 1000 : state.window <= 300 ? 2000 : 5000;
    if (!state.paused) timer = setTimeout(poll, every);
  }
  poll();
})();
