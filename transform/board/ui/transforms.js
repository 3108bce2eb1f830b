// The detbus transforms page: plain JavaScript over the JSON API under
// /api/transforms, with the helpers of common.js. The node samples the
// status board of its stream; the page asks it every second for the list
// of DETs and for the selected one with its history, and draws the
// charts as inline SVG. It never builds HTML from data: every name, hash
// and error is set as text.
"use strict";

const API = "/api/transforms/dets";
const POLL_MS = 1000;
const SVG = "http://www.w3.org/2000/svg";

const state = {
  dets: [], // the overview's DETs
  det: null, // the selected DET's id
};

// ---- small formatters

const short = (h) => (h ? h.slice(0, 12) : "");
const num = (n) => (n == null ? "" : Number(n).toLocaleString("en-US"));

// parseTime reads an RFC 3339 time with up to nanoseconds.
function parseTime(s) {
  return s ? Date.parse(s.replace(/(\.\d{3})\d+/, "$1")) : NaN;
}

function ago(seconds) {
  if (seconds == null) return "";
  if (seconds < 60) return `${seconds.toFixed(1)}s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)}m ago`;
  return `${Math.round(seconds / 3600)}h ago`;
}

function stateBadge(s) {
  return el("span", { class: `badge state-${s}` }, s);
}

// ---- the list

function renderList() {
  const ul = $("dets");
  ul.replaceChildren();
  for (const d of state.dets) {
    const divs = d.divergences.length;
    ul.append(
      el(
        "li",
        {
          dataset: { det: d.id, state: d.state },
          class: d.id === state.det ? "selected" : "",
          title: `${d.name}, generation ${d.generation}: ${d.state}, ${d.outputs} outputs`,
          onclick: () => select(d.id),
        },
        el("span", { class: `dot ${d.state}` }),
        el("span", { class: "name" }, d.name),
        d.generation > 1 ? el("span", { class: "gen" }, `g${d.generation}`) : null,
        divs ? el("span", { class: "diverged", title: "divergences" }, `✕${divs}`) : null,
        el("span", { class: "count", title: "instances" }, String(d.instances.length)),
      ),
    );
  }
  $("dets-empty").hidden = state.dets.length > 0;
}

function select(id) {
  state.det = id;
  history.replaceState(null, "", id ? "#" + enc(id) : location.pathname);
  renderList();
  return loadDET();
}

// ---- the selected DET

async function loadDET() {
  const id = state.det;
  if (!id) {
    $("det-view").hidden = true;
    $("empty-view").hidden = false;
    return;
  }
  let d;
  try {
    d = await request(`${API}/${enc(id)}`);
  } catch (e) {
    if (id === state.det) $("det-error").textContent = e.message;
    return;
  }
  if (id !== state.det) return;
  $("det-error").textContent = "";
  $("empty-view").hidden = true;
  $("det-view").hidden = false;
  renderHead(d);
  renderInstances(d);
  renderCharts(d);
  renderDivergences(d);
  renderSnapshot(d);
  renderRejections(d);
}

function renderHead(d) {
  $("det-name").textContent = d.name;
  $("det-gen").textContent = `generation ${d.generation}`;
  const st = $("det-state");
  st.textContent = d.state;
  st.className = `badge state-${d.state}`;
  $("det-output").textContent = d.output;
  const age = d.updated ? (Date.now() - parseTime(d.updated)) / 1000 : null;
  $("det-updated").textContent = age == null ? "no heartbeat yet" : `newest heartbeat ${ago(Math.max(0, age))}`;
  const stats = $("det-stats");
  stats.replaceChildren(
    term("outputs", num(d.outputs), "the most outputs an instance counts", "stat"),
    term("per second", d.outputs_per_s.toFixed(1), "outputs per second between the last two samples", "stat"),
    term("lag", num(d.lag), "the least lag of a live instance", "stat"),
    term("instances", d.instances.length, null, "stat"),
  );
}

function renderInstances(d) {
  const rows = d.instances.map((i) => {
    const why = i.stopped && i.stopped !== "stopped" ? el("span", { class: "why", title: i.stopped }, i.stopped) : null;
    let version = i.version;
    if (i.shadow) version += ` · shadow: ${i.matches} match, ${i.mismatches} differ`;
    return el(
      "tr",
      { dataset: { instance: i.instance, state: i.state }, class: i.state },
      el("td", { class: "instance", title: i.instance }, i.instance, why),
      el("td", { class: "state" }, stateBadge(i.state), i.divergence_count ? el("span", { class: "badge bad", title: "divergences" }, `✕${i.divergence_count}`) : null),
      el("td", { class: "version" }, version),
      el("td", { class: "num input-seq" }, num(i.input_seq)),
      el("td", { class: "num inputs" }, num(i.inputs)),
      el("td", { class: "num outputs" }, num(i.outputs)),
      el("td", { class: "num won" }, num(i.won)),
      el("td", { class: "num lost" }, num(i.lost)),
      el("td", { class: "num lag" }, num(i.lag)),
      el("td", { class: "num pending" }, num(i.pending)),
      el("td", { class: "heartbeat", title: i.updated || "" }, ago(i.heartbeat_age_s)),
    );
  });
  $("instances").replaceChildren(...rows);
}

