// End-to-end test of `agpt dashboard` in Debian's headless Chromium, driven by playwright-core
// (web/package.json): the page must plot exactly the values in the runs' metrics.jsonl, skip a
// malformed line, leave a partial last line for later, pick up appended lines, rewritten files
// and new runs while open, show each run's status, and apply smoothing and log scales. Saves a
// screenshot.
//
//   node tests/dashboard_e2e.mjs AGPT_BINARY OUTPUT_DIR
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import fs from "node:fs";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const CHROMIUM = "/usr/bin/chromium";
const here = path.dirname(fileURLToPath(import.meta.url));
const [agpt, outDir] = process.argv.slice(2);
if (!agpt || !outDir) {
  console.error("usage: node dashboard_e2e.mjs AGPT_BINARY OUTPUT_DIR");
  process.exit(2);
}
if (!fs.existsSync(CHROMIUM)) {
  console.error(`${CHROMIUM} is missing: run scripts/setup.sh --test (Debian's chromium)`);
  process.exit(1);
}
const require = createRequire(path.join(here, "..", "web", "package.json"));
const { chromium } = require("playwright-core");

let checks = 0;
function check(fn) {
  fn();
  checks++;
}

// ---- two runs: alpha (a malformed line, a partial last line, val_loss every 10 steps), beta.
const runsDir = fs.mkdtempSync(path.join(os.tmpdir(), "agpt_dashboard_e2e_"));
function metricsLine(step, scale) {
  return JSON.stringify({ step, loss: scale * (4 / Math.sqrt(step)) + 0.1 * Math.sin(step),
                          lr: 1e-3 * Math.min(1, step / 5), tok_per_s: 1000 + 13.7 * step,
                          grad_norm: 1 / step });
}
function writeRun(name, lines, partial, log) {
  fs.mkdirSync(path.join(runsDir, name));
  fs.writeFileSync(path.join(runsDir, name, "metrics.jsonl"), lines.join("\n") + "\n" + partial);
  fs.writeFileSync(path.join(runsDir, name, "config.toml"),
                   `[model]\nname = "agpt"\nflavor = "debugmodel"\n[optimizer]\nname = "AdamW"\n` +
                   `lr = 1e-3\n[training]\nsteps = 60\n`);
  fs.writeFileSync(path.join(runsDir, name, "train.log"), log);
}
const alphaLines = [];
for (let step = 1; step <= 30; step++) {
  alphaLines.push(metricsLine(step, 1.0));
  if (step % 10 === 0) alphaLines.push(JSON.stringify({ step, val_loss: 3 - step / 20 }));
  if (step === 15) alphaLines.push('{"step": 15, "loss": 2.1');  // cut short, then more lines
}
const alphaPartial = metricsLine(31, 1.0).slice(0, 17);
writeRun("alpha", alphaLines, alphaPartial,
         "run runs/alpha | data tinyshakespeare\nstep 30/60 | loss 1.0\nstopping at step 30: signal 15\n");
const betaLines = [];
for (let step = 2; step <= 40; step += 2) betaLines.push(metricsLine(step, 1.3));
writeRun("beta", betaLines, "", "run runs/beta | data tinyshakespeare\ndone in 5s\n");

// What the page should show: the (step, value) pairs of the file's complete, valid lines.
function fileSeries(run, metric) {
  const text = fs.readFileSync(path.join(runsDir, run, "metrics.jsonl"), "utf8");
  const complete = text.slice(0, text.lastIndexOf("\n") + 1);
  const xs = [], ys = [];
  for (const line of complete.split("\n")) {
    let row;
    try {
      row = JSON.parse(line);
    } catch {
      continue;
    }
    if (typeof row[metric] === "number") {
      xs.push(row.step);
      ys.push(row[metric]);
    }
  }
  return { xs, ys };
}

// The non-null points of one plotted run.
function plottedSeries(plot, run) {
  const s = plot.series.find((t) => t.run === run);
  assert.ok(s, `run ${run} is not plotted (plotted: ${plot.series.map((t) => t.run)})`);
  const xs = [], ys = [];
  plot.x.forEach((x, i) => {
    if (s.y[i] !== null && s.y[i] !== undefined) {
      xs.push(x);
      ys.push(s.y[i]);
    }
  });
  return { xs, ys };
}

// An independent bias-corrected EMA (TensorBoard's smoothing): avg_t / (1 - w^t).
function ema(ys, w) {
  let avg = 0;
  return ys.map((y, i) => {
    avg = w * avg + (1 - w) * y;
    return avg / (1 - Math.pow(w, i + 1));
  });
}

