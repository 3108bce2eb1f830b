// The detbus log browser: plain JavaScript over the JSON API under
// /api/log and its Server-Sent Events stream of an ESK's new events, with
// the helpers of common.js. It never builds HTML from data: every ESK,
// header and payload is set as text.
"use strict";

const API = "/api/log";
const ESK_PAGE = 100;
const PAGE = 50;
// A page that follows the ESK's new events keeps at most MAX_ROWS rows.
const MAX_ROWS = 500;

const api = (path, opts) => request(API + path, opts);
const epath = (esk) => `/esks/${enc(esk)}`;

const state = {
  prefix: "",
  next: null, // the ESK the next page of the list starts after, null when none
  esk: null, // the selected ESK
  count: 0, // its events, as last heard
  from: 0, // the index of the first event shown
  events: [], // the events shown, in index order
  following: false, // the page shows the ESK's last event, so new ones are appended
  selected: null, // the index of the event whose detail shows
  live: null, // the EventSource of the selected ESK's new events
};

function fmtTime(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return d.toLocaleTimeString(undefined, { hour12: false }) + "." + String(d.getMilliseconds()).padStart(3, "0");
}

// hlcText is an event's HLC time as the table shows it: the wall time,
// and the logical counter when it is not 0.
function hlcText(ev) {
  const logical = Number(ev.hlc.split(".")[1] || 0);
  return fmtTime(ev.time) + (logical ? ` +${logical}` : "");
}

function relative(iso) {
  const s = Math.round((Date.now() - new Date(iso).getTime()) / 1e3);
  if (s < 60) return `${Math.max(s, 0)}s ago`;
  if (s < 3600) return `${Math.round(s / 60)}m ago`;
  if (s < 86400) return `${Math.round(s / 3600)}h ago`;
  return `${Math.round(s / 86400)}d ago`;
}

// preview is a payload as one line of the table.
function preview(ev) {
  switch (ev.format) {
    case "json":
    case "msgpack":
      return compact(ev.json);
    case "text":
      return ev.text.length > 200 ? ev.text.slice(0, 200) : ev.text;
    case "bytes":
      return ev.hex.slice(0, 96).replace(/(..)/g, "$1 ").trim();
    default:
      return "(empty)";
  }
}

// hexDump shows bytes as offset, hex and printable ASCII, 16 to a line.
function hexDump(hex) {
  const lines = [];
  for (let off = 0; off < hex.length / 2; off += 16) {
    const chunk = hex.slice(off * 2, off * 2 + 32);
    const bytes = chunk.match(/../g) || [];
    const ascii = bytes.map((b) => {
      const c = parseInt(b, 16);
      return c >= 0x20 && c < 0x7f ? String.fromCharCode(c) : ".";
    });
    lines.push(`${off.toString(16).padStart(8, "0")}  ${bytes.join(" ").padEnd(47)}  ${ascii.join("")}`);
  }
  return lines.join("\n");
}

// ---- the list of ESKs

async function loadESKs(reset) {
  if (reset) {
    state.next = null;
    $("esks").replaceChildren();
  }
  const q = new URLSearchParams({ limit: ESK_PAGE });
  if (state.prefix) q.set("prefix", state.prefix);
  if (!reset && state.next) q.set("after", state.next);
  const body = await api(`/esks?${q}`);
  const ul = $("esks");
  for (const e of body.esks) {
    ul.append(
      el(
        "li",
        { dataset: { esk: e.esk }, class: e.esk === state.esk ? "selected" : "", title: e.last_time ? `${e.esk}: last event ${e.last_time} at seq ${e.last_seq}` : e.esk, onclick: () => selectESK(e.esk) },
        el("span", { class: "name" }, e.esk),
        e.last_time ? el("span", { class: "last" }, relative(e.last_time)) : null,
        el("span", { class: "count", title: "events" }, String(e.count)),
      ),
    );
  }
  state.next = body.more ? body.next : null;
  $("more-esks").hidden = !body.more;
  const what = state.prefix ? `${body.total} starting with “${state.prefix}”` : `${body.total}`;
  $("esk-total").textContent = `${what} of ${body.log.esks} ESKs`;
  $("applied").textContent = `log: ${body.log.events} events, head at seq ${body.log.last_seq}`;
  $("esks-msg").textContent = "";
}

function markSelected() {
  for (const li of $("esks").children) li.classList.toggle("selected", li.dataset.esk === state.esk);
}

