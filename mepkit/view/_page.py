"""The live view's page: one self-contained HTML file (inline CSS, JS and SVG; no network).

It polls ``/api/state?since=N&traces_since=M`` every ``poll_ms`` and draws, as trials
arrive: the latest MEP traces over the recent ones, amplitude and background per trial
(rejected trials marked), the protocol's estimate, the map, the latest trials as a
table, and a banner that turns amber/red when the EMG stream stalls or is lost (or when
the page loses contact with mepkit). The body's ``data-*`` attributes (``state``,
``trials``, ``last-trial``, ``traces``, ``map-points``, ``estimate``) say what is shown,
for tests and scripts.
"""

from __future__ import annotations

__all__ = ["PAGE", "page_bytes"]

PAGE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>mepkit live</title>
<style>
:root { --fg:#1d2433; --muted:#6b7385; --line:#d9dde5; --blue:#1565c0; --red:#c62828;
        --amber:#b26a00; --green:#2e7d32; --bg:#f5f6f8; }
* { box-sizing:border-box; }
body { margin:0; font:14px/1.35 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif;
       color:var(--fg); background:var(--bg); }
header { display:flex; flex-wrap:wrap; align-items:center; gap:8px 18px; padding:10px 16px;
         background:#fff; border-bottom:1px solid var(--line); }
h1 { font-size:18px; margin:0; }
h2 { font-size:14px; margin:0 0 6px; display:flex; justify-content:space-between; align-items:center; }
#banner { padding:6px 12px; border-radius:6px; font-weight:600; background:#e8f5e9; color:var(--green); }
#banner.waiting, #banner.stopped, #banner.nosession { background:#eceff1; color:#455a64; }
#banner.stalled { background:#fff3e0; color:var(--amber); animation:blink 1s steps(2) infinite; }
#banner.lost, #banner.error, #banner.disconnected { background:var(--red); color:#fff;
         animation:blink 1s steps(2) infinite; }
body.alarm header { background:#ffebee; border-bottom:3px solid var(--red); }
body.warn header { background:#fff8e1; border-bottom:3px solid var(--amber); }
@keyframes blink { 50% { opacity:.55; } }
#stats { color:var(--muted); }
#stats b { color:var(--fg); font-weight:600; }
main { display:grid; grid-template-columns:repeat(auto-fit, minmax(520px, 1fr)); gap:12px; padding:12px; }
section { background:#fff; border:1px solid var(--line); border-radius:8px; padding:10px 12px; min-width:0; }
svg { width:100%; height:auto; display:block; }
svg text { font-size:11px; fill:var(--muted); }
svg .lab { fill:var(--fg); font-size:12px; }
.axis { stroke:#9aa1ae; stroke-width:1; }
.grid { stroke:#eef0f3; stroke-width:1; }
.empty { color:var(--muted); padding:30px 0; text-align:center; }
table { border-collapse:collapse; width:100%; font-variant-numeric:tabular-nums; }
th, td { padding:3px 6px; text-align:right; border-bottom:1px solid #eef0f3; }
th { color:var(--muted); font-weight:500; }
td.st { text-align:left; }
tr.rej td { color:var(--red); }
tr.mep td.st { color:var(--green); }
#estimate .big { font-size:26px; font-weight:650; }
#estimate .sub { color:var(--muted); }
#estimate table td:first-child { text-align:left; color:var(--muted); }
select { font:inherit; }
.key span { margin-left:10px; color:var(--muted); font-weight:400; font-size:12px; }
</style>
</head>
<body data-state="loading" data-trials="0" data-last-trial="" data-traces="0" data-map-points="0" data-estimate="">
<header>
  <h1 id="title">mepkit live</h1>
  <div id="banner" class="waiting">connecting…</div>
  <div id="stats"></div>
</header>
<main>
  <section id="traces-panel"><h2>MEP traces <span class="key"><span style="color:var(--blue)">━ latest</span><span>━ recent</span></span></h2><div id="traces"><div class="empty">no trial yet</div></div></section>
  <section id="estimate-panel"><h2>Protocol estimate</h2><div id="estimate"><div class="empty">no protocol: recording only</div></div><div id="hunt"></div></section>
  <section><h2>Amplitude per trial <label>channel <select id="channel"></select></label></h2><div id="amp"><div class="empty">no trial yet</div></div></section>
  <section><h2>Background EMG per trial <span class="key"><span style="color:var(--red)">× rejected</span></span></h2><div id="bg"><div class="empty">no trial yet</div></div></section>
  <section><h2>Map</h2><div id="map"><div class="empty">no positions yet</div></div></section>
  <section><h2>Latest trials</h2><div id="table"><div class="empty">no trial yet</div></div></section>
</main>
<script>
"use strict";
const S = { since: 0, tracesSince: 0, trials: [], traces: [], config: null, status: null,
            protocol: null, channel: null, fails: 0, lastOk: 0, dirty: true, protoKey: "", lastDraw: -1e9 };
const MAX_KEEP = 5000, MAX_TRACES = 12, MAX_PLOT = 1500, HEAVY_EVERY_MS = 1000;
const $ = (id) => document.getElementById(id);
const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;"}[c]));
const fin = (v) => typeof v === "number" && isFinite(v);
const fmt = (v, d) => fin(v) ? v.toFixed(d) : "–";
const fmtAmp = (v) => fin(v) ? (Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(1)) : "–";

function decode(b64) {
  const bin = atob(b64), u = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) u[i] = bin.charCodeAt(i);
  return new Float32Array(u.buffer);
}

async function poll() {
  let wait = 300;
  try {
    const r = await fetch(`/api/state?since=${S.since}&traces_since=${S.tracesSince}`, {cache: "no-store"});
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    const d = await r.json();
    apply(d);
    S.fails = 0; S.lastOk = Date.now();
    wait = d.more ? 0 : (S.config ? S.config.poll_ms : 300);
  } catch (e) {
    S.fails += 1;
    wait = Math.min(5000, 300 * (1 + S.fails));
  }
  try { render(); } catch (e) { console.error(e); }
  setTimeout(poll, wait);
}

function apply(d) {
  if (d.seq < S.since) { S.trials = []; S.traces = []; S.since = 0; S.tracesSince = 0; }  // a new view
  S.config = d.config; S.status = d.status;
  if (d.trials.length) {
    S.trials.push(...d.trials);
    if (S.trials.length > MAX_KEEP) S.trials.splice(0, S.trials.length - MAX_KEEP);
    S.since = d.trials[d.trials.length - 1].seq;
    S.dirty = true;
  }
  if (d.traces.length) {
    for (const t of d.traces) { t.y = t.traces.map(decode); delete t.traces; S.traces.push(t); }
    if (S.traces.length > MAX_TRACES) S.traces.splice(0, S.traces.length - MAX_TRACES);
    S.tracesSince = d.traces[d.traces.length - 1].seq;
    S.dirty = true;
  }
  const pk = d.protocol ? JSON.stringify([d.protocol.n_pulses, d.protocol.estimate, d.protocol.done]) : "";
  if (pk !== S.protoKey) { S.protoKey = pk; S.protocol = d.protocol; S.dirty = true; }
}

// ------------------------------------------------------------------ drawing helpers
function scale(d0, d1, r0, r1) { const k = (r1 - r0) / ((d1 - d0) || 1); return (v) => r0 + (v - d0) * k; }
function niceTicks(lo, hi, n) {
  const span = hi - lo; if (!(span > 0)) return [lo];
  const step0 = span / n, mag = Math.pow(10, Math.floor(Math.log10(step0)));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= step0);
  const out = []; for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9; v += step) out.push(+v.toFixed(10));
  return out;
}
function frame(W, H, m, xs, ys, xt, yt, xlab, ylab, yfmt) {
  let s = "";
  for (const v of yt) { const y = ys(v); s += `<line class="grid" x1="${m.l}" x2="${W - m.r}" y1="${y}" y2="${y}"/><text x="${m.l - 5}" y="${y + 4}" text-anchor="end">${yfmt ? yfmt(v) : v}</text>`; }
  for (const v of xt) { const x = xs(v); s += `<text x="${x}" y="${H - m.b + 14}" text-anchor="middle">${v}</text>`; }
  s += `<line class="axis" x1="${m.l}" x2="${W - m.r}" y1="${H - m.b}" y2="${H - m.b}"/><line class="axis" x1="${m.l}" x2="${m.l}" y1="${m.t}" y2="${H - m.b}"/>`;
  s += `<text x="${(m.l + W - m.r) / 2}" y="${H - 3}" text-anchor="middle">${xlab}</text>`;
  s += `<text transform="translate(11 ${(m.t + H - m.b) / 2}) rotate(-90)" text-anchor="middle">${ylab}</text>`;
  return s;
}
function cross(x, y, r, color) { return `<path d="M${x - r} ${y - r}L${x + r} ${y + r}M${x - r} ${y + r}L${x + r} ${y - r}" stroke="${color}" stroke-width="1.8"/>`; }

function chIndex(t) { const i = S.config && S.config.channels ? S.config.channels.indexOf(S.channel) : 0; return i < 0 ? 0 : i; }
function stateOf(t, c) {
  if (t.reject_reason[c]) return "rej";
  return t.detected[c] ? "mep" : "none";
}

// ------------------------------------------------------------------ panels
function drawTraces() {
  const cfg = S.config, el = $("traces");
  const chans = cfg.trace_channels || [];
  if (!S.traces.length || !chans.length) { el.innerHTML = '<div class="empty">no trial yet</div>'; return 0; }
  const W = 560, H = chans.length > 1 ? 170 : 240, m = {l: 52, r: 10, t: 16, b: 30};
  const latest = S.traces[S.traces.length - 1];
  const [a0, a1] = cfg.artifact_window_ms, [r0, r1] = cfg.response_window_ms;
  let html = "", drawn = 0;
  chans.forEach((name, c) => {
    let lo = -50, hi = 50;
    for (const t of S.traces) {
      const y = t.y[c]; if (!y) continue;
      const dt = (t.t1_ms - t.t0_ms) / Math.max(1, y.length - 1);
      for (let i = 0; i < y.length; i++) { const tm = t.t0_ms + i * dt; if (tm >= a0 && tm <= a1) continue; if (y[i] < lo) lo = y[i]; if (y[i] > hi) hi = y[i]; }
    }
    const pad = 0.08 * (hi - lo); lo -= pad; hi += pad;
    const xs = scale(cfg.window_ms[0], cfg.window_ms[1], m.l, W - m.r), ys = scale(lo, hi, H - m.b, m.t);
    let s = `<rect x="${xs(r0)}" y="${m.t}" width="${xs(r1) - xs(r0)}" height="${H - m.b - m.t}" fill="#e3f2fd"/>`;
    s += `<rect x="${xs(a0)}" y="${m.t}" width="${Math.max(1, xs(a1) - xs(a0))}" height="${H - m.b - m.t}" fill="#f3f3f3"/>`;
    s += frame(W, H, m, xs, ys, niceTicks(cfg.window_ms[0], cfg.window_ms[1], 7), niceTicks(lo, hi, 4), "ms from the pulse", "µV");
    s += `<clipPath id="clip${c}"><rect x="${m.l}" y="${m.t}" width="${W - m.l - m.r}" height="${H - m.t - m.b}"/></clipPath><g clip-path="url(#clip${c})">`;
    S.traces.forEach((t, k) => {
      const y = t.y[c]; if (!y) return;
      const isLast = t === latest, dt = (t.t1_ms - t.t0_ms) / Math.max(1, y.length - 1);
      let p = ""; for (let i = 0; i < y.length; i++) p += `${xs(t.t0_ms + i * dt).toFixed(1)},${ys(y[i]).toFixed(1)} `;
      s += `<polyline class="${isLast ? "trace latest" : "trace"}" data-trial="${t.trial}" points="${p}" fill="none" stroke="${isLast ? "#1565c0" : "#9aa1ae"}" stroke-opacity="${isLast ? 1 : 0.55}" stroke-width="${isLast ? 1.8 : 1}"/>`;
      drawn++;
    });
    s += "</g>";
    const tr = S.trials.find((x) => x.seq === latest.seq);
    const ci = tr ? cfg.channels.indexOf(name) : -1;
    const lab = tr && ci >= 0 ? `trial ${tr.trial}: ${fmtAmp(tr.amplitude_uv[ci])} µV${tr.reject_reason[ci] ? " (rejected: " + esc(tr.reject_reason[ci]) + ")" : ""}` : `trial ${latest.trial}`;
    s += `<text class="lab" x="${m.l + 6}" y="${m.t + 12}">${esc(name)} · ${lab}</text>`;
    html += `<svg viewBox="0 0 ${W} ${H}" data-channel="${esc(name)}">${s}</svg>`;
  });
  el.innerHTML = html;
  return drawn;
}

function drawAmplitudes() {
  const cfg = S.config, el = $("amp"), c = chIndex();
  const ts = S.trials.slice(-MAX_PLOT);
  if (!ts.length) { el.innerHTML = '<div class="empty">no trial yet</div>'; return; }
  const W = 560, H = 230, m = {l: 52, r: 10, t: 12, b: 30};
  const amps = ts.map((t) => t.amplitude_uv[c]).filter((v) => fin(v) && v > 0);
  const lo = Math.pow(10, Math.floor(Math.log10(Math.max(1, Math.min(10, ...amps, cfg.detection_threshold_uv)))));
  const hi = Math.pow(10, Math.ceil(Math.log10(Math.max(100, ...amps) * 1.05)));
  const x0 = ts[0].trial, x1 = Math.max(ts[ts.length - 1].trial, x0 + 10);
  const xs = scale(x0 - 0.5, x1 + 0.5, m.l, W - m.r), ys = (v) => scale(Math.log10(lo), Math.log10(hi), H - m.b, m.t)(Math.log10(Math.max(lo, v)));
  const yt = []; for (let v = lo; v <= hi * 1.001; v *= 10) yt.push(v);
  let s = frame(W, H, m, xs, ys, niceTicks(x0, x1, 8).filter(Number.isInteger), yt, "trial", "µV (peak-to-peak)", (v) => v >= 1000 ? (v / 1000) + "k" : v);
  const thr = ys(cfg.detection_threshold_uv);
  s += `<line x1="${m.l}" x2="${W - m.r}" y1="${thr}" y2="${thr}" stroke="#2e7d32" stroke-dasharray="4 3"/><text x="${W - m.r - 2}" y="${thr - 3}" text-anchor="end">${cfg.detection_threshold_uv} µV</text>`;
  for (const t of ts) {
    const v = t.amplitude_uv[c], x = xs(t.trial);
    const st = stateOf(t, c);
    if (st === "rej") s += `<g class="pt rej" data-trial="${t.trial}">${cross(x, fin(v) ? ys(v) : H - m.b - 4, 3.5, "#c62828")}</g>`;
    else if (fin(v)) s += `<circle class="pt ${st}" data-trial="${t.trial}" cx="${x}" cy="${ys(v)}" r="3.4" fill="${st === "mep" ? "#1565c0" : "#fff"}" stroke="#1565c0"/>`;
  }
  el.innerHTML = `<svg viewBox="0 0 ${W} ${H}">${s}</svg>`;
}

function drawBackground() {
  const cfg = S.config, el = $("bg"), c = chIndex();
  const ts = S.trials.slice(-MAX_PLOT);
  if (!ts.length) { el.innerHTML = '<div class="empty">no trial yet</div>'; return; }
  const W = 560, H = 200, m = {l: 52, r: 10, t: 12, b: 30};
  const bgs = ts.map((t) => t.background_rms_uv[c]).filter(fin);
  const hi = Math.max(cfg.background_limit_uv * 1.5, ...bgs) * 1.05;
  const x0 = ts[0].trial, x1 = Math.max(ts[ts.length - 1].trial, x0 + 10);
  const xs = scale(x0 - 0.5, x1 + 0.5, m.l, W - m.r), ys = scale(0, hi, H - m.b, m.t);
  let s = frame(W, H, m, xs, ys, niceTicks(x0, x1, 8).filter(Number.isInteger), niceTicks(0, hi, 4), "trial", "background RMS µV");
  const lim = ys(cfg.background_limit_uv);
  s += `<line x1="${m.l}" x2="${W - m.r}" y1="${lim}" y2="${lim}" stroke="#c62828" stroke-dasharray="4 3"/><text x="${W - m.r - 2}" y="${lim - 3}" text-anchor="end">limit ${cfg.background_limit_uv} µV</text>`;
  let prev = null;
  for (const t of ts) {
    const v = t.background_rms_uv[c], x = xs(t.trial);
    if (!fin(v)) { if (t.reject_reason[c]) s += cross(x, H - m.b - 4, 3.5, "#c62828"); continue; }
    if (prev) s += `<line x1="${prev[0]}" y1="${prev[1]}" x2="${x}" y2="${ys(v)}" stroke="#cfd4dc"/>`;
    prev = [x, ys(v)];
  }
  for (const t of ts) {
    const v = t.background_rms_uv[c], x = xs(t.trial);
    if (!fin(v)) continue;
    s += t.reject_reason[c] ? `<g class="pt rej" data-trial="${t.trial}">${cross(x, ys(v), 3.5, "#c62828")}</g>` : `<circle class="pt" cx="${x}" cy="${ys(v)}" r="2.6" fill="#6b7385"/>`;
  }
  el.innerHTML = `<svg viewBox="0 0 ${W} ${H}">${s}</svg>`;
}

function drawEstimate() {
  const p = S.protocol, el = $("estimate"), hunt = $("hunt");
  let est = "";
  if (!p) el.innerHTML = '<div class="empty">no protocol: recording only</div>';
  else {
    const e = p.estimate || {};
    let h = `<div class="sub">${esc(p.name)} · ${p.n_pulses} pulse${p.n_pulses === 1 ? "" : "s"}${p.done ? " · <b>done</b>" : ""}</div>`;
    if (!p.estimate) h += `<div class="big">–</div><div class="sub">${esc(p.note || "no estimate yet")}</div>`;
    if (fin(e.threshold_pct_mso)) {
      est = `threshold ${e.threshold_pct_mso.toFixed(1)}`;
      const ci = fin(e.ci_low_pct_mso) && fin(e.ci_high_pct_mso) ? ` (${e.ci_level ? Math.round(e.ci_level * 100) + " % " : ""}CI ${e.ci_low_pct_mso.toFixed(1)}–${e.ci_high_pct_mso.toFixed(1)})` : "";
      h += `<div class="big" id="threshold">threshold ${e.threshold_pct_mso.toFixed(1)} %MSO</div><div class="sub">${ci}</div>`;
    } else if (p.estimate && "threshold_pct_mso" in e) { est = "threshold none"; h += `<div class="big" id="threshold">no threshold yet</div>`; }
    if (Array.isArray(e.hotspot_mm) && fin(e.hotspot_mm[0])) {
      est += (est ? "; " : "") + `hotspot ${e.hotspot_mm[0].toFixed(1)},${e.hotspot_mm[1].toFixed(1)}`;
      h += `<div class="big" id="hotspot">hotspot (${e.hotspot_mm[0].toFixed(1)}, ${e.hotspot_mm[1].toFixed(1)}) mm</div>`;
      if (fin(e.uncertainty_mm)) h += `<div class="sub">± ${e.uncertainty_mm.toFixed(1)} mm</div>`;
    }
    if (Array.isArray(e.cog_mm) && fin(e.cog_mm[0])) {
      est += (est ? "; " : "") + `cog ${e.cog_mm[0].toFixed(1)},${e.cog_mm[1].toFixed(1)}`;
      h += `<div class="sub" id="cog">centre of gravity (${e.cog_mm[0].toFixed(1)}, ${e.cog_mm[1].toFixed(1)}) mm</div>`;
    }
    if (e.message) h += `<div class="sub">${esc(e.message)}</div>`;
    const rows = Object.entries(e).filter(([k, v]) => (typeof v === "number" || typeof v === "boolean") && !/^(threshold_pct_mso|ci_low_pct_mso|ci_high_pct_mso)$/.test(k)).slice(0, 10);
    if (rows.length) h += "<table>" + rows.map(([k, v]) => `<tr><td>${esc(k)}</td><td>${typeof v === "number" ? (Number.isInteger(v) ? v : v.toFixed(2)) : v}</td></tr>`).join("") + "</table>";
    el.innerHTML = h;
  }
  document.body.dataset.estimate = est;
  // the hunt: intensity per trial, MEP or not, with the threshold estimate
  const ts = S.trials.slice(-MAX_PLOT).filter((t) => fin(t.intensity_pct_mso));
  if (!ts.length) { hunt.innerHTML = ""; return; }
  const c = chIndex(), W = 560, H = 170, m = {l: 52, r: 10, t: 12, b: 30};
  const ints = ts.map((t) => t.intensity_pct_mso);
  const e = p && p.estimate ? p.estimate : {};
  const ext = [e.ci_low_pct_mso, e.ci_high_pct_mso, e.threshold_pct_mso].filter(fin);
  const lo = Math.max(0, Math.min(...ints, ...ext) - 5), hi = Math.min(100, Math.max(...ints, ...ext) + 5);
  const x0 = ts[0].trial, x1 = Math.max(ts[ts.length - 1].trial, x0 + 10);
  const xs = scale(x0 - 0.5, x1 + 0.5, m.l, W - m.r), ys = scale(lo, hi, H - m.b, m.t);
  let s = frame(W, H, m, xs, ys, niceTicks(x0, x1, 8).filter(Number.isInteger), niceTicks(lo, hi, 4), "trial", "%MSO");
  if (fin(e.ci_low_pct_mso) && fin(e.ci_high_pct_mso)) s += `<rect x="${m.l}" width="${W - m.l - m.r}" y="${ys(e.ci_high_pct_mso)}" height="${Math.max(1, ys(e.ci_low_pct_mso) - ys(e.ci_high_pct_mso))}" fill="#fff3e0"/>`;
  if (fin(e.threshold_pct_mso)) s += `<line x1="${m.l}" x2="${W - m.r}" y1="${ys(e.threshold_pct_mso)}" y2="${ys(e.threshold_pct_mso)}" stroke="#b26a00" stroke-width="1.5"/>`;
  for (const t of ts) {
    const x = xs(t.trial), y = ys(t.intensity_pct_mso), st = stateOf(t, c);
    s += st === "rej" ? cross(x, y, 3.5, "#c62828") : `<circle cx="${x}" cy="${y}" r="3.4" fill="${st === "mep" ? "#1565c0" : "#fff"}" stroke="#1565c0"/>`;
  }
  hunt.innerHTML = `<div class="sub" style="margin-top:8px">intensity per trial (filled: MEP)</div><svg viewBox="0 0 ${W} ${H}">${s}</svg>`;
}

function drawMap() {
  const el = $("map"), c = chIndex();
  const pts = S.trials.filter((t) => fin(t.x_mm) && fin(t.y_mm));
  const e = S.protocol && S.protocol.estimate ? S.protocol.estimate : {};
  if (!pts.length) { el.innerHTML = '<div class="empty">no positions yet (markers with x_mm, y_mm fill the map)</div>'; return 0; }
  const W = 560, H = 380, m = {l: 52, r: 16, t: 12, b: 30};
  let xlo = Math.min(...pts.map((t) => t.x_mm)), xhi = Math.max(...pts.map((t) => t.x_mm));
  let ylo = Math.min(...pts.map((t) => t.y_mm)), yhi = Math.max(...pts.map((t) => t.y_mm));
  const span = Math.max(20, xhi - xlo, yhi - ylo) * 1.15, cx = (xlo + xhi) / 2, cy = (ylo + yhi) / 2;
  const pw = W - m.l - m.r, ph = H - m.t - m.b, k = Math.min(pw, ph) / span;
  const xs = (v) => m.l + pw / 2 + (v - cx) * k, ys = (v) => m.t + ph / 2 - (v - cy) * k;
  const x0 = cx - pw / 2 / k, x1 = cx + pw / 2 / k, y0 = cy - ph / 2 / k, y1 = cy + ph / 2 / k;
  let s = frame(W, H, m, xs, ys, niceTicks(x0, x1, 8), niceTicks(y0, y1, 6), "x mm", "y mm");
  const amps = pts.map((t) => t.amplitude_uv[c]).filter(fin);
  const amax = Math.max(100, ...amps);
  for (const t of pts) {
    const v = t.amplitude_uv[c], x = xs(t.x_mm), y = ys(t.y_mm);
    if (t.reject_reason[c] || !fin(v)) { s += cross(x, y, 3, "#9aa1ae"); continue; }
    const f = Math.sqrt(Math.max(0, v) / amax), r = 3 + 11 * f;
    const col = `hsl(${Math.round(50 - 50 * f)}, 90%, ${Math.round(62 - 22 * f)}%)`;
    s += `<circle class="site" data-trial="${t.trial}" cx="${x}" cy="${y}" r="${r.toFixed(1)}" fill="${col}" fill-opacity="0.75" stroke="#7a4a00" stroke-width="0.6"/>`;
  }
  if (Array.isArray(e.cog_mm) && fin(e.cog_mm[0])) { const x = xs(e.cog_mm[0]), y = ys(e.cog_mm[1]); s += `<path id="map-cog" d="M${x} ${y - 7}L${x + 7} ${y}L${x} ${y + 7}L${x - 7} ${y}Z" fill="none" stroke="#2e7d32" stroke-width="2"/><text class="lab" x="${x + 9}" y="${y + 4}">CoG</text>`; }
  if (Array.isArray(e.hotspot_mm) && fin(e.hotspot_mm[0])) {
    const x = xs(e.hotspot_mm[0]), y = ys(e.hotspot_mm[1]);
    if (fin(e.uncertainty_mm)) s += `<circle cx="${x}" cy="${y}" r="${Math.max(2, e.uncertainty_mm * k)}" fill="none" stroke="#1d2433" stroke-dasharray="3 3"/>`;
    s += `<path id="map-hotspot" d="M${x - 9} ${y}H${x + 9}M${x} ${y - 9}V${y + 9}" stroke="#1d2433" stroke-width="2.2"/><text class="lab" x="${x + 10}" y="${y - 6}">hotspot</text>`;
  }
  el.innerHTML = `<svg viewBox="0 0 ${W} ${H}">${s}</svg>`;
  return pts.length;
}

function drawTable() {
  const el = $("table"), c = chIndex();
  const ts = S.trials.slice(-12).reverse();
  if (!ts.length) { el.innerHTML = '<div class="empty">no trial yet</div>'; return; }
  let h = `<table id="trial-table"><tr><th>trial</th><th>time s</th><th>%MSO</th><th>x, y mm</th><th>${esc(S.channel || "")} µV</th><th>latency ms</th><th>background µV</th><th class="st" style="text-align:left">result</th></tr>`;
  for (const t of ts) {
    const st = stateOf(t, c);
    const res = st === "rej" ? "rejected: " + esc(t.reject_reason[c]) : st === "mep" ? "MEP" : "no MEP";
    h += `<tr class="${st}" data-trial="${t.trial}"><td>${t.trial}</td><td>${fmt(t.time_s, 2)}</td><td>${fmt(t.intensity_pct_mso, 0)}</td><td>${fin(t.x_mm) ? fmt(t.x_mm, 0) + ", " + fmt(t.y_mm, 0) : "–"}</td><td class="amp">${fmtAmp(t.amplitude_uv[c])}</td><td>${fmt(t.latency_ms[c], 1)}</td><td class="bg">${fmt(t.background_rms_uv[c], 1)}</td><td class="st">${res}</td></tr>`;
  }
  el.innerHTML = h + "</table>";
}

function drawStatus() {
  const st = S.status || {}, b = $("banner");
  let state = st.state || "loading";
  const lost = S.fails >= 2 || (S.lastOk && Date.now() - S.lastOk > 3000);
  if (lost) state = "disconnected";
  const lag = fin(st.lag_ms) ? st.lag_ms : null;
  const text = {
    running: `● receiving EMG · lag ${lag === null ? "–" : lag < 1000 ? lag.toFixed(0) + " ms" : (lag / 1000).toFixed(1) + " s"}`,
    waiting: "waiting for the EMG stream…",
    stalled: `⚠ EMG STALLED: no samples for ${lag === null ? "?" : (lag / 1000).toFixed(1)} s`,
    lost: "⚠ EMG STREAM LOST: waiting for it to come back",
    stopped: "■ session stopped",
    error: "✕ session stopped by an error: " + (st.error || ""),
    disconnected: "✕ NO CONTACT WITH MEPKIT (session ended or view stopped)",
    "no session": "no session attached",
  }[state] || state;
  b.textContent = text;
  b.className = state.replace(" ", "");
  document.body.dataset.state = state;
  document.body.className = ["lost", "error", "disconnected"].includes(state) ? "alarm" : state === "stalled" ? "warn" : "";
  document.title = (["stalled", "lost", "error", "disconnected"].includes(state) ? "⚠ " : "") + ((S.config && S.config.title) || "mepkit live");
  const n = (k) => fin(st[k]) ? st[k] : 0;
  $("stats").innerHTML = S.status ? `trials <b id="n-trials">${n("trials")}</b> · MEPs <b>${n("detected")}</b> · rejected <b>${n("rejected")}</b> · samples <b>${n("samples")}</b> · drops <b>${n("drops")}</b> in <b>${n("gaps")}</b> gaps` + (n("outages") ? ` · outages <b>${n("outages")}</b>` : "") + (n("view_dropped") ? ` · <span style="color:var(--red)">view skipped ${n("view_dropped")} trials</span>` : "") : "";
}

function render() {
  drawStatus();
  if (!S.config) return;
  $("title").textContent = S.config.title;
  const sel = $("channel"), chans = S.config.channels || [];
  if (sel.options.length !== chans.length) {
    sel.innerHTML = chans.map((c) => `<option>${esc(c)}</option>`).join("");
    S.channel = (S.config.trace_channels && S.config.trace_channels[0]) || chans[0] || null;
    if (S.channel) sel.value = S.channel;
  }
  // the heavy panels at most once a second (fast pulse trains arrive faster than that)
  if (!S.dirty || performance.now() - S.lastDraw < HEAVY_EVERY_MS) return;
  S.dirty = false; S.lastDraw = performance.now();
  const nTraces = drawTraces();
  drawAmplitudes(); drawBackground(); drawEstimate(); drawTable();
  const nMap = drawMap();
  const last = S.trials.length ? S.trials[S.trials.length - 1].trial : "";
  Object.assign(document.body.dataset, {trials: S.trials.length, lastTrial: last, traces: nTraces, mapPoints: nMap});
}

$("channel").addEventListener("change", (ev) => { S.channel = ev.target.value; S.dirty = true; S.lastDraw = -1e9; render(); });
poll();
</script>
</body>
</html>
"""

_CACHE: list[bytes] = []


def page_bytes() -> bytes:
    """The page, UTF-8 encoded (once)."""
    if not _CACHE:
        _CACHE.append(PAGE.encode("utf-8"))
    return _CACHE[0]
