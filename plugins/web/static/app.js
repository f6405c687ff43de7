// BTMS Gateway dashboard: hand-written, no framework, no build step, no CDN.
// Data: REST (/api/...) for first paint, server-sent events (/api/stream) for
// live updates. Every value is put into the page as text (never as HTML).
"use strict";

const $ = (sel) => document.querySelector(sel);
const SVG = "http://www.w3.org/2000/svg";
const METRICS = {
  voltage: { label: "Voltage", unit: "V", key: "voltage_v", digits: 3 },
  resistance: { label: "Resistance vs baseline", unit: "%", key: "resistance_mohm", digits: 1 },
  temperature: { label: "Temperature", unit: "\u00b0C", key: "temperature_c", digits: 1 },
  soc: { label: "SOC", unit: "%", key: "soc_pct", digits: 0 },
  soh: { label: "SOH", unit: "%", key: "soh_pct", digits: 0 },
};
const STATE_NAMES = {
  float_charge: "Float charge", equalize_charge: "Equalize charge", discharge: "Discharge",
  idle: "Idle", abnormal: "Abnormal", unknown: "Unknown",
};
const S = { plant: null, string: null, sel: null, metric: "voltage", alarms: [], events: new Map(),
  session: { user: null, csrf: null, csrf_header: "X-CSRF-Token", login_possible: false },
  es: null, pendingAck: null };

function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (v !== null && v !== undefined && v !== false) el.setAttribute(k, v);
  }
  for (const kid of kids.flat()) if (kid !== null && kid !== undefined) el.append(kid);
  return el;
}
function s(tag, attrs, ...kids) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  for (const kid of kids) el.append(kid);
  return el;
}
const fmt = (v, d = 2) => (v === null || v === undefined ? "\u2014" : Number(v).toFixed(d));
const time = (t) => new Date(t * 1000).toLocaleTimeString([], { hour12: false });
const dateTime = (t) => new Date(t * 1000).toLocaleString([], { hour12: false });
function ago(sec) {
  if (sec === null || sec === undefined) return "never read";
  if (sec < 60) return `${sec.toFixed(0)} s ago`;
  if (sec < 3600) return `${(sec / 60).toFixed(0)} min ago`;
  return `${(sec / 3600).toFixed(1)} h ago`;
}
async function api(path, opts = {}) {
  const r = await fetch(path, { credentials: "same-origin", ...opts });
  const body = r.headers.get("content-type")?.includes("json") ? await r.json() : null;
  if (!r.ok) throw Object.assign(new Error(body?.error || r.statusText), { status: r.status });
  return body;
}

// ---------- plant tree ----------
function alarmStrings() {
  return new Set(S.alarms.map((a) => a.path.string).filter(Boolean));
}
function stringRow(st, hot) {
  const r = st.reading;
  const cls = `srow${st.name === S.sel ? " sel" : ""}${hot.has(st.name) ? " has-alarm" : ""}`;
  return h("div", { class: cls, "data-string": st.name, onclick: () => select(st.name) },
    h("span", { class: `dot q-${st.quality}`, title: st.quality }),
    h("div", {}, h("div", { class: "nm" }, st.name),
      h("div", { class: "st" }, r ? STATE_NAMES[r.state] || r.state : st.quality)),
    h("div", { class: "vals" }, r ? `${fmt(r.voltage_v, 1)} V  ${fmt(r.current_a, 1)} A` : "\u2014",
      h("br"), r ? `SOC ${fmt(r.soc_pct, 0)} %` : ""));
}
function renderTree() {
  const p = S.plant, hot = alarmStrings(), tree = $("#tree");
  const byName = Object.fromEntries(p.strings.map((x) => [x.name, x]));
  const groups = p.ups.map((u) => ({ u, members: u.strings.map((n) => byName[n]).filter(Boolean) }));
  const loose = p.strings.filter((x) => !x.ups);
  if (loose.length) groups.push({ u: null, members: loose });
  tree.replaceChildren(...groups.map(({ u, members }) => h("div", { class: "ups" },
    h("div", { class: "ups-head" },
      h("span", { class: "ups-name" }, h("span", { class: `dot q-${u ? u.quality : "good"}` }), " ", u ? u.name : "No UPS"),
      h("span", { class: "ups-vals" }, u && u.voltage_v !== null
        ? `${fmt(u.voltage_v, 1)} V \u00b7 ${fmt(u.current_a, 1)} A \u00b7 ${fmt(u.soc_pct, 0)} %` : "")),
    members.map((st) => stringRow(st, hot)))));
  $("#gw-name").textContent = p.gateway.name;
  $("#gw-version").textContent = `v${p.gateway.version}`;
  $("#uptime").textContent = `up ${ago(p.gateway.uptime_s).replace(" ago", "")}`;
}