function renderDivergences(d) {
  const n = d.divergences.length;
  const badge = $("divergence-count");
  badge.textContent = String(n);
  badge.className = "badge" + (n ? " bad" : "");
  $("divergences-empty").hidden = n > 0;
  $("divergence-table").hidden = n === 0;
  $("divergences").replaceChildren(
    ...d.divergences.map((v) =>
      el(
        "tr",
        { dataset: { instance: v.instance, index: v.index } },
        el("td", { class: "instance" }, v.instance),
        el("td", { class: "what" }, v.what),
        el("td", { class: "index" }, `#${v.index}`),
        el("td", { class: "input", title: v.input_esk ? `input ${v.input_esk}, stream seq ${v.input_seq}` : `input seq ${v.input_seq}` }, v.input_esk ? `${v.input_esk} · seq ${v.input_seq}` : `seq ${v.input_seq}`),
        el("td", { class: "hash own", title: v.own_sha256 }, short(v.own_sha256)),
        el("td", { class: "hash landed", title: v.landed_sha256 }, short(v.landed_sha256)),
      ),
    ),
  );
}

function renderSnapshot(d) {
  const s = d.snapshot;
  const badge = $("snapshot-state");
  const dl = $("snapshot");
  const claims = $("claims");
  $("snapshot-none").hidden = !!s;
  if (d.snapshot_error) {
    $("snapshot-none").hidden = false;
    $("snapshot-none").textContent = `Not readable: ${d.snapshot_error}`;
  } else {
    $("snapshot-none").textContent = "No snapshot stored.";
  }
  if (!s) {
    badge.textContent = "";
    badge.className = "badge";
    dl.replaceChildren();
    claims.replaceChildren();
    $("claims-esk").textContent = "";
    return;
  }
  const contradicted = s.contradicted_by.length > 0;
  badge.textContent = s.confirmed ? "confirmed" : contradicted ? "contradicted" : "unconfirmed";
  badge.className = "badge " + (s.confirmed ? "ok" : "bad");
  const f = (k, v, title) => term(k, v, title, "snapshot");
  const fields = [
    f("input seq", num(s.input_seq), "the last input applied"),
    f("outputs", num(s.outputs)),
    f("rejections", num(s.rejections)),
    f("version", s.version),
    f("sha256", short(s.hash) + "…", s.hash),
    f("taken", s.taken ? new Date(parseTime(s.taken)).toLocaleString() : ""),
    f("confirmed by", s.confirmed_by.join(", ") || "nobody"),
  ];
  if (s.object) fields.push(f("state object", s.object, "a state too large for the bucket, kept in the object bucket"));
  dl.replaceChildren(...fields);
  [...dl.querySelectorAll("dd")].forEach((dd) => (dd.title = dd.title || dd.textContent));
  $("claims-esk").textContent = s.claims_esk;
  claims.replaceChildren(
    ...s.claims.map((c) =>
      el("li", { class: c.agrees ? "agrees" : "contradicts", dataset: { by: c.by }, title: c.hash }, `${c.by || "(undecodable)"} — ${short(c.hash)}`),
    ),
  );
}

function renderRejections(d) {
  const r = d.rejections;
  const badge = $("rejection-count");
  badge.textContent = num(r.count);
  badge.className = "badge" + (r.count ? " bad" : "");
  $("rejections-esk").textContent = r.esk;
  $("rejections").replaceChildren(
    ...r.recent.map((x) =>
      rejectionItem(
        { dataset: { index: x.position.index } },
        x.input.esk ? `${x.input.esk}#${x.input.index}` : "?",
        { position: x.position, data: x.data },
        x.input.esk ? `input seq ${x.input.seq}: ${x.error}` : x.error,
      ),
    ),
  );
  if (r.error) $("rejections").prepend(el("li", { class: "reason" }, `Not readable: ${r.error}`));
}

// ---- charts

function svgEl(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  if (text != null) e.textContent = String(text);
  return e;
}

// niceMax rounds a chart's top up to 1, 2 or 5 times a power of ten.
function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

