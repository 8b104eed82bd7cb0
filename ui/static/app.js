// tally's dashboard. Plain JavaScript, no dependencies: everything the
// page needs is served by the node it came from.
//
// Every few seconds it reads ../v1/cluster (members, shards) and
// api/nodes (each member's cumulative request counts, latency buckets,
// raft ops, CPU; the cluster's hot and split counters). Rates and p99
// are differences between two answers, computed here, so the server
// keeps nothing per viewer. A watched counter streams from the SSE
// watch through fetch(), not EventSource, because EventSource cannot
// send the Authorization header a cluster with tokens needs.
"use strict";

const POLL_MS = 2000;
const HISTORY_MS = 5 * 60 * 1000; // what the rate plot spans
const P99_WINDOW_MS = 10 * 1000; // the latency quantile's window
const WATCH_POINTS = 2000;
const TOKEN_KEY = "tally.token";
const COLORS = ["#1f6feb", "#d9480f", "#2b8a3e", "#ae3ec9", "#e8590c", "#0b7285", "#c2255c", "#5c940d", "#862e9c", "#364fc7"];

const $ = (id) => document.getElementById(id);

// el builds an element; children are nodes or strings (always text:
// counter names and node ids are data, never markup).
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k.startsWith("data-")) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

function svgEl(tag, attrs) {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  return e;
}

// ---- token ----

function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

function authHeaders(extra) {
  const h = Object.assign({}, extra || {});
  const t = token();
  if (t) h["Authorization"] = "Bearer " + t;
  return h;
}

class AuthError extends Error {}

// api fetches a JSON answer; a 401 throws AuthError, other errors carry
// the API's message.
async function api(path, signal) {
  const resp = await fetch(path, { headers: authHeaders({ Accept: "application/json" }), cache: "no-store", signal });
  if (resp.status === 401) throw new AuthError("token needed");
  if (!resp.ok) throw new Error(path + ": " + (await errorText(resp)));
  return resp.json();
}

async function errorText(resp) {
  try {
    const body = await resp.json();
    if (body && body.error && body.error.message) return resp.status + " " + body.error.message;
  } catch (_) { /* not JSON */ }
  return String(resp.status);
}

function askToken(message) {
  stopPolling();
  stopWatch();
  $("main").hidden = true;
  $("forget").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  setStatus("");
  $("token").focus();
}

// ---- formatting ----

function fmtRate(v) {
  if (v === null || v === undefined || !isFinite(v)) return "–";
  if (v === 0) return "0";
  if (v < 9.95) return v.toFixed(1);
  return Math.round(v).toLocaleString("en-US");
}

function fmtSeconds(s) {
  if (s === null || s === undefined) return "–";
  if (typeof s === "string") return s;
  if (s < 1e-3) return (s * 1e6).toFixed(0) + " µs";
  if (s < 1) return (s * 1e3).toFixed(s < 0.01 ? 2 : 1) + " ms";
  return s.toFixed(2) + " s";
}

function fmtBytes(b) {
  if (!b) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (b >= 1024 && i < units.length - 1) { b /= 1024; i++; }
  return b.toFixed(b < 10 && i > 0 ? 1 : 0) + " " + units[i];
}

function fmtInt(v) { return Number(v).toLocaleString("en-US"); }

function fmtTime(iso) {
  const d = new Date(iso);
  return isNaN(d) ? "" : d.toLocaleTimeString();
}

function setStatus(text, bad) {
  const s = $("status");
  s.textContent = text;
  s.className = bad ? "bad" : "";
}

// ---- rates and quantiles from cumulative samples ----

// samples holds, per node id, its answers of the last HISTORY_MS
// (oldest first): {at, requests, raft_ops, cpu, latency}.
const samples = new Map();
// colors keep a node's color while it stays in the cluster.
const colors = new Map();

function colorOf(id) {
  if (!colors.has(id)) colors.set(id, COLORS[colors.size % COLORS.length]);
  return colors.get(id);
}