// ---------- string detail ----------
function kpi(k, v, u) {
  return h("div", { class: "kpi" }, h("div", { class: "k" }, k), h("div", { class: "v" }, v, h("span", { class: "u" }, u)));
}
function renderDetail() {
  const st = S.string;
  if (!st) return;
  const r = st.reading;
  $("#s-title").textContent = `String ${st.name}`;
  $("#s-sub").textContent = `${st.ups ? `UPS ${st.ups} \u00b7 ` : ""}bus ${st.bus} \u00b7 slave ${st.slave_id} \u00b7 read ${ago(st.age_s)}`;
  const badges = [h("span", { class: `badge b-${st.quality}` }, st.quality)];
  if (r) badges.push(h("span", { class: "badge b-state" }, STATE_NAMES[r.state] || r.state));
  if (r && r.alarm_bits.length) badges.push(h("span", { class: "badge b-err" }, r.alarm_bits.join(", ").replaceAll("_", " ")));
  $("#s-badges").replaceChildren(...badges);
  const banner = $("#s-banner");
  banner.hidden = st.quality === "good";
  banner.textContent = st.quality === "good" ? "" : r
    ? `Values are not current: last read ${dateTime(r.read_at)} (${ago(st.age_s)}).`
    : "This string has never been read.";
  $(".detail-panel").classList.toggle("stale", st.quality !== "good");
  $("#kpis").replaceChildren(
    kpi("Voltage", fmt(r?.voltage_v, 2), "V"), kpi("Current", fmt(r?.current_a, 2), "A"),
    kpi("SOC", fmt(r?.soc_pct, 0), "%"), kpi("SOH (min cell)", fmt(r?.soh_pct, 0), "%"),
    kpi("Balance", fmt(r?.balance_pct, 1), "%"), kpi("Cells", r ? String(r.cell_count) : "\u2014", ""),
    kpi("Ambient", fmt(r?.ambient_temperature_c, 1), "\u00b0C"), kpi("Humidity", fmt(r?.ambient_humidity_pct, 0), "%RH"),
    ...dischargeKpis(st.derived || {}));
  renderTabs();
  renderChart();
  if (typeof Trends !== "undefined") Trends.update(st);  // the history panel (trends.js)
}
// ---------- battery health (discharges, resistance, reports) ----------
function dischargeKpis(d) {
  if (d.discharging !== 1) return [];
  const left = d.runtime_remaining_s;
  return [
    kpi("Runtime left", left === null || left === undefined ? "\u2014" : (left / 60).toFixed(0), "min"),
    kpi("Depth of discharge", fmt(d.dod_pct, 0), "%"),
    kpi("Discharged", fmt(d.discharge_ah, 1), "Ah"),
  ];
}
function reportLinks(kind, subject) {
  const base = `/api/reports/${kind}/${encodeURIComponent(subject)}`;
  return [h("a", { href: `${base}?format=pdf`, download: "" }, "PDF"), " ",
    h("a", { href: `${base}?format=html`, download: "" }, "HTML")];
}
async function loadHealth() {
  const name = S.sel;
  if (!name) return;
  $("#health-reports").replaceChildren(h("span", { class: "muted" }, "Health report: "), ...reportLinks("health", name));
  try {
    const [d, res] = await Promise.all([
      api(`/api/discharges?string=${encodeURIComponent(name)}&limit=10`),
      api(`/api/strings/${encodeURIComponent(name)}/resistance`)]);
    if (name !== S.sel) return;
    renderDischarges(d.discharges); renderResistance(res);
    $("#health-note").textContent = "";
  } catch (err) { $("#health-note").textContent = `Battery health unavailable: ${err.message}`; }
}
function renderDischarges(list) {
  $("#discharges tbody").replaceChildren(...list.map((e) => h("tr", {},
    h("td", {}, dateTime(e.start)), h("td", { class: "num" }, fmt(e.duration_s / 60, 1)),
    h("td", { class: "num" }, fmt(e.ah, 2)), h("td", { class: "num" }, fmt(e.lowest_voltage_v, 2)),
    h("td", {}, e.weakest.slice(0, 5).join(", ")), h("td", {}, ...reportLinks("discharge", String(e.id))))));
  $("#discharges-empty").hidden = list.length > 0;
}
function renderResistance(res) {
  const shown = res.cells.filter((c) => c.status === "warning" || c.status === "alarm");
  $("#resistance tbody").replaceChildren(...shown.map((c) => h("tr", { class: `sev-${c.status === "alarm" ? "alarm" : "warning"}` },
    h("td", {}, String(c.cell)), h("td", { class: "num" }, fmt(c.mohm, 3)), h("td", { class: "num" }, fmt(c.baseline_mohm, 3)),
    h("td", { class: "num" }, c.vs_baseline_pct === null ? "\u2014" : `${fmt(c.vs_baseline_pct, 1)} %`),
    h("td", { class: "num" }, c.vs_median_pct === null ? "\u2014" : `${fmt(c.vs_median_pct, 1)} %`),
    h("td", { class: "num" }, fmt(c.trend_mohm_per_month, 4)), h("td", {}, c.status),
    h("td", {}, h("button", { class: "btn btn-ghost", type: "button", title: "After replacing this cell",
      onclick: () => retake(c.cell) }, "Re-take baseline")))));
  $("#resistance-empty").hidden = shown.length > 0;
}
async function retake(cell) {
  if (!S.session.user) { openLogin(); return; }
  const what = cell ? `cell ${cell} of ${S.sel}` : `every cell of ${S.sel}`;
  if (!confirm(`Re-take the resistance baseline of ${what} from the current reading (after a replacement)?`)) return;
  try {
    const r = await api(`/api/strings/${encodeURIComponent(S.sel)}/baseline`, {
      method: "POST", headers: { [S.session.csrf_header]: S.session.csrf, "Content-Type": "application/json" },
      body: JSON.stringify(cell ? { cell } : {}) });
    $("#retake-msg").textContent = r.message; loadHealth();
  } catch (err) { $("#retake-msg").textContent = `Not re-taken: ${err.message}`; }
}

