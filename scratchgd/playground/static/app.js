// scratchgd playground: the page. Plain JavaScript and <canvas>, nothing fetched from elsewhere.
// Every number shown comes from the server's runs of scratchgd.fit (docs/playground.md).
"use strict";

const FIELDS = ["dataset", "hidden", "activation", "optimizer", "batch_size", "accumulate", "lr",
  "momentum", "epochs", "backend", "seed"];
const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b",
  "#e377c2", "#7f7f7f", "#bcbd22"];
const FINAL = ["done", "stopped", "error"];
const $ = (id) => document.getElementById(id);

let config = null;
let current = null;        // the run on show: {id, summary, losses, rows, picture, status, ...}
const runs = [];           // every run of this page, in order (the compare list)
const sweepQueue = [];     // settings of the sweep's runs still to post

// ---- settings <-> form <-> URL -------------------------------------------------------------

function readForm() {
  const s = {};
  for (const key of FIELDS) {
    const text = $(key).value.trim();
    if (key === "hidden") {
      s.hidden = text === "" ? [] : text.split(/[\s,]+/).map(numberOrText);
    } else if (key === "batch_size" && $("optimizer").value !== "minibatch") {
      continue;  // the command line takes --batch-size for mini-batch only
    } else if (text === "") {
      continue;  // left out: the command line's default
    } else {
      s[key] = ["dataset", "activation", "optimizer", "backend"].includes(key) ? text
        : numberOrText(text);
    }
  }
  if (s.dataset === "file" && config.defaults.loss) s.loss = config.defaults.loss;
  return s;
}

function numberOrText(text) {
  // a number when the text is one, else the text itself: the server refuses it by name
  return text !== "" && !isNaN(Number(text)) ? Number(text) : text;
}

function fillForm(params) {
  for (const key of FIELDS) {
    if (params.has(key)) $(key).value = params.get(key).replace(/,/g, " ");
  }
  markPower();
}

function saveToUrl() {
  const params = new URLSearchParams();
  for (const key of FIELDS) params.set(key, $(key).value.trim().replace(/\s+/g, ","));
  history.replaceState(null, "", "?" + params.toString());
}

function markPower() {
  const b = Number($("batch_size").value);
  const power = Number.isInteger(b) && b > 0 && (b & (b - 1)) === 0;
  $("power").textContent = power ? `= 2^${Math.log2(b)} (a power of two)` : "";
  $("batch_size").disabled = $("optimizer").value !== "minibatch";
}

function clearErrors() {
  for (const el of document.querySelectorAll(".err")) el.textContent = "";
}

function showError(message, field) {
  const el = field && $("err-" + field) ? $("err-" + field) : $("err-run");
  el.textContent = message;
}

// ---- runs ----------------------------------------------------------------------------------

async function post(path, body) {
  const response = await fetch(path, {
    method: "POST", headers: {"Content-Type": "application/json"},
    body: body === undefined ? "{}" : JSON.stringify(body)});
  return {status: response.status, body: await response.json()};
}

async function startRun(settings, paused) {
  clearErrors();
  const answer = await post("/api/runs" + (paused ? "?paused=1" : ""), settings);
  if (answer.status !== 201) {
    showError(answer.body.error, answer.body.field);
    return null;
  }
  const run = {id: answer.body.id, settings, color: COLORS[runs.length % COLORS.length],
    summary: null, losses: [], rows: [], picture: {}, status: "queued", counters: null,
    error: null, shown: true};
  runs.push(run);
  current = run;
  listen(run);
  updateButtons();
  drawAll();
  return run;
}

function listen(run) {
  const source = new EventSource(`/api/runs/${run.id}/events`);
  source.addEventListener("start", (e) => {
    run.summary = JSON.parse(e.data);
    run.status = "running";
    if (run === current) showSummary(run);
    updateButtons();
  });
  source.addEventListener("progress", (e) => {
    const p = JSON.parse(e.data);
    run.losses.length = p.first_iteration;
    for (const v of p.iteration_loss) run.losses.push(v);
    for (const row of p.epoch_rows) run.rows.push(row);
    run.counters = p;
    if (p.surface || p.curve) run.picture = p;
    if (run.status === "queued") run.status = "running";
    if (run === current && run.firstPoint === undefined) run.firstPoint = performance.now();
    scheduleDraw();
  });
  source.addEventListener("state", (e) => {
    run.status = JSON.parse(e.data).status;
    scheduleDraw();
    updateButtons();
  });
  for (const name of FINAL) {
    source.addEventListener(name, (e) => {
      source.close();
      const end = JSON.parse(e.data);
      run.status = name;
      run.error = end.error;
      run.finalSeconds = end.seconds;
      if (end.history) fromHistory(run, end.history);
      if (end.surface || end.curve) run.picture = end;
      if (name === "error" && run === current) showError(end.error, null);
      updateButtons();
      drawAll();
      nextSweepRun();
    });
  }
  source.onerror = () => {
    if (!FINAL.includes(run.status)) run.status = "connection lost";
  };
}

