// The agpt dashboard page: polls the server's JSON endpoints (src/tools/dashboard.h) and draws
// the chosen metric of the chosen runs with uPlot. Metrics are fetched incrementally by byte
// offset, so a poll costs only what the runs wrote since the last one.
"use strict";

const RUNS_POLL_MS = 4000;
const METRICS_POLL_MS = 1500;
const PREFERRED_METRICS = ["loss", "val_loss", "lr", "tok_per_s"];
// The palette of `agpt plot` (src/tools/plot.cpp), so both show a run in the same colour.
const COLORS = ["#1f78b5", "#ff800d", "#2ba12b", "#d62629", "#9466bd", "#8c5749", "#e378c2",
                "#808080", "#bdbd21", "#17bfcf"];

const state = {
  runsDir: "",
  runs: new Map(),      // name -> {info, rows, offset, file, skipped, color, selected}
  metric: "loss",
  smooth: 0,
  logX: false,
  logY: false,
  polls: 0,             // completed metrics polls (the test waits on these)
  chart: null,
  chartKey: "",         // what the chart was built for; a change rebuilds it
};
window.dashboardState = state;

// What the chart draws now, read back from the chart itself: x and one y array per run.
window.dashboardPlot = function () {
  const u = state.chart;
  if (!u) return null;
  return {
    metric: state.metric, smooth: state.smooth, logX: state.logX, logY: state.logY,
    polls: state.polls,
    x: Array.from(u.data[0]),
    series: u.series.slice(1).map((s, i) => ({ run: s.label, y: Array.from(u.data[i + 1]) })),
  };
};

// Bias-corrected EMA, as src/tools/plot.cpp's ema_smooth (TensorBoard's convention).
function emaSmooth(ys, weight) {
  if (weight <= 0) return ys.slice();
  const out = new Array(ys.length);
  let avg = 0, norm = 0;
  for (let i = 0; i < ys.length; i++) {
    avg = weight * avg + (1 - weight) * ys[i];
    norm = weight * norm + (1 - weight);
    out[i] = avg / norm;
  }
  return out;
}

async function getJson(url) {
  const res = await fetch(url, { cache: "no-store" });
  const body = await res.json();
  if (!res.ok) throw new Error(body.error || `${url}: HTTP ${res.status}`);
  return body;
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  Object.assign(e, attrs || {});
  for (const c of children) e.append(c);
  return e;
}

function lastValue(rows, key) {
  for (let i = rows.length - 1; i >= 0; i--)
    if (typeof rows[i][key] === "number") return rows[i][key];
  return null;
}

function formatNumber(v) {
  if (v === null) return "";
  if (Number.isInteger(v)) return String(v);
  return Math.abs(v) >= 1e4 || Math.abs(v) < 1e-3 ? v.toExponential(2) : v.toPrecision(4);
}

function renderRuns() {
  document.getElementById("runs-dir").textContent = state.runsDir;
  const body = document.getElementById("runs-body");
  body.replaceChildren();
  for (const [name, run] of state.runs) {
    const box = el("input", { type: "checkbox", checked: run.selected });
    box.dataset.run = name;
    box.addEventListener("change", () => {
      run.selected = box.checked;
      pollMetrics();
    });
    const cfg = run.info.config || {};
    const summary = [cfg["model.flavor"], cfg["optimizer.name"],
                     cfg["optimizer.lr"] !== undefined ? `lr ${cfg["optimizer.lr"]}` : undefined,
                     cfg["training.steps"] !== undefined ? `${cfg["training.steps"]} steps` : undefined]
      .filter((s) => s !== undefined).join(" · ");
    const showConfig = el("button", { className: "link", textContent: "config" });
    showConfig.addEventListener("click", () => showRunConfig(name));
    const nameCell = el("td", {},
      el("span", { className: "swatch", style: `background:${run.color}` }), name, " ", showConfig,
      el("div", { className: "cfg", textContent: run.info.config_error || summary }));
    if (run.skipped > 0)
      nameCell.append(el("div", { className: "skipped",
                                  textContent: `${run.skipped} malformed metrics line(s) skipped` }));
    const status = el("span", { className: `status status-${run.info.status}`,
                                textContent: run.info.status });
    const row = el("tr", {}, el("td", {}, box), nameCell, el("td", {}, status),
                   el("td", { textContent: formatNumber(lastValue(run.rows, "step")) }),
                   el("td", { textContent: formatNumber(lastValue(run.rows, "loss")) }));
    row.dataset.run = name;
    row.dataset.status = run.info.status;
    body.append(row);
  }
}

async function showRunConfig(name) {
  const view = document.getElementById("config-view");
  document.getElementById("config-title").textContent = `config of ${name}`;
  try {
    const res = await fetch(`/api/config?run=${encodeURIComponent(name)}`, { cache: "no-store" });
    view.textContent = res.ok ? await res.text() : (await res.json()).error;
  } catch (e) {
    view.textContent = String(e);
  }
}

async function pollRuns() {
  try {
    const body = await getJson("/api/runs");
    state.runsDir = body.runs_dir;
    const seen = new Set();
    for (const info of body.runs) {
      seen.add(info.name);
      let run = state.runs.get(info.name);
      if (!run) {
        run = { info, rows: [], offset: 0, file: "", skipped: 0,
                color: COLORS[state.runs.size % COLORS.length], selected: true };
        state.runs.set(info.name, run);
      }
      run.info = info;
    }
    for (const name of [...state.runs.keys()]) if (!seen.has(name)) state.runs.delete(name);
    renderRuns();
  } catch (e) {
    document.getElementById("poll-status").textContent = `runs: ${e.message}`;
  }
}