function renderTabs() {
  $("#tabs").replaceChildren(...Object.entries(METRICS).map(([id, m]) => h("button", {
    class: `tab${id === S.metric ? " on" : ""}`, role: "tab", type: "button", "data-metric": id,
    onclick: () => { S.metric = id; saveHash(); renderTabs(); renderChart(); },
  }, m.label)));
}

// Values, limits and the domain of the chart for the chosen quantity. Limits
// come from the gateway's alarm settings (what would raise an alarm).
function series(st, metric) {
  const cells = st.reading?.cells || [], lim = st.limits || {}, m = METRICS[metric];
  let values, lines = [], note = "", zero = false;
  if (metric === "resistance") {
    const base = st.baseline_mohm || [];
    const known = cells.map((c) => c.resistance_mohm).filter((v) => v !== null).sort((a, b) => a - b);
    const median = known.length ? known[Math.floor(known.length / 2)] : null;
    const missing = base.filter((b) => b === null || b === undefined).length;
    values = cells.map((c, i) => {
      const ref = base[i] ?? median;
      return c.resistance_mohm === null || !ref ? null : (c.resistance_mohm / ref - 1) * 100;
    });
    note = missing ? `${missing} of ${cells.length} cells without baseline: compared with the string median (${fmt(median, 3)} m\u03a9)` : "Rise over each cell's own baseline (IEEE 1188)";
    const b = lim.resistance_pct || {};
    if (b.low !== undefined) lines.push({ v: b.low, cls: "warn", t: `warning +${b.low} %` });
    if (b.high !== undefined) lines.push({ v: b.high, cls: "bad", t: `alarm +${b.high} %` });
    lines.push({ v: 0, cls: "base", t: "baseline" });
    zero = true;
  } else {
    values = cells.map((c) => c[m.key]);
    const b = lim[m.key] || {};
    if (b.low !== undefined) lines.push({ v: b.low, cls: "bad", t: `low ${fmt(b.low, m.digits)} ${m.unit}` });
    if (b.high !== undefined) lines.push({ v: b.high, cls: "bad", t: `high ${fmt(b.high, m.digits)} ${m.unit}` });
    zero = metric === "soc" || metric === "soh";
    const src = Object.entries(b).filter(([k]) => k.endsWith("_source")).map(([, v]) => v);
    note = src.includes("alarm") ? "Limits from the alarm settings" : "Display bands (alarm rules not active)";
  }
  const state = values.map((v) => {
    if (v === null || v === undefined) return "none";
    if (metric === "resistance") {
      const b = lim.resistance_pct || {};
      return v > (b.high ?? Infinity) ? "bad" : v > (b.low ?? Infinity) ? "warn" : "ok";
    }
    const b = lim[m.key] || {};
    return v > (b.high ?? Infinity) || v < (b.low ?? -Infinity) ? "bad" : "ok";
  });
  const known = values.filter((v) => v !== null && v !== undefined);
  let lo = Math.min(...known, ...lines.map((l) => l.v)), hi = Math.max(...known, ...lines.map((l) => l.v));
  if (!isFinite(lo)) { lo = 0; hi = 1; }
  if (zero) { lo = Math.min(0, lo); }
  if (metric === "soc" || metric === "soh") { hi = Math.max(hi, 100); }
  const pad = (hi - lo) * 0.08 || Math.abs(hi) * 0.05 || 1;
  return { values, state, lines, note, lo: zero && lo >= 0 ? 0 : lo - pad, hi: hi + pad, zero, cells };
}
function niceTicks(lo, hi, n = 5) {
  const step0 = (hi - lo) / n, mag = 10 ** Math.floor(Math.log10(step0));
  const step = [1, 2, 2.5, 5, 10].map((f) => f * mag).find((x) => x >= step0) || step0;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9; v += step) out.push(+v.toFixed(10));
  return out;
}
function renderChart() {
  const st = S.string, box = $("#chart");
  if (!st || !st.reading) {
    box.replaceChildren(h("div", { class: "empty" }, "No cell data"));
    $("#chart-legend").replaceChildren(); $("#chart-note").textContent = "";
    return;
  }
  const m = METRICS[S.metric], d = series(st, S.metric);
  const W = Math.max(box.clientWidth, 300), H = box.clientHeight || 280;
  const L = 52, R = 112, T = 10, B = 26, pw = W - L - R, ph = H - T - B, n = d.values.length;
  const y = (v) => T + ph - ((v - d.lo) / (d.hi - d.lo)) * ph;
  const slot = pw / Math.max(n, 1), bw = Math.max(1, slot * 0.72);
  const base = y(d.zero ? Math.max(d.lo, 0) : d.lo);
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": `${m.label} per cell` });
  const grid = s("g", { class: "grid" }), axis = s("g", { class: "axis" });
  for (const t of niceTicks(d.lo, d.hi)) {
    grid.append(s("line", { x1: L, x2: L + pw, y1: y(t), y2: y(t) }));
    axis.append(s("text", { x: L - 6, y: y(t) + 4, "text-anchor": "end" }, document.createTextNode(fmt(t, Math.max(0, m.digits - 1)))));
  }
  axis.append(s("text", { x: 4, y: T + 10 }, document.createTextNode(m.unit)));
  svg.append(grid, axis);
  const every = n <= 30 ? 1 : n <= 60 ? 5 : 10, bars = s("g", {});
  d.values.forEach((v, i) => {
    const cell = d.cells[i], x = L + i * slot + (slot - bw) / 2, cls = d.state[i];
    const top = v === null || v === undefined ? T : y(v);  // no data: a pale full-height bar
    const rect = s("rect", { class: `bar ${cls}`, x: x.toFixed(1), y: Math.min(top, base).toFixed(1), width: bw.toFixed(1),
      height: Math.max(1, Math.abs(base - top)).toFixed(1), "data-cell": cell.index, "data-state": cls, "data-value": v ?? "", rx: Math.min(2, bw / 3) });
    rect.addEventListener("mousemove", (e) => tip(e, cellTip(cell, v, m, st, i)));
    rect.addEventListener("mouseleave", () => { $("#tip").hidden = true; });
    bars.append(rect);
    if ((i + 1) % every === 0 || i === 0 || cls === "bad") {
      axis.append(s("text", { class: `xl${cls === "bad" ? " bad" : ""}`, x: (x + bw / 2).toFixed(1), y: H - 8, "text-anchor": "middle" }, document.createTextNode(String(cell.index))));
    }
  });
  svg.append(bars);
  for (const l of d.lines) {
    if (l.v < d.lo || l.v > d.hi) continue;
    svg.append(s("line", { class: `lim ${l.cls}`, x1: L, x2: L + pw, y1: y(l.v), y2: y(l.v) }));
    svg.append(s("text", { class: `limtxt ${l.cls}`, x: L + pw + 6, y: y(l.v) + 4 }, document.createTextNode(l.t)));
  }
  box.replaceChildren(svg);
  const out = d.state.filter((x) => x === "bad").length, warn = d.state.filter((x) => x === "warn").length;
  const outCells = d.cells.filter((c, i) => d.state[i] === "bad").map((c) => c.index);
  $("#chart-note").textContent = d.note;
  $("#chart-legend").replaceChildren(...[
    h("span", {}, h("span", { class: "sw sw-ok" }), "within limits"),
    S.metric === "resistance" ? h("span", {}, h("span", { class: "sw sw-warn" }), "warning") : null,
    h("span", {}, h("span", { class: "sw sw-bad" }), "out of limits"),
    h("span", {}, h("span", { class: "sw sw-none" }), "no data"),
    h("span", { class: out ? "out" : "", id: "out-count" },
      out ? `${out} cell${out > 1 ? "s" : ""} out of limits: ${outCells.slice(0, 12).join(", ")}${outCells.length > 12 ? " \u2026" : ""}` : "all cells within limits"),
    warn ? h("span", {}, `${warn} warning`) : null].filter(Boolean));
}
function cellTip(cell, v, m, st, i) {
  const lines = [`Cell ${cell.index}`, `Voltage ${fmt(cell.voltage_v, 3)} V`,
    `Resistance ${fmt(cell.resistance_mohm, 3)} m\u03a9 (baseline ${fmt(st.baseline_mohm?.[i], 3)})`,
    `Temperature ${fmt(cell.temperature_c, 1)} \u00b0C`, `SOC ${fmt(cell.soc_pct, 0)} %  SOH ${fmt(cell.soh_pct, 0)} %`];
  if (cell.status & 1) lines.push("SENSOR LOST");
  if (cell.status & 2) lines.push("balancing");
  return lines.join("\n");
}
function tip(e, text) {
  const t = $("#tip");
  t.textContent = text; t.hidden = false;
  t.style.left = `${e.clientX + 14}px`; t.style.top = `${e.clientY + 10}px`;
}

