// The live page: polls /api/live for the chosen window and draws, per pair across its
// streams, cards, latency p50/p95 with power on a second axis, a histogram and a scatter,
// then a table of its streams (the worst first) whose rows open that stream's own cards
// and charts, asked for only while open.
"use strict";
(function () {
  const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#d97706"];
  const $ = (id) => document.getElementById(id);
  const themeKey = "otel-benchlab-theme";
  const state = { paused: false, window: 60, charts: {}, names: "", open: {}, polls: 0 };

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
  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;",
    ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
  const axis = () => ({ stroke: getComputedStyle(document.body).color,
    grid: { stroke: "rgba(128,128,128,0.15)" } });
  const size = (el) => ({ width: Math.max(320, el.clientWidth - 12), height: 200 });

  function card(k, v, unit, key) {
    return `<div class="card" data-card="${key || k}"><div class="k">${k}</div>` +
      `<div class="v">${fmt(v)}${unit ? " " + unit : ""}</div></div>`;
  }

  function cards(c, primary) {
    return card("now p50", c.now, "ms", "now") + card("min", c.min, "ms") +
      card("max", c.max, "ms") + card("mean", c.mean, "ms") + card("p95", c.p95, "ms") +
      card("p99", c.p99, "ms") + card("frames/s", c.fps, "", "fps") +
      card(`energy/frame ${primary || ""}`, c.energy_mj_per_frame, "mJ", "energy") +
      card("frames", c.frames, "", "frames");
  }

  // Three charts in the element ``id``: latency and power per second, histogram, scatter.
  function makeCharts(id) {
    const root = $(id);
    root.innerHTML = ["time", "hist", "scatter"].map((k) =>
      `<div class="chart" id="${id}-${k}"></div>`).join("");
    const mk = (cid, title, opts) => {
      const el = $(cid);
      el.insertAdjacentHTML("beforeend", `<div class="title">${title}</div>`);
      Object.assign(opts, size(el));
      opts.axes = opts.axes.map((a) => Object.assign(axis(), a));
      return new uPlot(opts, opts.empty, el);
    };
    return {
      time: mk(`${id}-time`, "Latency p50 / p95 per second, and power", {
        series: [{}, { label: "p50 ms", stroke: COLORS[0], width: 1.5, spanGaps: true },
          { label: "p95 ms", stroke: COLORS[1], width: 1, spanGaps: true },
          { label: "power W", stroke: COLORS[2], scale: "W", spanGaps: true }],
        axes: [{}, { label: "ms" }, { scale: "W", side: 1, label: "W",
          grid: { show: false } }],
        empty: [[], [], [], []] }),
      hist: mk(`${id}-hist`, "Latency histogram (window)", {
        scales: { x: { time: false } },
        series: [{}, { label: "frames", stroke: COLORS[0], fill: COLORS[0] + "55",
          paths: uPlot.paths.bars({ size: [0.9, 40] }) }],
        axes: [{ label: "ms" }, { label: "frames" }], empty: [[], []] }),
      scatter: mk(`${id}-scatter`, "Latency vs power (window)", {
        scales: { x: { time: false } },
        series: [{}, { label: "latency ms", stroke: COLORS[0], paths: () => null,
          points: { show: true, size: 3, fill: COLORS[0] } }],
        axes: [{ label: "W" }, { label: "ms" }], empty: [[], []] }),
    };
  }

  function setCharts(ch, p) {
    const s = p.seconds;
    ch.time.setData([s.t, s.p50, s.p95, s.power]);
    const h = p.histogram;
    ch.hist.setData([h.counts.map((_, j) => (h.edges[j] + h.edges[j + 1]) / 2), h.counts]);
    ch.scatter.setData([p.scatter.x, p.scatter.y]);
  }

  function build(pairs) {
    const root = $("pairs");
    root.innerHTML = "";
    state.charts = {};
    state.open = {};
    pairs.forEach((p, i) => {
      const sec = document.createElement("section");
      sec.innerHTML = `<h2>${esc(p.name)} <span class="muted" id="count-${i}"></span></h2>` +
        `<div class="muted" id="cover-${i}"></div><div class="cards" id="cards-${i}"></div>` +
        `<div class="charts" id="live-${i}"></div>` +
        `<h3>Streams, the slowest first</h3><div class="scroll" tabindex="0" ` +
        `aria-label="streams of ${esc(p.name)}"><table class="streams" id="streams-${i}">` +
        `</table></div>`;
      root.appendChild(sec);
      state.charts[i] = makeCharts(`live-${i}`);
    });
  }

  function sparkline(values) {
    const v = values.map((x) => (x === null ? NaN : x));
    const ok = v.filter((x) => !Number.isNaN(x));
    if (!ok.length) return "";
    const lo = Math.min(...ok), hi = Math.max(...ok), span = hi - lo || 1;
    const pts = v.map((x, j) => Number.isNaN(x) ? null :
      `${(j * 60 / Math.max(1, v.length - 1)).toFixed(1)},${(14 - (x - lo) / span * 12).toFixed(1)}`)
      .filter((x) => x).join(" ");
    return `<svg width="60" height="16" role="img" aria-label="trend"><polyline points="${pts}" ` +
      `fill="none" stroke="currentColor" stroke-width="1.2"/></svg>`;
  }

  function streamsTable(i, p, primary) {
    const head = "<tr><th>stream</th><th>p50 ms</th><th>p95 ms</th><th>frames/s</th>" +
      `<th>mJ/frame ${esc(primary || "")}</th><th>frames</th><th>trend</th><th></th></tr>`;
    const rows = p.streams.map((s) => {
      const key = `${i}|${s.stream}`;
      const open = state.open[key];
      return `<tr data-stream="${esc(s.stream)}"><td>${esc(s.stream)}</td>` +
        `<td>${fmt(s.p50)}</td><td>${fmt(s.p95)}</td><td>${fmt(s.fps)}</td>` +
        `<td>${fmt(s.energy_mj_per_frame)}</td><td>${s.frames}</td>` +
        `<td>${sparkline(s.trend || [])}</td><td><button class="open" data-pair="${i}" ` +
        `data-stream="${esc(s.stream)}" aria-expanded="${open ? "true" : "false"}">` +
        `${open ? "close" : "charts"}</button></td></tr>` +
        (open ? `<tr class="detail"><td colspan="8"><div class="cards" ` +
          `id="scards-${open.id}"></div><div class="charts" id="${open.id}"></div></td></tr>`
          : "");
    }).join("");
    // The open streams' charts survive their table being written again.
    const mine = Object.values(state.open).filter((o) => o.pair === i);
    const saved = {};
    mine.forEach((o) => { const el = $(o.id); if (el) saved[o.id] = el; });
    $(`streams-${i}`).innerHTML = head + rows;
    mine.forEach((o) => {
      const slot = $(o.id);
      if (!slot) return;
      if (saved[o.id]) slot.replaceWith(saved[o.id]);
      else o.charts = makeCharts(o.id);
    });
  }

  $("pairs").addEventListener("click", (e) => {
    const b = e.target.closest("button.open");
    if (!b) return;
    const i = Number(b.dataset.pair), stream = b.dataset.stream, key = `${i}|${stream}`;
    if (state.open[key]) delete state.open[key];
    else state.open[key] = { id: `stream-${i}-${Object.keys(state.open).length}-` +
      stream.replace(/[^A-Za-z0-9_-]/g, "_"), pair: i, stream: stream };
    poll();
  });

  async function drawStreams(d) {
    await Promise.all(Object.values(state.open).map(async (o) => {
      const p = d.pairs[o.pair];
      if (!p) return;
      const q = new URLSearchParams({ window: state.window, pipeline: p.pipeline,
        stream: o.stream, from: p.from, to: p.to });
      const r = await fetch(`/api/live?${q}`, { cache: "no-store" });
      const s = r.ok ? (await r.json()).stream : null;
      if (!s || !o.charts) return;
      $(`scards-${o.id}`).innerHTML = cards(s.cards, d.primary);
      setCharts(o.charts, s);
    }));
  }

  // An LLM model's requests: rates, latencies and joules per request and per token.
  function llmCards(m, primary) {
    const src = primary ? ` ${esc(primary)}` : "";
    return card("requests/s", m.requests_per_s, "", "requests_per_s") +
      card("output tokens/s", m.output_tokens_per_s, "", "output_tokens_per_s") +
      card("TTFT p50", m.ttft_ms.p50, "ms", "ttft_p50") +
      card("TTFT p95", m.ttft_ms.p95, "ms", "ttft_p95") +
      card("TPOT p50", m.tpot_ms.p50, "ms", "tpot_p50") +
      card("TPOT p95", m.tpot_ms.p95, "ms", "tpot_p95") +
      card(`J/request${src}`, m.energy_j_per_request, "J", "j_per_request") +
      card(`J/output token${src}`, m.energy_j_per_output_token, "J", "j_per_token") +
      card(`machine J/output token${src}`, m.machine_energy_j_per_output_token, "J",
        "machine_j_per_token") +
      card("requests", m.requests, "", "requests");
  }

  function drawModels(d) {
    $("llm").innerHTML = (d.llm || []).map((m) =>
      `<section data-model="${esc(m.model)}"><h2>${esc(m.model)} ` +
      `<span class="muted">LLM requests</span></h2>` +
      `<div class="cards">${llmCards(m, d.primary)}</div></section>`).join("");
  }

  function draw(d) {
    drawModels(d);
    const names = d.pairs.map((p) => p.name).join("|");
    if (names !== state.names) { build(d.pairs); state.names = names; }
    const st = d.status || {};
    $("session").textContent = st.session || "";
    $("status").innerHTML = (st.sources || []).map((s) =>
      `<div class="card" data-source="${s.name}"><div class="k">${s.name}</div>` +
      `<div class="v ${s.up ? "up" : "down"}">${s.up ? "up" : "down"}</div></div>`).join("") +
      Object.entries(st.losses || {}).map(([k, v]) => card(k, v, "", "loss-" + k)).join("");
    d.pairs.forEach((p, i) => {
      $(`cards-${i}`).innerHTML = cards(p.cards, d.primary);
      $(`count-${i}`).textContent = p.streams.length > 1 ?
        `· ${p.streams.length} streams` : "";
      $(`cover-${i}`).textContent = p.ring_full && p.covers_s < d.window_s ?
        `at this rate the page keeps the newest ${fmt(p.covers_s, 3)} s of this pair` : "";
      setCharts(state.charts[i], p);
      streamsTable(i, p, d.primary);
    });
    $("updated").textContent = "updated " + new Date(d.now * 1000).toLocaleTimeString();
    document.body.dataset.drawn = "yes";
    document.body.dataset.window = String(d.window_s);
    return drawStreams(d);
  }

  let timer = null;
  async function poll() {
    clearTimeout(timer);
    if (state.paused) return;
    let streams = 0;
    try {
      const r = await fetch(`/api/live?window=${state.window}`, { cache: "no-store" });
      if (r.ok && !state.paused) {
        const d = await r.json();
        streams = d.pairs.reduce((n, p) => n + p.streams.length, 0);
        await draw(d);
        state.polls += 1;
        document.body.dataset.polls = String(state.polls);
      }
    } catch (e) {
      $("updated").textContent = "the agent does not answer";
    }
    // A longer window, or many streams, changes less from second to second and costs
    // the agent more to answer: 1 s up to a minute, 2 s up to 5 minutes or past 16
    // streams, 5 s beyond (< 1 % of a core).
    const every = state.window > 300 ? 5000 : state.window > 60 || streams > 16 ? 2000 : 1000;
    if (!state.paused) timer = setTimeout(poll, every);
  }
  poll();
})();