function fromHistory(run, h) {
  // the final History replaces what the updates carried: the same numbers, all of them
  run.losses = h.iteration_loss.slice();
  run.rows = [];
  let seconds = 0;
  for (let e = 0; e < h.epochs; e++) {
    seconds += h.epoch_seconds[e];
    run.rows.push({epoch: e + 1, iterations: h.iterations_at_epoch_end[e],
      steps: h.steps_at_epoch_end[e], samples: h.samples_at_epoch_end[e], loss: h.epoch_loss[e],
      accuracy: h.epoch_accuracy[e], val_loss: h.val_loss[e], val_accuracy: h.val_accuracy[e],
      val_r2: h.val_r2.length ? h.val_r2[e] : null, seconds: h.epoch_seconds[e]});
  }
  run.counters = Object.assign({}, run.counters || {}, {
    epoch: h.epochs, iterations: h.iterations, steps: h.steps, samples_seen: h.samples_seen,
    seconds: run.finalSeconds});
}

function showSummary(run) {
  const s = run.summary;
  $("command").textContent = s.command;
  $("python").textContent = s.python;
  $("memory").textContent = `${s.train_rows} training rows, ${s.test_rows} test rows; ` +
    `${s.model}; ${s.optimizer}. One training step needs ${bytes(s.step_bytes)} ` +
    `(memory.estimate); the largest batch under ${bytes(config.limits.step_bytes)}: ${s.max_batch} rows.`;
}

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function active(run) {
  return run && !FINAL.includes(run.status);
}

function updateButtons() {
  const on = active(current);
  $("pause").disabled = !on;
  $("stop").disabled = !on;
  $("pause").textContent = current && current.status === "paused" ? "Resume" : "Pause";
  $("advice").disabled = !(current && FINAL.includes(current.status));
  renderTable();
}

async function control(action) {
  if (!current) return;
  await post(`/api/runs/${current.id}/${action}`);
}

// ---- the sweep -----------------------------------------------------------------------------

function sweep() {
  const base = readForm();
  const n = config.rows[base.dataset];
  for (const b of [1, 8, 32, 128, n]) {
    sweepQueue.push(Object.assign({}, base, {optimizer: "minibatch", batch_size: b}));
  }
  nextSweepRun();
}

async function nextSweepRun() {
  if (!sweepQueue.length || active(current)) return;
  const run = await startRun(sweepQueue.shift(), false);
  if (!run) sweepQueue.length = 0;
}

// ---- drawing -------------------------------------------------------------------------------

let drawPending = false;
function scheduleDraw() {
  if (drawPending) return;
  drawPending = true;
  requestAnimationFrame(() => { drawPending = false; drawAll(); });
}

function drawAll() {
  drawCounters();
  drawIterations();
  drawCompare();
  drawPicture();
  renderTable();
  if (window.firstPaint === undefined) window.firstPaint = performance.now();
}

function drawCounters() {
  const r = current;
  const c = r && r.counters;
  const epochs = r && r.summary ? r.summary.epochs : 0;
  const n = r && r.summary ? r.summary.iterations_per_epoch : 0;
  $("c-epoch").textContent = `${c ? Math.min(c.epoch, epochs) : 0} / ${epochs}`;
  $("c-iteration").textContent = `${c && c.iteration !== undefined ? c.iteration : 0} / ${n}`;
  $("c-steps").textContent = c ? c.steps.toLocaleString("en") : "0";
  $("c-samples").textContent = c ? c.samples_seen.toLocaleString("en") : "0";
  $("c-seconds").textContent = c && c.seconds != null ? c.seconds.toFixed(2) : "0.00";
  $("c-status").textContent = r ? `run ${r.id}: ${r.status}` : "no run yet";
}