// ---------- alarms, events, communication ----------
function renderAlarms() {
  const rows = S.alarms.map((a) => h("tr", { "data-alarm": a.alarm_id },
    h("td", {}, h("span", { class: `sev sev-${a.severity}` }, a.severity)),
    h("td", {}, where(a.path)),
    h("td", {}, a.message),
    h("td", { title: dateTime(a.raised_at) }, time(a.raised_at)),
    h("td", {}, a.acknowledged ? h("span", { class: "acked" }, `ack: ${a.acknowledged_by}`)
      : h("button", { class: "btn btn-small ack", type: "button", onclick: () => acknowledge(a.alarm_id) }, "Acknowledge"))));
  $("#alarms tbody").replaceChildren(...rows);
  $("#alarms-empty").hidden = rows.length > 0;
  const open = S.alarms.filter((a) => !a.acknowledged).length;
  const c = $("#alarm-count");
  c.textContent = String(S.alarms.length); c.classList.toggle("hot", open > 0);
  const sum = $("#alarm-summary");
  sum.textContent = S.alarms.length ? `${S.alarms.length} active alarm${S.alarms.length > 1 ? "s" : ""}${open ? ` (${open} unacknowledged)` : ""}` : "No active alarms";
  sum.className = `pill ${open ? "pill-bad" : S.alarms.length ? "pill-wait" : "pill-ok"}`;
}
function where(p) {
  if (p.cell !== null) return `${p.string} \u00b7 cell ${p.cell}`;
  if (p.string) return `String ${p.string}`;
  return p.ups ? `UPS ${p.ups}` : "Gateway";
}
// events delivered while the event log could not be written all have seq 0
function eventKey(e) { return e.persisted === false ? `u:${e.at}:${e.alarm_id}:${e.kind}` : e.seq; }
function renderEvents() {
  const evs = [...S.events.values()].sort((a, b) => b.at - a.at || b.seq - a.seq).slice(0, 60);
  $("#events tbody").replaceChildren(...evs.map((e) => h("tr", {},
    h("td", { title: dateTime(e.at) }, time(e.at)),
    h("td", {}, h("span", { class: `kind-${e.kind}` }, e.kind), " ", h("span", { class: `sev sev-${e.severity}` }, e.severity)),
    h("td", {}, e.message, e.persisted === false ? " (not yet in the event log)" : ""))));
  $("#events-empty").hidden = evs.length > 0;
}
function renderComm(buses) {
  const cell = (v) => h("td", { class: "num" }, String(v));
  // failed polls, with their causes in the tooltip ("port 12, timeout 3")
  const failedCell = (c) => {
    const by = Object.entries(c.polls_failed_by_cause || {}).filter(([, n]) => n > 0);
    const title = by.map(([k, n]) => `${k.replace("_", " ")} ${n}`).join(", ");
    return h("td", { class: "num", title: title || null }, String(c.polls_failed));
  };
  const rows = [];
  for (const b of buses || []) {
    const c = b.counters, e = c.errors;
    const other = (e.short_frame || 0) + (e.port || 0) + (e.decode || 0) + (e.late_reply || 0);
    rows.push(h("tr", { class: "busrow" }, h("td", {}, `Bus ${b.name}`), h("td", {}, b.port_open ? "open" : h("span", { class: "bad-txt" }, "closed")),
      cell(c.requests), cell(c.responses), cell(e.timeout), cell(e.crc), cell(e.exception), cell(other), failedCell(c),
      h("td", { class: "num" }, b.last_cycle_s === null ? "\u2014" : `${(b.last_cycle_s * 1000).toFixed(0)} ms`),
      h("td", {}, c.last_error || "")));
    for (const [name, sc] of Object.entries(b.strings)) {
      const se = sc.errors;
      rows.push(h("tr", { class: "sub" }, h("td", {}, name), h("td", {}, ""), cell(sc.requests), cell(sc.responses), cell(se.timeout),
        cell(se.crc), cell(se.exception), cell((se.short_frame || 0) + (se.port || 0) + (se.decode || 0) + (se.late_reply || 0)), failedCell(sc),
        h("td", { class: "num" }, sc.last_poll_s === null ? "\u2014" : `${(sc.last_poll_s * 1000).toFixed(0)} ms`),
        h("td", {}, sc.last_error || "")));
    }
  }
  $("#comm tbody").replaceChildren(...rows);
}
function mergeEvents(list) {
  for (const e of list) S.events.set(eventKey(e), e);
  renderEvents();
}