function record(n) {
  if (!n.at) return;
  let list = samples.get(n.id);
  if (!list) { list = []; samples.set(n.id, list); }
  const last = list[list.length - 1];
  if (last && last.at === n.at) return;
  // A node that restarted starts its counters again from zero: its
  // history before that cannot be subtracted from.
  if (last && (n.requests < last.requests || n.raft_ops < last.raft_ops)) list.length = 0;
  list.push({ at: n.at, requests: n.requests, raft_ops: n.raft_ops, cpu: n.cpu_seconds, latency: n.latency });
  while (list.length > 2 && list[0].at < n.at - HISTORY_MS - POLL_MS) list.shift();
}

// rate of field between samples a and b, per second.
function rate(a, b, field) {
  const dt = (b.at - a.at) / 1000;
  return dt > 0 ? Math.max(0, (b[field] - a[field]) / dt) : null;
}

// quantile q of the requests between two cumulative histograms, as
// Prometheus's histogram_quantile computes it: linear within the bucket
// the rank falls in. Beyond the last finite bucket it can only say "more
// than" that bound.
function quantile(q, older, newer) {
  if (!older || !newer || !newer.le || newer.le.length === 0) return null;
  const total = newer.count - (older.count || 0);
  if (total <= 0) return null;
  const rank = q * total;
  let prevBound = 0, prevCount = 0;
  for (let i = 0; i < newer.le.length; i++) {
    const c = newer.counts[i] - ((older.counts && older.counts[i]) || 0);
    if (c >= rank) {
      const inBucket = c - prevCount;
      const frac = inBucket > 0 ? (rank - prevCount) / inBucket : 1;
      return prevBound + (newer.le[i] - prevBound) * frac;
    }
    prevBound = newer.le[i];
    prevCount = c;
  }
  return "> " + fmtSeconds(prevBound);
}

// view is what the table shows of a node: rates over the last interval,
// p99 over the last P99_WINDOW_MS.
function view(id) {
  const list = samples.get(id) || [];
  if (list.length < 2) return {};
  const b = list[list.length - 1], a = list[list.length - 2];
  let w = list[0];
  for (const s of list) { if (s.at <= b.at - P99_WINDOW_MS) w = s; }
  if (w === b) w = a;
  return {
    requests: rate(a, b, "requests"),
    raft_ops: rate(a, b, "raft_ops"),
    cpu: rate(a, b, "cpu"),
    p99: quantile(0.99, w.latency, b.latency),
  };
}

// series is a node's rate of field over time: one point per interval.
function series(id, field) {
  const list = samples.get(id) || [];
  const out = [];
  for (let i = 1; i < list.length; i++) {
    const r = rate(list[i - 1], list[i], field);
    if (r !== null) out.push([list[i].at, r]);
  }
  return out;
}

// ---- plots ----

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

// plot draws lines ([{color, points: [[t, v]...]}]) over [t0, t1] into
// svg, sized to its width on the page; step draws a staircase (a counter
// holds its value until the next change).
function plot(svg, lines, t0, t1, opts) {
  const W = Math.max(200, Math.round(svg.getBoundingClientRect().width || 800));
  const H = Math.max(100, Math.round(svg.getBoundingClientRect().height || 200));
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.replaceChildren();
  const L = 64, R = 10, T = 10, B = 22;
  let lo = Infinity, hi = -Infinity;
  for (const l of lines) for (const [, v] of l.points) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  if (!isFinite(lo)) {
    svg.append(Object.assign(svgEl("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "empty" }), { textContent: opts.empty }));
    return;
  }
  // Grid lines at round values: a quarter of a round maximum for rates
  // (from zero), a round step for a counter's value (never below zero
  // for a counter that has not been).
  let step;
  if (opts.zero) { lo = 0; hi = niceMax(hi); step = hi / 4; }
  else {
    step = niceMax(Math.max(hi - lo, 3) / 4);
    lo = Math.floor(lo / step) * step;
    hi = Math.ceil(hi / step) * step;
    if (hi === lo) hi = lo + step;
  }
  const x = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R);
  const y = (v) => T + (1 - (v - lo) / (hi - lo)) * (H - T - B);
  for (let v = lo; v <= hi + step / 2; v += step) {
    svg.append(svgEl("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid" }));
    const label = svgEl("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end", class: "axis" });
    label.textContent = opts.zero ? fmtRate(v) : fmtInt(Math.round(v));
    svg.append(label);
  }
  const span = t1 - t0;
  for (let k = 0; k <= 5; k++) {
    const t = t0 + (span * k) / 5;
    const label = svgEl("text", { x: x(t), y: H - 6, "text-anchor": k === 0 ? "start" : k === 5 ? "end" : "middle", class: "axis" });
    const ago = Math.round((t1 - t) / 1000);
    label.textContent = ago === 0 ? "now" : ago >= 60 ? `−${(ago / 60).toFixed(ago % 60 ? 1 : 0)} min` : `−${ago} s`;
    svg.append(label);
  }
  for (const l of lines) {
    if (l.points.length === 0) continue;
    const pts = [];
    l.points.forEach(([t, v], i) => {
      if (opts.step && i > 0) pts.push(`${x(t).toFixed(1)},${y(l.points[i - 1][1]).toFixed(1)}`);
      pts.push(`${x(t).toFixed(1)},${y(v).toFixed(1)}`);
    });
    if (opts.step) pts.push(`${x(t1).toFixed(1)},${y(l.points[l.points.length - 1][1]).toFixed(1)}`);
    svg.append(svgEl("polyline", { points: pts.join(" "), stroke: l.color, class: "series" }));
  }
}