function axes(ctx, w, h, box, xlabel, ylabel, logx) {
  const pad = {l: 52, r: 10, t: 10, b: 34};
  ctx.clearRect(0, 0, w, h);
  ctx.strokeStyle = "#999";
  ctx.fillStyle = "#444";
  ctx.font = "11px system-ui, sans-serif";
  ctx.strokeRect(pad.l, pad.t, w - pad.l - pad.r, h - pad.t - pad.b);
  const X = (x) => pad.l + (x - box.x0) / (box.x1 - box.x0 || 1) * (w - pad.l - pad.r);
  const Y = (y) => h - pad.b - (y - box.y0) / (box.y1 - box.y0 || 1) * (h - pad.t - pad.b);
  for (let i = 0; i <= 4; i++) {
    const x = box.x0 + (box.x1 - box.x0) * i / 4;
    const y = box.y0 + (box.y1 - box.y0) * i / 4;
    ctx.fillText(short(logx ? 10 ** x : x), Math.min(X(x) - 12, w - 40), h - pad.b + 13);
    ctx.fillText(short(y), 4, Y(y) + 4);
  }
  ctx.fillText(xlabel, w / 2 - 30, h - 4);
  ctx.save();
  ctx.translate(12, h / 2 + 20);
  ctx.rotate(-Math.PI / 2);
  ctx.fillText(ylabel, 0, 0);
  ctx.restore();
  return {X, Y};
}

function short(v) {
  if (!isFinite(v)) return "";
  const a = Math.abs(v);
  return a >= 1e4 || (a > 0 && a < 1e-2) ? v.toExponential(1) : +v.toPrecision(3) + "";
}

function lines(canvas, series, xlabel, ylabel, logx) {
  const ctx = canvas.getContext("2d");
  if (logx) {  // x on a log scale: 1, 10, 100, ... equally spaced
    series = series.map((s) => Object.assign({}, s, {xs: s.xs.map((x) => x > 0 ? Math.log10(x) : NaN)}));
  }
  const box = {x0: Infinity, x1: -Infinity, y0: Infinity, y1: -Infinity};
  for (const s of series) {
    for (let i = 0; i < s.xs.length; i++) {
      if (s.ys[i] == null || !isFinite(s.ys[i]) || !isFinite(s.xs[i])) continue;
      box.x0 = Math.min(box.x0, s.xs[i]); box.x1 = Math.max(box.x1, s.xs[i]);
      box.y0 = Math.min(box.y0, s.ys[i]); box.y1 = Math.max(box.y1, s.ys[i]);
    }
  }
  if (!isFinite(box.x0)) Object.assign(box, {x0: 0, x1: 1, y0: 0, y1: 1});
  if (box.y0 > 0 && box.y0 < 0.5 * box.y1) box.y0 = 0;
  const {X, Y} = axes(ctx, canvas.width, canvas.height, box, xlabel, ylabel, logx);
  let drawn = 0;
  for (const s of series) {
    ctx.strokeStyle = s.color;
    ctx.lineWidth = s.width || 1.5;
    ctx.setLineDash(s.dash || []);
    ctx.beginPath();
    let pen = false;
    for (let i = 0; i < s.xs.length; i++) {
      const y = s.ys[i];
      if (y == null || !isFinite(y) || !isFinite(s.xs[i])) { pen = false; continue; }
      if (pen) ctx.lineTo(X(s.xs[i]), Y(y)); else ctx.moveTo(X(s.xs[i]), Y(y));
      pen = true;
      drawn++;
    }
    ctx.stroke();
  }
  ctx.setLineDash([]);
  canvas.dataset.points = String(drawn);
}

function drawIterations() {
  const r = current;
  const series = [];
  if (r && r.losses.length) {
    const step = Math.max(1, Math.floor(r.losses.length / 4000));  // at most 4,000 points drawn
    const xs = [], ys = [];
    for (let i = 0; i < r.losses.length; i += step) { xs.push(i + 1); ys.push(r.losses[i]); }
    series.push({xs, ys, color: r.color, width: 1});
  }
  lines($("chart-iterations"), series, "iteration", "batch loss");
}

function xOf(row, axis, cumulative) {
  return axis === "epoch" ? row.epoch : axis === "steps" ? row.steps
    : axis === "samples" ? row.samples : cumulative;
}