// ---- the server, on a free port chosen by the OS.
const server = spawn(agpt, ["dashboard", runsDir, "--port", "0"], { stdio: ["ignore", "pipe", "pipe"] });
let serverOut = "";
server.stdout.on("data", (d) => (serverOut += d));
server.stderr.on("data", (d) => (serverOut += d));
const url = await new Promise((resolve, reject) => {
  const timer = setTimeout(() => reject(new Error(`no URL from agpt dashboard: ${serverOut}`)), 10000);
  server.stdout.on("data", () => {
    const m = serverOut.match(/http:\/\/127\.0\.0\.1:\d+\//);
    if (m) {
      clearTimeout(timer);
      resolve(m[0]);
    }
  });
  server.on("exit", (code) => reject(new Error(`agpt dashboard exited (${code}): ${serverOut}`)));
});

let browser;
let failed = false;
try {
  // Paths outside RUNS_DIR are refused over HTTP as well.
  for (const bad of ["..", "../alpha", "/etc", "alpha/../.."]) {
    const res = await fetch(`${url}api/metrics?run=${encodeURIComponent(bad)}`);
    check(() => assert.equal(res.status, 400, `run=${bad}`));
  }

  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const page = await browser.newPage({ viewport: { width: 1400, height: 760 } });
  const requests = [];
  page.on("request", (r) => requests.push(r.url()));
  const pageErrors = [];
  page.on("pageerror", (e) => pageErrors.push(String(e)));
  await page.goto(url);

  const plotted = () => page.evaluate(() => window.dashboardPlot && window.dashboardPlot());
  await page.waitForFunction(() => {
    const p = window.dashboardPlot && window.dashboardPlot();
    return p && p.series.length === 2;
  }, null, { timeout: 20000 });

  // ---- the loss curves equal the files' values, exactly.
  let plot = await plotted();
  check(() => assert.equal(plot.metric, "loss"));
  for (const run of ["alpha", "beta"])
    check(() => assert.deepEqual(plottedSeries(plot, run), fileSeries(run, "loss"), run));
  check(() => assert.equal(plottedSeries(plot, "alpha").xs.length, 30));
  check(() => assert.equal(plottedSeries(plot, "beta").xs.length, 20));
  const skippedNote = await page.textContent('tr[data-run="alpha"] .skipped');
  check(() => assert.match(skippedNote, /^1 malformed/));
  const statuses = await page.$$eval("#runs-body tr", (rows) => rows.map((r) => r.dataset.status));
  check(() => assert.deepEqual(statuses, ["preempted", "finished"]));

  // ---- live update: the writer finishes the partial line and adds more.
  const fullLine31 = metricsLine(31, 1.0);
  let appended = fullLine31.slice(alphaPartial.length) + "\n";
  for (let step = 32; step <= 36; step++) appended += metricsLine(step, 1.0) + "\n";
  appended += metricsLine(37, 1.0).slice(0, 9);  // a new partial line
  fs.appendFileSync(path.join(runsDir, "alpha", "metrics.jsonl"), appended);
  await page.waitForFunction(() => {
    const p = window.dashboardPlot();
    const a = p.series.find((s) => s.run === "alpha");
    return p.x.includes(36) && a.y[p.x.indexOf(36)] !== null;
  }, null, { timeout: 10000 });
  plot = await plotted();
  check(() => assert.deepEqual(plottedSeries(plot, "alpha"), fileSeries("alpha", "loss")));
  check(() => assert.equal(plottedSeries(plot, "alpha").xs.at(-1), 36));
  check(() => assert.deepEqual(plottedSeries(plot, "beta"), fileSeries("beta", "loss")));

  // ---- a resumed run rewrites its metrics through a rename (fewer steps): the page starts over.
  const betaRewritten = betaLines.slice(0, 12).join("\n") + "\n";
  fs.writeFileSync(path.join(runsDir, "beta", "metrics.tmp"), betaRewritten);
  fs.renameSync(path.join(runsDir, "beta", "metrics.tmp"), path.join(runsDir, "beta", "metrics.jsonl"));
  await page.waitForFunction(() => {
    const p = window.dashboardPlot();
    const b = p.series.find((s) => s.run === "beta");
    return b && b.y.filter((v) => v !== null).length === 12;
  }, null, { timeout: 10000 });
  plot = await plotted();
  check(() => assert.deepEqual(plottedSeries(plot, "beta"), fileSeries("beta", "loss")));

  // ---- a run that starts while the page is open appears, running while it holds the trainer's
  // lock (flock(1) takes the same flock(2) lock as the trainer).
  const gammaLines = [1, 2, 3].map((step) => metricsLine(step, 0.8));
  writeRun("gamma", gammaLines, "", "run runs/gamma | data tinyshakespeare\nstep 3/60 | loss 3.0\n");
  // -o: only flock itself holds the lock, so ending it releases the lock.
  const holder = spawn("flock", ["-o", path.join(runsDir, "gamma", ".lock"), "sleep", "60"],
                       { stdio: "ignore", detached: true });
  try {
    await page.waitForFunction(() => {
      const row = document.querySelector('tr[data-run="gamma"]');
      const p = window.dashboardPlot();
      return row && row.dataset.status === "running" && p.series.some((s) => s.run === "gamma");
    }, null, { timeout: 15000 });
  } finally {
    process.kill(-holder.pid, "SIGTERM");  // flock and its sleep
  }
  plot = await plotted();
  check(() => assert.deepEqual(plottedSeries(plot, "gamma"), fileSeries("gamma", "loss")));
  // Its lock released, a run whose log has no end line is failed.
  await page.waitForFunction(() => document.querySelector('tr[data-run="gamma"]').dataset.status === "failed",
                             null, { timeout: 15000 });
  checks++;

  // ---- other metrics: val_loss (alpha only has it), lr, tok_per_s.
  const options = await page.$$eval("#metric option", (os) => os.map((o) => o.value));
  check(() => assert.deepEqual(options.slice(0, 4), ["loss", "val_loss", "lr", "tok_per_s"]));
  for (const metric of ["val_loss", "lr", "tok_per_s"]) {
    await page.selectOption("#metric", metric);
    plot = await plotted();
    check(() => assert.equal(plot.metric, metric));
    if (metric === "val_loss") {
      check(() => assert.deepEqual(plot.series.map((s) => s.run), ["alpha"]));
    } else {
      check(() => assert.deepEqual(plottedSeries(plot, "beta"), fileSeries("beta", metric)));
    }
    check(() => assert.deepEqual(plottedSeries(plot, "alpha"), fileSeries("alpha", metric)));
  }

  // ---- smoothing: the slider's EMA against an independent one.
  await page.selectOption("#metric", "loss");
  await page.$eval("#smooth", (e) => {
    e.value = "0.6";
    e.dispatchEvent(new Event("input"));
  });
  plot = await plotted();
  check(() => assert.equal(plot.smooth, 0.6));
  for (const run of ["alpha", "beta"]) {
    const want = fileSeries(run, "loss");
    const got = plottedSeries(plot, run);
    check(() => assert.deepEqual(got.xs, want.xs));
    const smoothed = ema(want.ys, 0.6);
    got.ys.forEach((y, i) =>
      check(() => assert.ok(Math.abs(y - smoothed[i]) <= 1e-12 * Math.abs(smoothed[i]),
                            `${run} step ${got.xs[i]}: ${y} vs ${smoothed[i]}`)));
  }

  // ---- log scales: the chart's axes switch to logarithmic distribution.
  await page.check("#log-x");
  await page.check("#log-y");
  const distr = await page.evaluate(() => [window.dashboardState.chart.scales.x.distr,
                                           window.dashboardState.chart.scales.y.distr]);
  check(() => assert.deepEqual(distr, [3, 3]));
  plot = await plotted();
  check(() => assert.equal(plottedSeries(plot, "alpha").xs.length, 36));

  // ---- a run deselected leaves the chart; the screenshot shows both, smoothed, log-y.
  await page.uncheck("#log-x");
  await page.$eval("#smooth", (e) => {
    e.value = "0.3";
    e.dispatchEvent(new Event("input"));
  });
  await page.uncheck('input[data-run="beta"]');
  await page.waitForFunction(() => window.dashboardPlot().series.length === 2);
  plot = await plotted();
  check(() => assert.deepEqual(plot.series.map((s) => s.run), ["alpha", "gamma"]));
  await page.check('input[data-run="beta"]');
  await page.waitForFunction(() => window.dashboardPlot().series.length === 3);
  await page.click('tr[data-run="alpha"] button');
  await page.waitForFunction(() => document.getElementById("config-view").textContent.includes("[optimizer]"));
  fs.mkdirSync(outDir, { recursive: true });
  const shot = path.join(outDir, "dashboard.png");
  await page.screenshot({ path: shot });
  check(() => assert.ok(fs.statSync(shot).size > 10000));

  // Nothing was loaded from anywhere but the dashboard itself, and the page threw nothing.
  check(() => assert.deepEqual(requests.filter((u) => !u.startsWith(url)), []));
  check(() => assert.deepEqual(pageErrors, []));
  console.log(`dashboard e2e: ${checks} checks passed; screenshot ${shot}`);
} catch (e) {
  failed = true;
  console.error(`dashboard e2e FAILED after ${checks} checks: ${e.stack || e}`);
  console.error(`server output: ${serverOut}`);
} finally {
  if (browser) await browser.close();
  server.kill("SIGTERM");
  fs.rmSync(runsDir, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