// ---- rendering ----

let lastCluster = null;
let lastNodes = null;

function badge(text, good, warn) {
  const cls = good.includes(text) ? "good" : warn.includes(text) ? "warn" : "bad";
  return el("span", { class: cls }, text || "?");
}

function renderMembers(cluster, nodes) {
  const stats = new Map((nodes ? nodes.nodes : []).map((n) => [n.id, n]));
  const tbody = $("members").tBodies[0];
  const rows = cluster.members.map((m) => {
    const st = stats.get(m.id);
    const v = view(m.id);
    const err = st ? [st.error, st.hot_error].filter(Boolean).join("; ") : "";
    const nodeCell = el("td", {}, el("span", { class: "swatch" }), m.id);
    nodeCell.firstChild.style.background = colorOf(m.id);
    if (m.id === cluster.node) nodeCell.append(el("span", { class: "note" }, " (this node)"));
    return el("tr", { "data-member": m.id },
      nodeCell,
      el("td", {}, m.http),
      el("td", {}, badge(m.state, ["active"], ["leaving", "left", ""])),
      el("td", {}, badge(m.health, ["alive"], ["suspect"])),
      el("td", { class: "num", "data-field": "requests" }, fmtRate(v.requests)),
      el("td", { class: "num", "data-field": "p99" }, fmtSeconds(v.p99)),
      el("td", { class: "num", "data-field": "raft_ops" }, fmtRate(v.raft_ops)),
      el("td", { class: "num" }, st && st.at ? String(st.shards_leading) : "–"),
      el("td", { class: "num" }, v.cpu === undefined || v.cpu === null ? "–" : (v.cpu * 100).toFixed(0) + " %"),
      el("td", { class: "num" }, st ? fmtBytes(st.rss_bytes) : "–"),
      el("td", { class: "bad" }, err));
  });
  tbody.replaceChildren(...rows);
  $("member-count").textContent = `(${cluster.members.length})`;
}

function renderShards(cluster) {
  const rows = cluster.shards.map((s) => el("tr", { "data-shard": String(s.id) },
    el("td", {}, String(s.id)),
    s.leader ? el("td", {}, s.leader) : el("td", { class: "bad" }, "none"),
    el("td", {}, s.replicas.join(", ")),
    el("td", { class: s.learners.length ? "warn" : "" }, s.learners.join(", ")),
    el("td", { class: "num" }, s.applied_index === undefined ? "–" : fmtInt(s.applied_index))));
  $("shards").tBodies[0].replaceChildren(...rows);
  const led = cluster.shards.filter((s) => s.leader).length;
  $("shard-count").textContent = `(${cluster.shards.length}, ${led} with a leader)`;
}