// ---------- actions ----------
async function acknowledge(id) {
  if (!S.session.user) { S.pendingAck = id; openLogin(); return; }
  try {
    await api(`/api/alarms/${encodeURIComponent(id)}/acknowledge`, {
      method: "POST", headers: { [S.session.csrf_header]: S.session.csrf } });
  } catch (err) {
    if (err.status === 401) { S.session.user = null; S.pendingAck = id; openLogin(); } else alert(`Acknowledge failed: ${err.message}`);
  }
}
function openLogin() {
  if (!S.session.login_possible) { alert("No users are configured: this dashboard is read-only."); return; }
  $("#login-err").textContent = ""; $("#login-dlg").showModal(); $("#login-user").focus();
}
async function login(ev) {
  ev.preventDefault();
  try {
    const r = await api("/api/login", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ user: $("#login-user").value, password: $("#login-pass").value }) });
    S.session.user = r.user; S.session.csrf = r.csrf; $("#login-pass").value = "";
    $("#login-dlg").close(); renderUser();
    if (S.pendingAck) { const id = S.pendingAck; S.pendingAck = null; acknowledge(id); }
  } catch (err) { $("#login-err").textContent = err.message; }
}
async function logout() {
  await api("/api/logout", { method: "POST" });
  S.session.user = null; S.session.csrf = null; renderUser();
}
function renderUser() {
  $("#user").textContent = S.session.user ? `Logged in as ${S.session.user}` : "";
  const b = $("#login-btn");
  b.textContent = S.session.user ? "Log out" : "Log in";
  b.hidden = !S.session.login_possible && !S.session.user;
}