// ---- an ESK's events

async function selectESK(name) {
  if (state.live) state.live.close();
  state.live = null;
  state.esk = name;
  state.selected = null;
  location.hash = enc(name);
  markSelected();
  $("empty-view").hidden = true;
  $("esk-view").hidden = false;
  $("esk-name").textContent = name;
  showDetail(null);
  await loadPage({});
  follow();
}

// loadPage shows the page that where names: {from: index}, {seq: stream
// position}, or the last page.
async function loadPage(where) {
  const q = new URLSearchParams({ limit: PAGE });
  if (where.from !== undefined) q.set("from", where.from);
  if (where.seq !== undefined) q.set("seq", where.seq);
  const body = await api(`${epath(state.esk)}/events?${q}`);
  if (body.esk !== state.esk) return; // another ESK was selected meanwhile
  state.count = body.count;
  state.from = body.from;
  state.events = body.events;
  state.following = !body.more_after;
  renderEvents();
  if (where.from !== undefined && body.events.length === 0 && body.count > 0) {
    showMsg("page-msg", `no event at index ${where.from}: ${state.esk} has ${body.count}`, false);
  } else if (where.seq !== undefined && body.events.length > 0) {
    const first = body.events[0];
    showMsg("page-msg", first.seq === Number(where.seq) ? `the event at position ${where.seq} is index ${first.index}` : `the first event at or after position ${where.seq} is index ${first.index}, at position ${first.seq}`, true);
  } else {
    $("page-msg").textContent = "";
  }
}

function renderStats() {
  const stats = $("esk-stats");
  stats.replaceChildren(term("events", state.count));
  const last = state.events[state.events.length - 1];
  if (state.events.length) stats.append(term("showing", `${state.from}–${last.index}`));
  const badge = $("esk-follow");
  if (state.following) {
    badge.textContent = "following";
    badge.className = "badge live";
  } else {
    const behind = state.count - (state.from + state.events.length);
    badge.textContent = `${behind} later`;
    badge.className = "badge behind";
  }
  $("page-prev").disabled = $("page-first").disabled = state.from === 0;
  $("page-next").disabled = $("page-last").disabled = state.following;
}

function eventRow(ev) {
  return el(
    "tr",
    {
      dataset: { index: ev.index, seq: ev.seq, format: ev.format },
      class: (ev.index === state.selected ? "selected " : "") + (ev.truncated ? "truncated" : ""),
      onclick: () => selectEvent(ev.index),
    },
    el("td", { class: "index" }, String(ev.index)),
    el("td", { class: "seq" }, String(ev.seq)),
    el("td", { class: ev.hlc_header ? "time" : "time stored-time", title: `${ev.time}, HLC ${ev.hlc}${ev.hlc_header ? "" : " (the stored time: no HLC header)"}${ev.clamped ? "; its HLC header lay too far from the stored time" : ""}` }, hlcText(ev)),
    el("td", { class: "stored", title: ev.stored }, fmtTime(ev.stored)),
    el("td", { class: "payload", title: `${ev.format}, ${ev.size} bytes` }, preview(ev)),
  );
}

function renderEvents() {
  const tb = $("events");
  tb.replaceChildren(...state.events.map(eventRow));
  $("events-empty").hidden = state.events.length > 0;
  renderStats();
}

// ---- new events, live

function follow() {
  const name = state.esk;
  const q = new URLSearchParams();
  const last = state.events[state.events.length - 1];
  if (state.following && last) q.set("after", last.seq);
  else if (state.count === 0) q.set("after", 0);
  const es = new EventSource(`${API}${epath(name)}/live?${q}`);
  state.live = es;
  setStatus("connecting", "connecting");
  es.addEventListener("ready", () => setStatus("live", "live"));
  es.addEventListener("event", (m) => {
    if (state.esk !== name) return;
    arrived(JSON.parse(m.data));
  });
  es.addEventListener("failed", (m) => {
    setStatus("down", JSON.parse(m.data).error);
  });
  es.onerror = () => {
    if (es.readyState === EventSource.CLOSED) {
      setStatus("down", "the live stream closed: reload to follow again");
      return;
    }
    setStatus("connecting", "reconnecting");
    // A 401 is not an event stream: ask the API, whose 401 reloads the page.
    api("/esks?limit=1").catch(() => {});
  };
}