function drawCompare() {
  const axis = $("xaxis").value;
  const lossSeries = [], metricSeries = [];
  let regression = false;
  for (const r of runs) {
    if (!r.shown || !r.rows.length) continue;
    const xs = [];
    let t = 0;
    for (const row of r.rows) { t += row.seconds || 0; xs.push(xOf(row, axis, t)); }
    lossSeries.push({xs, ys: r.rows.map((row) => row.loss), color: r.color});
    lossSeries.push({xs, ys: r.rows.map((row) => row.val_loss), color: r.color, dash: [5, 4]});
    const isReg = r.summary && r.summary.settings.loss === "mse";
    regression = regression || isReg;
    metricSeries.push({xs, ys: r.rows.map((row) => isReg ? row.val_r2 : row.val_accuracy),
      color: r.color});
  }
  const label = {epoch: "epoch", steps: "training steps", samples: "samples seen",
    seconds: "seconds"}[axis];
  const logx = $("logx").checked;
  lines($("chart-epochs"), lossSeries, label + (logx ? " (log scale)" : ""), "loss", logx);
  $("metric-caption").textContent = regression ? "Test R^2 per epoch" : "Test accuracy per epoch";
  lines($("chart-metric"), metricSeries, label + (logx ? " (log scale)" : ""),
    regression ? "test R^2" : "test accuracy", logx);
}

function drawPicture() {
  const canvas = $("chart-surface");
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const r = current;
  const s = r && r.summary;
  if (!s || !s.points) {
    $("surface-caption").textContent = "Decision surface (2-D data) or fitted curve (1-D)";
    return;
  }
  const w = canvas.width, h = canvas.height, e = s.extent;
  if (e.length === 4) {
    $("surface-caption").textContent = "Decision surface: the class the network predicts";
    const sf = r.picture.surface;
    if (sf) {
      const cell = w / sf.size;
      for (let i = 0; i < sf.classes.length; i++) {
        ctx.globalAlpha = 0.15 + 0.45 * sf.confidence[i];
        ctx.fillStyle = COLORS[sf.classes[i] % COLORS.length];
        ctx.fillRect((i % sf.size) * cell, Math.floor(i / sf.size) * cell, cell + 1, cell + 1);
      }
      ctx.globalAlpha = 1;
    }
    const X = (x) => (x - e[0]) / (e[1] - e[0]) * w, Y = (y) => h - (y - e[2]) / (e[3] - e[2]) * h;
    s.points.x.forEach((p, i) => {
      ctx.fillStyle = COLORS[s.points.y[i] % COLORS.length];
      ctx.beginPath(); ctx.arc(X(p[0]), Y(p[1]), 2.5, 0, 2 * Math.PI); ctx.fill();
      ctx.strokeStyle = "#fff"; ctx.stroke();
    });
    canvas.dataset.points = String(sf ? sf.classes.length : 0);
  } else {
    $("surface-caption").textContent = "The fitted curve over the training points";
    const ys = s.points.y.concat(r.picture.curve || []).filter((v) => v != null);
    const lo = Math.min(...ys), hi = Math.max(...ys);
    const X = (x) => (x - e[0]) / (e[1] - e[0]) * w;
    const Y = (y) => h - 10 - (y - lo) / (hi - lo || 1) * (h - 20);
    ctx.fillStyle = "#888";
    s.points.x.forEach((p, i) => {
      ctx.beginPath(); ctx.arc(X(p[0]), Y(s.points.y[i]), 2, 0, 2 * Math.PI); ctx.fill();
    });
    const curve = r.picture.curve;
    if (curve) {
      ctx.strokeStyle = r.color; ctx.lineWidth = 2; ctx.beginPath();
      curve.forEach((v, i) => {
        const x = e[0] + (e[1] - e[0]) * i / (curve.length - 1);
        if (i) ctx.lineTo(X(x), Y(v)); else ctx.moveTo(X(x), Y(v));
      });
      ctx.stroke();
    }
    canvas.dataset.points = String(curve ? curve.length : 0);
  }
}