// ---------- live data ----------
// The URL keeps the view (#STRING/METRIC). Choosing a string is a history
// entry (Back returns to the previous string); a changed or followed hash in
// an open tab is obeyed like a click; the first string picked by default and
// a metric tab only replace the entry.
function select(name, push = true) {
  if (name === S.sel) return;
  S.sel = name; saveHash(push);
  if (S.plant) renderTree();
  api(`/api/strings/${encodeURIComponent(name)}`).then((st) => {
    if (st.name === S.sel) { S.string = st; renderDetail(); loadHealth(); }
  }).catch(() => { S.sel = null; S.string = null; connect(); });  // e.g. a stale link
  connect();
}
function saveHash(push = false) {
  const hash = `#${encodeURIComponent(S.sel || "")}/${S.metric}`;
  if (hash === location.hash) return;
  if (push && S.sel !== null) history.pushState(null, "", hash); else history.replaceState(null, "", hash);
}
function readHash() {
  const [name, metric] = decodeURIComponent(location.hash.slice(1)).split("/");
  return { name: name || null, metric: METRICS[metric] ? metric : null };
}
function followHash() {  // hashchange and popstate (Back / Forward): the URL leads
  const { name, metric } = readHash();
  if (metric && metric !== S.metric) { S.metric = metric; renderTabs(); renderChart(); }
  if (name && name !== S.sel) select(name, false);
}
function connect() {
  if (S.es) S.es.close();
  const es = new EventSource(`/api/stream${S.sel ? `?string=${encodeURIComponent(S.sel)}` : ""}`);
  S.es = es;
  const conn = $("#conn");
  es.addEventListener("hello", () => {
    conn.textContent = "Live"; conn.className = "pill pill-ok";
    api("/api/events?limit=60").then((p) => mergeEvents(p.events));
  });
  es.addEventListener("plant", (e) => {
    S.plant = JSON.parse(e.data);
    if (!S.sel && S.plant.strings.length) { select(S.plant.strings[0].name, false); return; }
    renderTree(); renderComm(S.plant.buses);
  });
  es.addEventListener("string", (e) => {
    const st = JSON.parse(e.data);
    if (st.name !== S.sel) return;
    const ended = S.string?.derived?.discharging === 1 && st.derived?.discharging !== 1;
    S.string = st; renderDetail();
    if (ended) loadHealth();  // a discharge just ended: list it with its reports now
  });
  es.addEventListener("alarms", (e) => {
    const d = JSON.parse(e.data);
    S.alarms = d.active; renderAlarms(); mergeEvents(d.events);
    if (S.plant) renderTree();
  });
  es.onerror = () => { conn.textContent = "Reconnecting"; conn.className = "pill pill-wait"; };
}
async function start() {
  const { name, metric } = readHash();
  if (metric) S.metric = metric;
  $("#login-form").addEventListener("submit", login);
  $("#login-cancel").addEventListener("click", () => { S.pendingAck = null; $("#login-dlg").close(); });
  $("#login-btn").addEventListener("click", () => (S.session.user ? logout() : openLogin()));
  window.addEventListener("resize", () => renderChart());
  $("#retake-all").addEventListener("click", () => retake(null));
  setInterval(loadHealth, 60000);
  window.addEventListener("hashchange", followHash);
  window.addEventListener("popstate", followHash);
  try { Object.assign(S.session, await api("/api/session")); } catch { /* read-only */ }
  renderUser(); renderTabs();
  if (name) select(name, false); else connect();
}
document.addEventListener("DOMContentLoaded", start);