function arrived(ev) {
  state.count = Math.max(state.count, ev.index + 1);
  const last = state.events[state.events.length - 1];
  if (state.following && (!last || ev.index === last.index + 1)) {
    state.events.push(ev);
    const tb = $("events");
    const row = eventRow(ev);
    row.classList.add("flash");
    tb.append(row);
    while (state.events.length > MAX_ROWS) {
      state.events.shift();
      tb.firstChild.remove();
      state.from++;
    }
    $("events-empty").hidden = true;
  } else if (state.following && last && ev.index > last.index + 1) {
    state.following = false; // a gap: the page no longer ends at the ESK's last event
  }
  renderStats();
  const li = $("esks").querySelector(`li[data-esk="${CSS.escape(state.esk)}"] .count`);
  if (li) li.textContent = String(state.count);
}

// ---- one event

function selectEvent(index) {
  state.selected = index;
  for (const tr of $("events").children) tr.classList.toggle("selected", Number(tr.dataset.index) === index);
  showDetail(state.events.find((e) => e.index === index) || null);
}

function showDetail(ev) {
  $("event-detail").hidden = !ev;
  $("detail-empty").hidden = !!ev;
  if (!ev) return;
  $("event-detail").dataset.index = ev.index;
  $("detail-pos").textContent = `${state.esk}#${ev.index}`;
  $("detail-format").textContent = ev.format;
  const f = $("detail-fields");
  f.replaceChildren(
    term("index", ev.index, "", "field"),
    term("seq", ev.seq, "the position in the log's total order", "field"),
    term("hlc", ev.hlc, ev.hlc_header ? "from the Detbus-Hlc header" : "the stored time: the event has no usable HLC header", "field"),
    term("time", ev.time, "", "field"),
    term("stored", ev.stored, "", "field"),
    term("content type", ev.content_type || "(none: JSON)", "", "field"),
    term("size", `${ev.size} bytes`, "", "field"),
  );
  renderJSON($("detail-headers"), ev.headers);
  $("detail-problem").textContent = ev.problem || (ev.truncated ? `the first ${ev.hex ? ev.hex.length / 2 : (ev.text || "").length} of ${ev.size} bytes` : "");
  const pre = $("detail-payload");
  pre.dataset.format = ev.format;
  if (ev.format === "json" || ev.format === "msgpack") renderJSON(pre, ev.json);
  else if (ev.format === "text") pre.textContent = ev.text;
  else if (ev.format === "bytes") pre.textContent = hexDump(ev.hex);
  else pre.textContent = "(empty)";
  $("detail-whole").hidden = !ev.truncated;
}

async function loadWhole() {
  const index = state.selected;
  const ev = await api(`${epath(state.esk)}/events/${index}`);
  if (state.selected === index) showDetail(ev);
}

// ---- wiring

// guarded runs an action, showing what it throws in the message msgId.
function guarded(msgId, action) {
  return (e) => {
    if (e) e.preventDefault();
    action().catch((err) => showMsg(msgId, err.message, false));
  };
}

function start() {
  $("esk-filter").addEventListener(
    "submit",
    guarded("esks-msg", async () => {
      state.prefix = $("esk-prefix").value.trim();
      await loadESKs(true);
    }),
  );
  $("more-esks").addEventListener("click", guarded("esks-msg", () => loadESKs(false)));
  $("page-first").addEventListener("click", guarded("page-msg", () => loadPage({ from: 0 })));
  $("page-prev").addEventListener("click", guarded("page-msg", () => loadPage({ from: Math.max(0, state.from - PAGE) })));
  $("page-next").addEventListener("click", guarded("page-msg", () => loadPage({ from: state.from + state.events.length })));
  $("page-last").addEventListener("click", guarded("page-msg", () => loadPage({})));
  $("jump-index").addEventListener("submit", guarded("page-msg", () => loadPage({ from: $("jump-index-value").value || 0 })));
  $("jump-seq").addEventListener("submit", guarded("page-msg", () => loadPage({ seq: $("jump-seq-value").value || 1 })));
  $("detail-whole").addEventListener("click", guarded("page-msg", loadWhole));
  setStatus("connecting", "select an ESK to follow");
  const wanted = decodeURIComponent(location.hash.slice(1));
  loadESKs(true)
    .then(() => {
      if (wanted) return selectESK(wanted);
      setStatus("live", "select an ESK to follow");
    })
    .catch((e) => {
      showMsg("esks-msg", e.message, false);
      setStatus("down", e.message);
    });
}

start();