function renderTable() {
  const body = document.querySelector("#runs tbody");
  body.textContent = "";
  for (const r of runs) {
    const tr = document.createElement("tr");
    const last = r.rows[r.rows.length - 1];
    const figure = last ? (last.val_r2 != null ? `test R^2 ${last.val_r2.toFixed(3)}`
      : last.val_accuracy != null ? `test accuracy ${last.val_accuracy.toFixed(3)}` : "")
      + ` after epoch ${last.epoch}` : "";
    const s = r.settings;
    const text = `${s.dataset} ${s.optimizer}${s.batch_size ? " B=" + s.batch_size : ""} ` +
      `lr=${s.lr} epochs=${s.epochs} ${s.backend}`;
    tr.innerHTML = `<td><input type="checkbox" ${r.shown ? "checked" : ""} aria-label="show run ${r.id}"></td>` +
      `<td><span class="swatch" style="background:${r.color}"></span> ${r.id}</td>` +
      `<td></td><td></td><td></td><td></td>`;
    tr.children[2].textContent = text;
    tr.children[3].textContent = r.status + (r.error ? ": " + r.error : "");
    tr.children[4].textContent = figure;
    if (FINAL.includes(r.status)) {
      tr.children[5].innerHTML = `<a href="/api/runs/${r.id}/model">model</a> · ` +
        `<a href="/api/runs/${r.id}/history.csv">history.csv</a> · <a href="#" data-show="${r.id}">command</a>`;
    }
    tr.querySelector("input").addEventListener("change", (ev) => { r.shown = ev.target.checked; drawAll(); });
    const show = tr.querySelector("[data-show]");
    if (show) show.addEventListener("click", (ev) => { ev.preventDefault(); current = r; showSummary(r); drawAll(); updateButtons(); });
    body.appendChild(tr);
  }
}

async function advice() {
  if (!current) return;
  $("advice-out").textContent = "measuring...";
  const response = await fetch(`/api/runs/${current.id}/advice`);
  const a = await response.json();
  if (!response.ok) { $("advice-out").textContent = a.error; return; }
  const rows = a.table.map((t) => `<tr><td>${t.batch_size}</td><td>${short(t.steps)}</td>` +
    `<td>${short(t.examples)}</td></tr>`).join("");
  $("advice-out").innerHTML = `<p>Gradient noise scale B_simple = ${short(a.b_simple)} ` +
    `(from ${a.rows} rows, at the run's final weights).</p><table><tr><th>batch size</th>` +
    `<th>steps / fewest</th><th>examples / fewest</th></tr>${rows}</table>`;
}

// ---- start ---------------------------------------------------------------------------------

async function main() {
  config = await (await fetch("/api/config")).json();
  const labels = {gd: "GD (batch = the whole data set)", sgd: "SGD (batch of 1)",
    minibatch: "mini-batch SGD"};
  for (const key of ["activation", "optimizer", "backend"]) {  // the command line's registries
    const select = $(key);
    const keep = select.value;
    select.textContent = "";
    for (const name of config.settings[key].choices) {
      const option = document.createElement("option");
      option.value = name;
      option.textContent = labels[name] || name;
      select.appendChild(option);
    }
    select.value = config.settings[key].choices.includes(keep) ? keep : config.settings[key].default;
  }
  for (const name of config.datasets) {
    const option = document.createElement("option");
    option.value = name;
    option.textContent = name === "file" ? `the file: ${config.file}` : name;
    $("dataset").appendChild(option);
  }
  $("dataset").value = config.defaults.dataset;
  $("lr-hint").textContent = "empty: the command line's default, " + Object.entries(config.default_lr)
    .map(([loss, rates]) => Object.entries(rates).map(([o, lr]) => `${o} ${lr}`).join(", ") +
      ` (${loss})`).join("; ");
  fillForm(new URLSearchParams(location.search));
  for (const key of FIELDS) $(key).addEventListener("change", () => { saveToUrl(); markPower(); });
  $("train").addEventListener("click", () => { sweepQueue.length = 0; startRun(readForm(), false); });
  $("pause").addEventListener("click", () => control(current.status === "paused" ? "resume" : "pause"));
  $("step").addEventListener("click", () => {
    if (active(current)) control("step"); else startRun(readForm(), true);
  });
  $("stop").addEventListener("click", () => { sweepQueue.length = 0; control("stop"); });
  $("reset").addEventListener("click", () => {
    sweepQueue.length = 0;
    if (active(current)) control("stop");
    if (current) { const i = runs.indexOf(current); if (i >= 0) runs.splice(i, 1); }
    current = null;
    clearErrors();
    drawAll();
  });
  $("sweep").addEventListener("click", sweep);
  $("xaxis").addEventListener("change", drawAll);
  $("logx").addEventListener("change", drawAll);
  $("advice").addEventListener("click", advice);
  markPower();
  drawAll();
}

main();