function renderHot(nodes) {
  const a = nodes.auto_split;
  $("autosplit").textContent = !a ? "" : a.enabled
    ? `Auto-split: a counter written over ${fmtInt(a.threshold)}/s for ${a.sustain_s} s is split ${a.split_to} ways.`
    : "Auto-split is off.";
  const hot = nodes.hot.map((h) => el("tr", {}, el("td", { class: "name" }, h.name), el("td", { class: "num" }, fmtRate(h.rate)), el("td", {}, h.node)));
  $("hot").tBodies[0].replaceChildren(...(hot.length ? hot : [el("tr", {}, el("td", { class: "note", colSpan: 3 }, "no counter is being written"))]));
  const splits = nodes.splits.map((s) => el("tr", {}, el("td", { class: "name" }, s.name), el("td", { class: "num" }, String(s.split)), el("td", {}, fmtTime(s.since))));
  $("splits").tBodies[0].replaceChildren(...(splits.length ? splits : [el("tr", {}, el("td", { class: "note", colSpan: 3 }, "none"))]));
  $("split-count").textContent = nodes.splits_total > nodes.splits.length
    ? `(${nodes.splits.length} of ${fmtInt(nodes.splits_total)})` : `(${nodes.splits_total})`;
  const events = nodes.split_events.map((e) => el("tr", {},
    el("td", {}, fmtTime(e.at)), el("td", { class: "name" }, e.name), el("td", { class: "num" }, String(e.to)),
    el("td", { class: e.error ? "bad" : "" }, e.error ? `${e.reason}: ${e.error}` : e.reason), el("td", {}, e.node)));
  $("split-events").tBodies[0].replaceChildren(...(events.length ? events : [el("tr", {}, el("td", { class: "note", colSpan: 5 }, "none"))]));
}

function renderPlot() {
  if (!lastCluster) return;
  const field = $("plot-metric").value;
  const now = Date.now();
  const lines = lastCluster.members.map((m) => ({ color: colorOf(m.id), points: series(m.id, field) }));
  plot($("ops-plot"), lines, now - HISTORY_MS, now, { zero: true, empty: "collecting samples…" });
  $("ops-legend").replaceChildren(...lastCluster.members.map((m) => {
    const sw = el("span", { class: "swatch" });
    sw.style.background = colorOf(m.id);
    return el("span", {}, sw, m.id);
  }));
}

// ---- polling ----

let pollTimer = null;
let polling = false;
let pollAbort = null;

async function poll() {
  pollTimer = null;
  pollAbort = new AbortController();
  try {
    const [cluster, nodes] = await Promise.allSettled([api("../v1/cluster", pollAbort.signal), api("api/nodes", pollAbort.signal)]);
    for (const r of [cluster, nodes]) if (r.status === "rejected" && r.reason instanceof AuthError) throw r.reason;
    if (cluster.status === "rejected") throw cluster.reason;
    lastCluster = cluster.value;
    lastNodes = nodes.status === "fulfilled" ? nodes.value : null;
    if (lastNodes) lastNodes.nodes.forEach(record);
    // Forget nodes that left the member list.
    for (const id of samples.keys()) if (!lastCluster.members.some((m) => m.id === id)) samples.delete(id);
    $("main").hidden = false;
    $("login").hidden = true;
    $("forget").hidden = !token();
    $("serving").textContent = "served by " + lastCluster.node;
    renderMembers(lastCluster, lastNodes);
    renderShards(lastCluster);
    if (lastNodes) renderHot(lastNodes);
    renderPlot();
    if (nodes.status === "rejected") setStatus("node metrics: " + nodes.reason.message, true);
    else setStatus("updated " + new Date().toLocaleTimeString());
  } catch (e) {
    if (e instanceof AuthError) {
      askToken(token() ? "That token was refused." : "");
      return;
    }
    if (e.name === "AbortError") return;
    setStatus("cannot reach the node: " + e.message, true);
  }
  if (polling) pollTimer = setTimeout(poll, POLL_MS);
}

function startPolling() {
  if (polling) return;
  polling = true;
  poll();
}

function stopPolling() {
  polling = false;
  if (pollTimer) clearTimeout(pollTimer);
  pollTimer = null;
  if (pollAbort) pollAbort.abort();
}

// ---- watching a counter ----

let watchGen = 0;
let watchAbort = null;
let watchPoints = [];
let watchName = "";

function stopWatch() {
  watchGen++;
  if (watchAbort) watchAbort.abort();
  watchAbort = null;
  $("watch-stop").hidden = true;
}

