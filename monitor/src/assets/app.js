// The job UI: polls the JSON API and draws the job list, the selected job's graph,
// stages, sources and sinks, metrics and error; its cancel button posts a cancel.
"use strict";

const POLL_MS = 1000;
let selected = new URLSearchParams(location.search).get("job");

const $ = (id) => document.getElementById(id);
const fmt = (n) => (n === null || n === undefined ? "—" : Number(n).toLocaleString("en-US"));
const rate = (r) => (r >= 1e6 ? (r / 1e6).toFixed(1) + "M/s" : r >= 1e3 ? (r / 1e3).toFixed(1) + "K/s" : Math.round(r) + "/s");
const wm = (ms) => {
  if (ms === null || ms === undefined) return "—";
  if (ms <= -9223372036854775) return "-inf";
  if (ms >= 9223372036854775) return "+inf";
  return new Date(ms).toISOString().replace(".000Z", "Z");
};
const secs = (s) => (s < 60 ? s.toFixed(1) + " s" : Math.floor(s / 60) + "m " + String(Math.floor(s % 60)).padStart(2, "0") + "s");
const bytes = (b) => (b >= 1e9 ? (b / 1e9).toFixed(2) + " GB" : b >= 1e6 ? (b / 1e6).toFixed(1) + " MB" : b >= 1e3 ? (b / 1e3).toFixed(1) + " KB" : b + " B");

function cell(row, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  row.appendChild(td);
  return td;
}

function fillTable(id, rows, build) {
  const body = $(id).querySelector("tbody");
  body.replaceChildren();
  for (const r of rows) {
    const tr = document.createElement("tr");
    build(tr, r);
    body.appendChild(tr);
  }
}

function drawJobs(jobs) {
  $("no-jobs").hidden = jobs.length > 0;
  if (!selected && jobs.length) selected = jobs[0].id;
  fillTable("jobs", jobs, (tr, j) => {
    tr.dataset.jobId = j.id;
    if (j.id === selected) tr.className = "selected";
    cell(tr, j.name);
    const st = cell(tr, "");
    const badge = document.createElement("span");
    badge.className = "state " + j.state;
    badge.textContent = j.state;
    st.appendChild(badge);
    cell(tr, j.runner);
    cell(tr, secs(j.elapsed_sec), "num");
    tr.onclick = () => { selected = j.id; refresh(); };
  });
}

// Layers: a stage sits one column right of the furthest stage it reads.
function layout(stages) {
  const layer = new Map();
  const depth = (s, seen) => {
    if (layer.has(s.id)) return layer.get(s.id);
    if (seen.has(s.id)) return 0;
    seen.add(s.id);
    const d = s.inputs.length ? 1 + Math.max(...s.inputs.map((i) => depth(stages[i], seen))) : 0;
    layer.set(s.id, d);
    return d;
  };
  const rows = [];
  const pos = new Map();
  for (const s of stages) {
    const d = depth(s, new Set());
    rows[d] = (rows[d] || 0) + 1;
    pos.set(s.id, { x: 16 + d * 240, y: 16 + (rows[d] - 1) * 96 });
  }
  return pos;
}

const SVG = "http://www.w3.org/2000/svg";
function el(name, attrs, parent) {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (parent) parent.appendChild(e);
  return e;
}

