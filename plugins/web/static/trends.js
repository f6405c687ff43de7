// BTMS Gateway dashboard, trends: the history store over a chosen range, drawn
// with uPlot (vendored beside this file: uplot-1.6.32.min.js, MIT, see
// uplot-LICENSE.txt; no CDN). Data: GET /api/strings/{name}/history.
// - the string's voltage, current and SOC (three charts, one cursor);
// - one cell's voltage, resistance or temperature;
// - every cell's resistance against its baseline and against the string median,
//   as two heatmaps (cells down, time across).
// Roll-ups are drawn as the mean with min and max as thin lines; a gap in the
// data (the string was not GOOD) stays a gap.
"use strict";

const Trends = (() => {
  const RANGES = [["1h", "1 h", 3600], ["24h", "24 h", 86400], ["7d", "7 d", 7 * 86400],
    ["90d", "90 d", 90 * 86400], ["10y", "Years", 10 * 365.25 * 86400]];
  const CELL_Q = {
    voltage: { key: "cell_voltage_v", label: "Voltage", unit: "V", digits: 3 },
    resistance: { key: "cell_resistance_mohm", label: "Resistance", unit: "m\u03a9", digits: 3 },
    temperature: { key: "cell_temperature_c", label: "Temperature", unit: "\u00b0C", digits: 1 },
  };
  const STRING_Q = [["voltage_v", "Voltage", "V", "#3a7bd5"], ["current_a", "Current", "A", "#c98a00"],
    ["soc_pct", "SOC", "%", "#1e8e5a"]];
  const T = { string: null, baselines: [], range: "24h", cell: 1, cellQ: "voltage", charts: [],
    timer: null, loading: 0, timings: [] };
  const $ = (sel) => document.querySelector(sel);
  const el = (tag, attrs, ...kids) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v);
    }
    e.append(...kids);
    return e;
  };
  const span = () => RANGES.find((r) => r[0] === T.range)[2];

  async function fetchHistory(params) {
    const to = Date.now() / 1000, q = new URLSearchParams({ from: String(to - span()), to: String(to), ...params });
    const r = await fetch(`/api/strings/${encodeURIComponent(T.string)}/history?${q}`, { credentials: "same-origin" });
    const body = await r.json();
    if (!r.ok) throw new Error(body.error || r.statusText);
    return body;
  }

  // One time axis; a gap (a step over 3x the usual one) gets a null row so the line breaks.
  function withGaps(t, columns) {
    const steps = t.slice(1).map((x, i) => x - t[i]).sort((a, b) => a - b);
    const usual = steps.length ? steps[Math.floor(steps.length / 2)] : 0;
    const xs = [], cols = columns.map(() => []);
    t.forEach((x, i) => {
      if (i && usual && x - t[i - 1] > 3 * usual) {
        xs.push(t[i - 1] + usual); cols.forEach((c) => c.push(null));
      }
      xs.push(x); columns.forEach((c, j) => cols[j].push(c[i]));
    });
    return [xs, ...cols];
  }
  function seriesOf(body, quantity, cell) {
    return body.series.find((s) => s.quantity === quantity && (cell === undefined || s.cell === cell));
  }
  function lines(s) {  // raw: the value; roll-ups: mean, min, max
    if (!s) return [];
    return s.value ? [s.value] : [s.mean, s.min, s.max];
  }
  function chartOpts(title, unit, color, width, height, nLines, range) {
    const series = [{}];
    const names = nLines === 1 ? [title] : [`${title} mean`, "min", "max"];
    names.forEach((n, i) => series.push({ label: n, stroke: color, width: i ? 1 : 2,
      dash: i ? [3, 3] : undefined, alpha: i ? 0.6 : 1, spanGaps: false,
      value: (u, v) => (v === null || v === undefined ? "\u2014" : `${v.toFixed(unit === "V" ? 2 : 1)} ${unit}`) }));
    return { width, height, series, legend: { show: true }, cursor: { sync: { key: "btms-trends" } },
      axes: [{}, { label: unit, size: 60 }], scales: { x: { time: true, range: () => range } } };
  }
  function clearCharts() { T.charts.forEach((c) => c.destroy()); T.charts = []; }
  function draw(box, title, unit, color, body, cols) {
    const t = body.t;
    if (!cols.length || !t.length) { box.replaceChildren(el("div", { class: "empty" }, `No ${title.toLowerCase()} recorded in this range`)); return; }
    box.replaceChildren();
    const width = Math.max(box.clientWidth, 300);
    const opts = chartOpts(title, unit, color, width, 150, cols.length, [body.from, body.to]);
    const u = new uPlot(opts, withGaps(t, cols), box);
    T.charts.push(u);
  }

  function render(stringBody, cellBody, heatBody, arrived) {
    clearCharts();
    const boxes = STRING_Q.map(([q]) => $(`#trend-${q}`));
    STRING_Q.forEach(([q, title, unit, color], i) => draw(boxes[i], title, unit, color, stringBody, lines(seriesOf(stringBody, q))));
    const cq = CELL_Q[T.cellQ];
    draw($("#trend-cell"), `Cell ${T.cell} ${cq.label.toLowerCase()}`, cq.unit, "#8e1b5e", cellBody, lines(seriesOf(cellBody, cq.key, T.cell)));
    heatmaps(heatBody);
    const note = stringBody.resolution === "raw" && !stringBody.step_s ? "raw readings"
      : `${stringBody.resolution} roll-ups, ${fmtStep(stringBody.step_s)} buckets (mean, min, max)`;
    $("#trend-note").textContent = `${note}; history ${stringBody.history.state}${stringBody.history.reason ? `: ${stringBody.history.reason}` : ""}`;
    $("#trend-state").className = `pill ${stringBody.history.state === "recording" ? "pill-ok" : "pill-bad"}`;
    $("#trend-state").textContent = `History ${stringBody.history.state}`;
    requestAnimationFrame(() => {
      T.timings.push(performance.now() - arrived);
      $("#trends").dataset.drawn = String(T.timings.length);
    });
  }
  function fmtStep(s) {
    if (!s) return "";
    if (s < 3600) return `${Math.round(s / 60)} min`;
    if (s < 86400) return `${+(s / 3600).toFixed(1)} h`;
    return `${+(s / 86400).toFixed(1)} d`;
  }

  // Heatmaps: each cell's mean resistance per bucket as % over its baseline, and
  // as % over the median of all cells in the same bucket.
  function heatmaps(body) {
    const cells = body.series.filter((s) => s.quantity === "cell_resistance_mohm");
    const key = cells.length && cells[0].value ? "value" : "mean";
    const t = body.t, n = cells.length;
    const median = t.map((_, i) => {
      const v = cells.map((c) => c[key][i]).filter((x) => x !== null).sort((a, b) => a - b);
      return v.length ? v[Math.floor(v.length / 2)] : null;
    });
    const pct = (v, ref) => (v === null || !ref ? null : (v / ref - 1) * 100);
    const vsBase = cells.map((c) => c[key].map((v) => pct(v, T.baselines[c.cell - 1])));
    const vsMedian = cells.map((c) => c[key].map((v, i) => pct(v, median[i])));
    const frame = { from: body.from, to: body.to, step: body.step_s || 1 };
    paint($("#heat-baseline"), vsBase, cells, t, frame, "over its own baseline");
    paint($("#heat-median"), vsMedian, cells, t, frame, "over the string median");
    const missing = T.baselines.filter((b) => b === null || b === undefined).length;
    $("#heat-note").textContent = !n ? "No resistance recorded in this range"
      : missing ? `${missing} of ${T.baselines.length} cells have no baseline yet (still learning): blank in the left map` : "";
  }
  function color(p) {
    if (p === null || p === undefined) return "#eef1f5";
    if (p < 0) { const k = Math.min(1, -p / 25); return `rgb(${Math.round(235 - 120 * k)},${Math.round(243 - 80 * k)},${Math.round(250 - 20 * k)})`; }
    if (p < 25) { const k = p / 25; return `rgb(${Math.round(235 + 20 * k)},${Math.round(243 - 40 * k)},${Math.round(235 - 130 * k)})`; }
    if (p < 50) { const k = (p - 25) / 25; return `rgb(${Math.round(255 - 20 * k)},${Math.round(203 - 110 * k)},${Math.round(105 - 60 * k)})`; }
    return "#b3261e";
  }
  // columns sit at their time in [from, to): a gap in the data stays blank
  function paint(canvas, grid, cells, t, frame, what) {
    const w = Math.max(canvas.parentElement.clientWidth - 4, 200), rowH = Math.max(2, Math.min(8, Math.floor(360 / Math.max(1, grid.length))));
    const h = Math.max(rowH * grid.length, 20), ctx = canvas.getContext("2d");
    canvas.width = w; canvas.height = h; canvas.style.height = `${h}px`;
    ctx.fillStyle = "#eef1f5"; ctx.fillRect(0, 0, w, h);
    const scale = w / (frame.to - frame.from), colW = Math.max(1, frame.step * scale);
    const x = (ti) => (ti - frame.from) * scale;
    let worst = null;
    grid.forEach((row, r) => row.forEach((p, i) => {
      ctx.fillStyle = color(p); ctx.fillRect(Math.floor(x(t[i])), r * rowH, Math.ceil(colW), rowH);
      if (p !== null && (worst === null || p > worst.p)) worst = { p, cell: cells[r].cell };
    }));
    canvas.onmousemove = (e) => {
      const at = frame.from + e.offsetX / scale, r = Math.floor(e.offsetY / rowH);
      const i = t.findIndex((ti) => ti <= at && at < ti + frame.step), p = grid[r]?.[i];
      if (!cells[r] || i < 0) { canvas.title = ""; return; }
      canvas.title = `cell ${cells[r].cell}, ${new Date(t[i] * 1000).toLocaleString()}: ${p === null || p === undefined ? "no data" : `${p >= 0 ? "+" : ""}${p.toFixed(1)} % ${what}`}`;
    };
    canvas.dataset.worstCell = worst ? String(worst.cell) : "";
    canvas.dataset.worstPct = worst ? worst.p.toFixed(1) : "";
    canvas.dataset.cells = String(grid.length);
  }

  async function load() {
    if (!T.string) return;
    const token = ++T.loading;
    try {
      const common = { max_points: "600" };
      const [sb, cb, hb] = await Promise.all([
        fetchHistory({ ...common, quantities: "voltage_v,current_a,soc_pct" }),
        fetchHistory({ ...common, quantities: CELL_Q[T.cellQ].key, cells: String(T.cell) }),
        fetchHistory({ max_points: "96", quantities: "cell_resistance_mohm", cells: "all" }),
      ]);
      if (token !== T.loading) return;  // a newer request superseded this one
      render(sb, cb, hb, performance.now());
    } catch (err) {
      $("#trend-note").textContent = `History not available: ${err.message}`;
    }
  }

  function controls() {
    $("#trend-ranges").replaceChildren(...RANGES.map(([id, label]) => el("button", {
      class: `tab${id === T.range ? " on" : ""}`, type: "button", "data-range": id,
      onclick: () => { T.range = id; controls(); load(); } }, label)));
    $("#trend-cellq").replaceChildren(...Object.entries(CELL_Q).map(([id, q]) => el("button", {
      class: `tab${id === T.cellQ ? " on" : ""}`, type: "button", "data-cellq": id,
      onclick: () => { T.cellQ = id; controls(); load(); } }, q.label)));
  }

  return {
    // the chosen string (the detail answer: name, cell count, baselines)
    update(st) {
      const changed = st.name !== T.string;
      T.baselines = st.baseline_mohm || [];
      const count = st.reading ? st.reading.cell_count : 0;
      const input = $("#trend-cell-no");
      input.max = String(Math.max(1, count));
      if (changed) {
        T.string = st.name;
        $("#trends-title").textContent = `History of string ${st.name}`;
        load();
        clearInterval(T.timer);
        T.timer = setInterval(() => { if (span() <= 86400) load(); }, 15000);
      }
    },
    init() {
      controls();
      const input = $("#trend-cell-no");
      input.addEventListener("change", () => { T.cell = Math.max(1, parseInt(input.value, 10) || 1); input.value = String(T.cell); load(); });
      window.addEventListener("resize", () => load());
    },
    timings: () => T.timings.slice(),
  };
})();
document.addEventListener("DOMContentLoaded", () => Trends.init());