const W = 320;
const H = 120;
const PAD = { l: 38, r: 6, t: 8, b: 16 };

// lineChart draws points [[ms, value]] over at least the last minute.
function lineChart(svg, points, cls, fmt) {
  svg.replaceChildren();
  const x0 = PAD.l;
  const x1 = W - PAD.r;
  const y0 = H - PAD.b;
  const y1 = PAD.t;
  svg.append(svgEl("line", { class: "axis", x1: x0, y1: y0, x2: x1, y2: y0 }), svgEl("line", { class: "axis", x1: x0, y1: y1, x2: x0, y2: y0 }));
  if (points.length === 0) {
    svg.append(svgEl("text", { x: (x0 + x1) / 2, y: H / 2, "text-anchor": "middle" }, "no samples yet"));
    return;
  }
  const tEnd = points[points.length - 1][0];
  const tStart = Math.min(points[0][0], tEnd - 60e3);
  const top = niceMax(Math.max(...points.map((p) => p[1])));
  const x = (t) => x0 + ((t - tStart) / Math.max(1, tEnd - tStart)) * (x1 - x0);
  const y = (v) => y0 - (v / top) * (y0 - y1);
  const line = points.map((p, i) => `${i ? "L" : "M"}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(" ");
  const area = `${line} L${x(tEnd).toFixed(1)},${y0} L${x(points[0][0]).toFixed(1)},${y0} Z`;
  svg.append(
    svgEl("path", { class: "area", d: area }),
    svgEl("path", { class: `line ${cls}`, d: line }),
    svgEl("text", { x: x0 - 4, y: y1 + 8, "text-anchor": "end" }, fmt(top)),
    svgEl("text", { x: x0 - 4, y: y0, "text-anchor": "end" }, "0"),
    svgEl("text", { x: x0, y: H - 3 }, `-${Math.round((tEnd - tStart) / 1000)}s`),
    svgEl("text", { x: x1, y: H - 3, "text-anchor": "end" }, "newest"),
  );
}

// barChart draws one bar per item {name, value, cls}.
function barChart(svg, items) {
  svg.replaceChildren();
  if (items.length === 0) {
    svg.append(svgEl("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, "no instances"));
    return;
  }
  const top = Math.max(1, ...items.map((i) => i.value));
  const rowH = Math.min(24, (H - 4) / items.length);
  const x0 = 84;
  const x1 = W - 54;
  items.forEach((it, k) => {
    const yy = 2 + k * rowH;
    const g = svgEl("g", { "data-instance": it.name });
    const name = it.name.length > 12 ? it.name.slice(0, 11) + "…" : it.name;
    g.append(
      svgEl("text", { class: "label", x: x0 - 6, y: yy + rowH * 0.65, "text-anchor": "end" }, name),
      svgEl("rect", { class: `bar ${it.cls}`, x: x0, y: yy + rowH * 0.15, height: rowH * 0.7, width: Math.max(1, ((x1 - x0) * it.value) / top) }),
      svgEl("text", { class: "value", x: x1 + 4, y: yy + rowH * 0.65 }, num(it.value)),
    );
    g.append(svgEl("title", {}, `${it.name}: ${it.value} outputs won`));
    svg.append(g);
  });
}

function renderCharts(d) {
  const h = d.history.map((s) => ({ ...s, ms: parseTime(s.t) }));
  lineChart($("chart-rate"), h.map((s) => [s.ms, s.outputs_per_s]), "rate", (v) => v.toLocaleString("en-US"));
  lineChart($("chart-lag"), h.map((s) => [s.ms, s.lag]), "lag", (v) => v.toLocaleString("en-US"));
  $("rate-now").textContent = `${d.outputs_per_s.toFixed(1)}/s`;
  $("lag-now").textContent = num(d.lag);
  barChart(
    $("chart-wins"),
    d.instances.map((i) => ({ name: i.instance, value: i.won, cls: i.state })),
  );
}

// ---- polling

async function poll() {
  try {
    const o = await request(API);
    state.dets = o.transforms;
    $("applied").textContent = `stream ${o.stream}`;
    if (state.det && !state.dets.some((d) => d.id === state.det)) state.det = null;
    if (!state.det && state.dets.length) {
      const want = decodeURIComponent(location.hash.slice(1));
      state.det = state.dets.some((d) => d.id === want) ? want : state.dets[0].id;
    }
    renderList();
    await loadDET();
    if (o.error) setStatus("down", "the node cannot read the status board: " + o.error);
    else setStatus("live", "live");
  } catch (e) {
    setStatus("down", e.message);
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

document.addEventListener("DOMContentLoaded", poll);