function drawGraph(job) {
  const svg = $("graph");
  svg.replaceChildren();
  const marker = el("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto" }, el("defs", {}, svg));
  el("path", { d: "M0,0 L10,5 L0,10 z", fill: "#9aa6bb" }, marker);
  const pos = layout(job.stages);
  const W = 200, H = 70;
  let maxX = 0, maxY = 0;
  for (const s of job.stages) {
    const p = pos.get(s.id);
    for (const i of s.inputs) {
      const q = pos.get(i);
      if (!q) continue;
      const x1 = q.x + W, y1 = q.y + H / 2, x2 = p.x, y2 = p.y + H / 2;
      el("path", { class: "edge", "marker-end": "url(#arrow)", d: `M${x1},${y1} C${x1 + 20},${y1} ${x2 - 20},${y2} ${x2},${y2}` }, svg);
    }
  }
  for (const s of job.stages) {
    const p = pos.get(s.id);
    maxX = Math.max(maxX, p.x + W);
    maxY = Math.max(maxY, p.y + H);
    const failed = job.error_transform && s.transforms.some((t) => t === job.error_transform || job.error_transform.startsWith(t + "/") || t.startsWith(job.error_transform + "/"));
    const g = el("g", { class: `stage ${s.kind}${failed ? " failed" : ""}`, "data-stage": s.id, transform: `translate(${p.x},${p.y})` }, svg);
    el("rect", { width: W, height: H }, g);
    const title = el("title", {}, g);
    title.textContent = s.transforms.join("\n");
    const name = s.name.length > 28 ? "…" + s.name.slice(-27) : s.name;
    el("text", { x: 8, y: 16, class: "name" }, g).textContent = name;
    const more = s.transforms.length > 1 ? ` +${s.transforms.length - 1} fused` : "";
    el("text", { x: 8, y: 32 }, g).textContent = `${s.kind}${more}`;
    el("text", { x: 8, y: 48, class: "counts" }, g).textContent = `in ${fmt(s.elements_in)} · out ${fmt(s.elements_out)}`;
    const speed = job.state === "RUNNING" ? rate(Math.max(s.in_per_sec, s.out_per_sec)) : "";
    const w = s.output_watermark !== null && s.output_watermark !== undefined ? " · wm " + wm(s.output_watermark).slice(11) : "";
    el("text", { x: 8, y: 63 }, g).textContent = speed + w;
  }
  svg.setAttribute("width", maxX + 16);
  svg.setAttribute("height", maxY + 16);
}

function drawJob(job) {
  $("job").hidden = false;
  $("job-name").textContent = job.name;
  const st = $("job-state");
  st.textContent = job.state;
  st.className = "state " + job.state;
  $("job-meta").textContent = `${job.id} · ${job.runner} runner · ${job.streaming ? "streaming" : "batch"} · ${secs(job.elapsed_sec)}`;
  $("cancel").disabled = job.state !== "RUNNING";
  $("error").hidden = !job.error;
  $("error-text").textContent = job.error || "";
  $("error-transform").textContent = job.error_transform ? ` in '${job.error_transform}'` : "";
  drawGraph(job);
  fillTable("stages", job.stages, (tr, s) => {
    tr.dataset.stage = s.id;
    cell(tr, s.name);
    cell(tr, s.transforms.join(", "));
    cell(tr, fmt(s.elements_in), "num");
    cell(tr, fmt(s.elements_out), "num");
    cell(tr, job.state === "RUNNING" ? rate(Math.max(s.in_per_sec, s.out_per_sec)) : "—", "num");
    cell(tr, wm(s.input_watermark));
    cell(tr, wm(s.output_watermark));
    cell(tr, fmt(s.backlog), "num");
  });
  const io = job.sources.map((s) => ["read", s.transform, s.what, s.elements, s.bytes_total ? `${bytes(s.bytes)} of ${bytes(s.bytes_total)}` : bytes(s.bytes)])
    .concat(job.sinks.map((s) => ["write", s.transform, s.what, s.elements, s.files ? `${s.files} file(s)` : ""]));
  $("io-section").hidden = io.length === 0;
  fillTable("io", io, (tr, r) => { cell(tr, r[0]); cell(tr, r[1]); cell(tr, r[2]); cell(tr, fmt(r[3]), "num"); cell(tr, r[4]); });
  $("no-metrics").hidden = job.metrics.length > 0;
  fillTable("metrics", job.metrics, (tr, m) => {
    cell(tr, m.step);
    cell(tr, `${m.namespace}/${m.name}`);
    cell(tr, m.kind);
    cell(tr, m.distribution ? `count ${fmt(m.distribution[0])}, sum ${fmt(m.value)}, min ${fmt(m.distribution[1])}, max ${fmt(m.distribution[2])}` : fmt(m.value), "num");
  });
}

async function refresh() {
  try {
    const r = await fetch("/api/jobs");
    const { jobs } = await r.json();
    drawJobs(jobs);
    const job = jobs.find((j) => j.id === selected);
    if (job) drawJob(job); else $("job").hidden = true;
    $("refreshed").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (e) {
    $("refreshed").textContent = "cannot reach the job: " + e;
  }
}

$("cancel").onclick = async () => {
  if (!selected) return;
  $("cancel").disabled = true;
  await fetch(`/api/jobs/${encodeURIComponent(selected)}/cancel`, { method: "POST" });
  refresh();
};

refresh();
setInterval(refresh, POLL_MS);