function startWatch(name) {
  stopWatch();
  const gen = ++watchGen;
  watchName = name;
  watchPoints = [];
  $("watch-box").hidden = false;
  $("watch-stop").hidden = false;
  $("watch-title").textContent = name;
  $("watch-value").textContent = "…";
  $("watch-meta").textContent = "connecting";
  renderWatch();
  watchLoop(name, gen);
}

function renderWatch() {
  const now = Date.now();
  const t0 = watchPoints.length ? Math.min(watchPoints[0][0], now - 10000) : now - 10000;
  plot($("watch-plot"), [{ color: COLORS[0], points: watchPoints }], t0, now, { step: true, empty: "waiting for the first value…" });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// watchLoop reads the watch stream and, when it ends, resumes after the
// last event's id, as EventSource would (Last-Event-ID).
async function watchLoop(name, gen) {
  let lastId = "";
  let retry = 1000;
  while (gen === watchGen) {
    const ctrl = new AbortController();
    watchAbort = ctrl;
    try {
      const headers = authHeaders({ Accept: "text/event-stream" });
      if (lastId) headers["Last-Event-ID"] = lastId;
      const resp = await fetch("../v1/counters/" + encodeURIComponent(name) + "/watch?interval=200ms", { headers, cache: "no-store", signal: ctrl.signal });
      if (resp.status === 401) { askToken("That token was refused."); return; }
      if (!resp.ok) {
        const msg = await errorText(resp);
        $("watch-meta").textContent = "error: " + msg;
        if (resp.status >= 400 && resp.status < 500) return; // asking again would get the same
      } else {
        $("watch-meta").textContent = "live";
        const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done || gen !== watchGen) break;
          buf += value.replace(/\r\n?/g, "\n");
          let end;
          while ((end = buf.indexOf("\n\n")) >= 0) {
            const block = buf.slice(0, end);
            buf = buf.slice(end + 2);
            const ev = parseEvent(block);
            if (ev.retry) retry = ev.retry;
            if (ev.id) lastId = ev.id;
            if (ev.data && gen === watchGen) onWatchEvent(ev.data);
          }
        }
        if (gen === watchGen) $("watch-meta").textContent = "stream ended; reconnecting";
      }
    } catch (e) {
      if (gen !== watchGen) return;
      $("watch-meta").textContent = "disconnected (" + e.message + "); reconnecting";
    }
    await sleep(retry);
  }
}

// parseEvent reads one server-sent event's fields.
function parseEvent(block) {
  const ev = { data: "" };
  for (const line of block.split("\n")) {
    if (line === "" || line.startsWith(":")) continue;
    const i = line.indexOf(":");
    const field = i < 0 ? line : line.slice(0, i);
    let value = i < 0 ? "" : line.slice(i + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") ev.data += (ev.data ? "\n" : "") + value;
    else if (field === "id") ev.id = value;
    else if (field === "retry" && /^\d+$/.test(value)) ev.retry = Number(value);
  }
  return ev;
}

function onWatchEvent(data) {
  let ev;
  try { ev = JSON.parse(data); } catch (_) { return; }
  $("watch-value").textContent = fmtInt(ev.value);
  $("watch-meta").textContent = `live · raft index ${fmtInt(ev.index)} · ${new Date().toLocaleTimeString()}`;
  watchPoints.push([Date.now(), ev.value]);
  if (watchPoints.length > WATCH_POINTS) watchPoints.splice(0, watchPoints.length - WATCH_POINTS);
  renderWatch();
}

// ---- wiring ----

document.addEventListener("DOMContentLoaded", () => {
  $("login").addEventListener("submit", (e) => {
    e.preventDefault();
    const t = $("token").value.trim();
    if (!t) return;
    sessionStorage.setItem(TOKEN_KEY, t);
    $("token").value = "";
    $("login").hidden = true;
    startPolling();
    if (watchName) startWatch(watchName);
  });
  $("forget").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    askToken("");
  });
  $("watch-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const name = $("watch-name").value.trim();
    if (name) startWatch(name);
  });
  $("watch-stop").addEventListener("click", () => {
    stopWatch();
    $("watch-meta").textContent = "stopped";
  });
  $("plot-metric").addEventListener("change", renderPlot);
  window.addEventListener("resize", () => { renderPlot(); if (!$("watch-box").hidden) renderWatch(); });
  startPolling();
});