async function pollRun(name, run) {
  // Several chunks when a run has more than one reply's worth of new lines.
  for (;;) {
    const q = `run=${encodeURIComponent(name)}&offset=${run.offset}&file=${encodeURIComponent(run.file)}`;
    const chunk = await getJson(`/api/metrics?${q}`);
    if (chunk.restarted) {
      run.rows = [];
      run.skipped = 0;
    }
    const before = run.offset;
    run.rows.push(...chunk.rows);
    run.skipped += chunk.skipped;
    run.offset = chunk.next_offset;
    run.file = chunk.file;
    if (chunk.rows.length === 0 || run.offset === before) return;
    if (chunk.next_offset >= run.info.metrics_bytes) return;
  }
}

let pollInFlight = false;
async function pollMetrics() {
  if (pollInFlight) return;
  pollInFlight = true;
  try {
    await Promise.all([...state.runs].filter(([, r]) => r.selected).map(([n, r]) => pollRun(n, r)));
    state.polls++;
    document.getElementById("poll-status").textContent =
      `updated ${new Date().toLocaleTimeString()}`;
  } catch (e) {
    document.getElementById("poll-status").textContent = `metrics: ${e.message}`;
  } finally {
    pollInFlight = false;
  }
  renderMetricChoices();
  renderRuns();
  draw();
}

function renderMetricChoices() {
  const keys = new Set();
  for (const run of state.runs.values())
    for (const row of run.rows)
      for (const [k, v] of Object.entries(row)) if (k !== "step" && typeof v === "number") keys.add(k);
  const ordered = [...PREFERRED_METRICS.filter((k) => keys.has(k)),
                   ...[...keys].filter((k) => !PREFERRED_METRICS.includes(k)).sort()];
  const select = document.getElementById("metric");
  const current = [...select.options].map((o) => o.value).join(",");
  if (current === ordered.join(",")) return;
  select.replaceChildren(...ordered.map((k) => el("option", { value: k, textContent: k })));
  if (ordered.includes(state.metric)) select.value = state.metric;
  else if (ordered.length > 0) state.metric = select.value = ordered[0];
}

// One (x, y) series per selected run holding the metric, smoothed, with points a log axis
// cannot show left out (and counted for the note under the chart).
function seriesToDraw() {
  const out = [];
  let dropped = 0;
  for (const [name, run] of state.runs) {
    if (!run.selected) continue;
    const xs = [], ys = [];
    for (const row of run.rows)
      if (typeof row[state.metric] === "number" && typeof row.step === "number") {
        xs.push(row.step);
        ys.push(row[state.metric]);
      }
    if (xs.length === 0) continue;
    const smoothed = emaSmooth(ys, state.smooth);
    const px = [], py = [];
    for (let i = 0; i < xs.length; i++) {
      if ((state.logX && xs[i] <= 0) || (state.logY && smoothed[i] <= 0)) {
        dropped++;
        continue;
      }
      px.push(xs[i]);
      py.push(smoothed[i]);
    }
    out.push({ name, color: run.color, x: px, y: py });
  }
  return { series: out, dropped };
}

// uPlot wants one shared x array; runs logged at different steps get nulls where they have no
// point, and spanGaps draws through them.
function alignSeries(series) {
  const steps = [...new Set(series.flatMap((s) => s.x))].sort((a, b) => a - b);
  const index = new Map(steps.map((x, i) => [x, i]));
  const data = [steps];
  for (const s of series) {
    const ys = new Array(steps.length).fill(null);
    for (let i = 0; i < s.x.length; i++) ys[index.get(s.x[i])] = s.y[i];
    data.push(ys);
  }
  return data;
}

function draw() {
  const { series, dropped } = seriesToDraw();
  const note = [];
  if (dropped > 0) note.push(`${dropped} point(s) ≤ 0 not shown on the log axis`);
  if (series.length === 0) note.push(`no selected run has '${state.metric}' values yet`);
  document.getElementById("note").textContent = note.join("; ");
  const data = alignSeries(series);
  const key = JSON.stringify([state.metric, state.smooth, state.logX, state.logY,
                              series.map((s) => s.name)]);
  const container = document.getElementById("chart");
  if (state.chart && key === state.chartKey) {
    state.chart.setData(data);
    return;
  }
  if (state.chart) state.chart.destroy();
  state.chartKey = key;
  const width = Math.max(480, container.clientWidth - 4);
  const label = state.metric + (state.smooth > 0 ? ` (EMA ${state.smooth})` : "");
  state.chart = new uPlot({
    width, height: 420,
    scales: { x: { time: false, distr: state.logX ? 3 : 1 }, y: { distr: state.logY ? 3 : 1 } },
    axes: [{ label: state.logX ? "step (log)" : "step" },
           { label: label + (state.logY ? " (log)" : ""), size: 70 }],
    series: [{ label: "step" },
             ...series.map((s) => ({ label: s.name, stroke: s.color, width: 1.8, spanGaps: true,
                                     points: { show: s.x.length === 1 } }))],
  }, data, container);
}

function bindControls() {
  document.getElementById("metric").addEventListener("change", (e) => {
    state.metric = e.target.value;
    draw();
  });
  const smooth = document.getElementById("smooth");
  smooth.addEventListener("input", () => {
    state.smooth = Number(smooth.value);
    document.getElementById("smooth-value").textContent = state.smooth.toFixed(2);
    draw();
  });
  document.getElementById("log-x").addEventListener("change", (e) => {
    state.logX = e.target.checked;
    draw();
  });
  document.getElementById("log-y").addEventListener("change", (e) => {
    state.logY = e.target.checked;
    draw();
  });
}

async function start() {
  bindControls();
  await pollRuns();
  await pollMetrics();
  setInterval(pollRuns, RUNS_POLL_MS);
  setInterval(pollMetrics, METRICS_POLL_MS);
}

start();
