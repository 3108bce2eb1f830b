// The detbus kv browser UI: plain JavaScript over the JSON API under
// /api/kv and its Server-Sent Events stream, with the helpers of
// common.js. It never builds HTML from data: every key, value and reason
// is set as text.
"use strict";

const API = "/api/kv";
const PAGE = 100;

// The ops each CRDT takes, and the inputs each op needs.
const OPS = {
  lww: { set: ["value"], delete: [] },
  mvreg: { set: ["value"] },
  orset: { add: ["element"], remove: ["element"] },
  counter: { incr: ["delta"] },
  map: { set: ["field", "value"], incr: ["field", "delta"], remove: ["field"] },
};

const state = {
  tables: new Map(), // name -> table
  table: null, // the selected table's name
  keys: [], // loaded keys of the selected table, sorted
  more: false,
  after: "",
  key: null, // the selected key
  applied: 0,
};

// request, el, renderJSON and the other helpers are in common.js.
const api = (path, opts) => request(API + path, opts);

// ---- tables

async function loadTables() {
  const body = await api("/tables");
  state.tables = new Map(body.tables.map((t) => [t.name, t]));
  setApplied(body.applied);
  renderTables();
  if (state.table) renderTableHead();
}

function setApplied(seq) {
  if (seq > state.applied) state.applied = seq;
  $("applied").textContent = state.applied ? `applied through seq ${state.applied}` : "";
}

function renderTables() {
  const ul = $("tables");
  ul.replaceChildren();
  for (const t of state.tables.values()) {
    const li = el(
      "li",
      { dataset: { table: t.name }, class: t.name === state.table ? "selected" : "", title: `${t.name}: ${t.crdt}`, onclick: () => selectTable(t.name) },
      el("span", { class: "name" }, t.name),
      el("span", { class: "badge" }, t.crdt),
      el("span", { class: "count" }, String(t.keys)),
      t.rejected ? el("span", { class: "rejected", title: "rejected ops" }, `✕${t.rejected}`) : null,
    );
    ul.append(li);
  }
}

function renderTableHead() {
  const t = state.tables.get(state.table);
  if (!t) return;
  $("table-name").textContent = t.name;
  $("table-crdt").textContent = t.crdt;
  const stats = $("table-stats");
  stats.replaceChildren();
  const stat = (k, v, title) => stats.append(term(k, v, title));
  stat("keys", t.keys);
  stat("ops", t.ops);
  stat("rejected", t.rejected);
  stat("declared", `${t.declared.esk}#${t.declared.index}`, `stream seq ${t.declared.seq}`);
}

async function selectTable(name) {
  const changed = name !== state.table;
  state.table = name;
  if (changed) {
    state.key = null;
    $("key-detail").hidden = true;
    $("key-after").value = "";
    state.after = "";
  }
  history.replaceState(null, "", "#" + enc(name));
  $("empty-view").hidden = true;
  $("table-view").hidden = false;
  renderTables();
  renderTableHead();
  setupOpForm(changed);
  await loadKeys(state.after);
}

// ---- keys

async function loadKeys(after) {
  const name = state.table;
  const page = await api(`/tables/${enc(name)}/keys?values=true&limit=${PAGE}&after=${enc(after)}`);
  if (name !== state.table) return;
  state.keys = [];
  $("keys").replaceChildren();
  state.after = after;
  (page.values || []).forEach((v) => {
    state.keys.push(v.key);
    $("keys").append(keyRow(v));
  });
  state.more = page.more;
  $("more-keys").hidden = !page.more;
  $("keys-empty").hidden = state.keys.length > 0;
  if (state.key && state.keys.includes(state.key)) markSelectedRow();
}

function keyRow(v) {
  return el(
    "tr",
    { dataset: { key: v.key }, onclick: () => selectKey(v.key) },
    el("td", { class: "key", title: v.key }, v.key),
    el("td", { class: "value" }, compact(v.value)),
  );
}

function rowFor(key) {
  for (const tr of $("keys").children) if (tr.dataset.key === key) return tr;
  return null;
}

// upsertRow shows a changed key in the loaded page: replaces its row, or
// inserts it in order when it falls inside the loaded range. A key that
// holds no value any more leaves the list, as the API lists only keys that
// hold one.
function upsertRow(v) {
  const old = rowFor(v.key);
  if (!v.exists) {
    if (old) {
      old.remove();
      state.keys = state.keys.filter((k) => k !== v.key);
      $("keys-empty").hidden = state.keys.length > 0;
    }
    return;
  }
  const row = keyRow(v);
  if (old) {
    if (old.classList.contains("selected")) row.classList.add("selected");
    old.replaceWith(row);
  } else {
    if (v.key <= state.after) return;
    const last = state.keys[state.keys.length - 1];
    if (state.more && last !== undefined && v.key > last) return;
    let i = state.keys.findIndex((k) => k > v.key);
    if (i < 0) i = state.keys.length;
    state.keys.splice(i, 0, v.key);
    const tbody = $("keys");
    tbody.insertBefore(row, tbody.children[i] || null);
    $("keys-empty").hidden = true;
  }
  row.classList.add("flash");
}

function selectKey(key) {
  state.key = key;
  $("op-key").value = key;
  markSelectedRow();
  return refreshDetail();
}

// refreshDetail reads the selected key, with its CRDT internals.
async function refreshDetail() {
  if (!state.key) return;
  try {
    showValue(await api(`/tables/${enc(state.table)}/keys/${enc(state.key)}`));
  } catch (e) {
    showMsg("op-msg", e.message, false);
  }
}

function markSelectedRow() {
  for (const tr of $("keys").children) tr.classList.toggle("selected", tr.dataset.key === state.key);
}

function showValue(v) {
  if (v.table !== state.table || v.key !== state.key) return;
  $("key-detail").hidden = false;
  $("detail-key").textContent = v.key;
  const ex = $("detail-exists");
  ex.textContent = v.exists ? "has a value" : "no value";
  ex.className = "badge" + (v.exists ? "" : " gone");
  renderJSON($("detail-value"), v.value);
  renderJSON($("detail-meta"), v.meta);
}

// ---- writes

function setupOpForm(reset) {
  const t = state.tables.get(state.table);
  if (!t) return;
  const kinds = Object.keys(OPS[t.crdt] || {});
  const sel = $("op-kind");
  const prev = sel.value;
  sel.replaceChildren(...kinds.map((k) => el("option", { value: k }, k)));
  if (!reset && kinds.includes(prev)) sel.value = prev;
  if (reset) {
    $("op-msg").textContent = "";
    $("op-key").value = "";
  }
  updateOpFields();
}

function updateOpFields() {
  const t = state.tables.get(state.table);
  const need = (t && OPS[t.crdt][$("op-kind").value]) || [];
  for (const label of document.querySelectorAll("#op-form [data-field]")) {
    label.hidden = !need.includes(label.dataset.field);
  }
}

async function submitOp(ev) {
  ev.preventDefault();
  const t = state.tables.get(state.table);
  const kind = $("op-kind").value;
  const need = OPS[t.crdt][kind];
  const op = { op: kind, key: $("op-key").value };
  try {
    if (need.includes("field")) op.field = $("op-field").value;
    if (need.includes("element")) op.element = $("op-element").value;
    if (need.includes("delta")) {
      const d = $("op-delta").value.trim();
      if (!/^-?\d+$/.test(d)) throw new Error("delta must be a whole number");
      op.delta = Number(d);
    }
    if (need.includes("value")) {
      try {
        op.value = JSON.parse($("op-value").value);
      } catch {
        throw new Error('value must be JSON: quote text, as in "hello"');
      }
    }
  } catch (e) {
    showMsg("op-msg", e.message, false);
    return;
  }
  await submitting("op-submit", "op-msg", async () => {
    const r = await api(`/tables/${enc(t.name)}/ops`, { body: op });
    showMsg("op-msg", `applied at ${posLabel(r.position)}`, true);
    setApplied(r.position.seq);
    if (r.value) {
      upsertRow(r.value);
      state.key = r.value.key;
      markSelectedRow();
      showValue(r.value);
    }
    refreshTablesSoon();
  });
}

async function createTable(ev) {
  ev.preventDefault();
  const name = $("new-table-name").value.trim();
  const crdt = $("new-table-crdt").value;
  await submitting("create-table-submit", "create-table-msg", async () => {
    const r = await api("/tables", { body: { name, crdt } });
    showMsg("create-table-msg", r.created ? `created ${name} (${crdt})` : `${name} already is a ${crdt} table`, true);
    $("new-table-name").value = "";
    await loadTables();
    await selectTable(name);
  });
}

// ---- live updates

let refreshTimer = null;
function refreshTablesSoon() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(() => loadTables().catch(() => {}), 150);
}

function onChange(c) {
  setApplied(c.position.seq);
  const v = c.value;
  feed(
    "events",
    el(
      "li",
      { dataset: { table: c.table, key: c.key } },
      el("span", { class: "where" }, `${c.table} / ${c.key}`),
      " ",
      el("span", { class: "pos" }, posText(c.position)),
      el("span", { class: "val" }, v.exists ? compact(v.value) : "(no value)"),
    ),
  );
  if (c.table === state.table) {
    upsertRow(v);
    // A change carries no CRDT internals: read the key again.
    if (c.key === state.key) refreshDetail();
  }
  refreshTablesSoon();
}

function onRejection(r) {
  setApplied(r.position.seq);
  feed("rejections", rejectionItem({}, r.table || "(no table)", r, r.reason));
  refreshTablesSoon();
}

async function loadRejections() {
  const body = await api("/rejections");
  $("rejections").replaceChildren();
  for (const r of body.rejections) onRejection(r);
  for (const li of $("rejections").children) li.classList.remove("flash");
}

function connect() {
  const es = new EventSource(API + "/events");
  es.addEventListener("ready", async (ev) => {
    setStatus("live", "live");
    setApplied(JSON.parse(ev.data).applied);
    // Events missed while disconnected are not replayed: reload.
    try {
      await reload();
    } catch (e) {
      setStatus("down", e.message);
    }
  });
  es.addEventListener("change", (ev) => onChange(JSON.parse(ev.data)));
  es.addEventListener("rejection", (ev) => onRejection(JSON.parse(ev.data)));
  es.addEventListener("dropped", () => reload().catch((e) => setStatus("down", e.message)));
  es.onerror = () => setStatus(es.readyState === EventSource.CLOSED ? "down" : "connecting", es.readyState === EventSource.CLOSED ? "disconnected: reload the page" : "reconnecting");
}

async function reload() {
  await loadTables();
  await loadRejections();
  if (state.table && state.tables.has(state.table)) {
    await loadKeys(state.after);
    await refreshDetail();
  }
}

async function start() {
  $("create-table").addEventListener("submit", createTable);
  $("op-form").addEventListener("submit", submitOp);
  $("op-kind").addEventListener("change", updateOpFields);
  $("more-keys").addEventListener("click", () => {
    // The next page starts after the last loaded key; keep the rows.
    const last = state.keys[state.keys.length - 1] || "";
    loadMore(last);
  });
  $("key-jump").addEventListener("submit", (ev) => {
    ev.preventDefault();
    loadKeys($("key-after").value);
  });
  $("key-reset").addEventListener("click", () => {
    $("key-after").value = "";
    loadKeys("");
  });
  try {
    await loadTables();
    const want = decodeURIComponent(location.hash.slice(1));
    if (want && state.tables.has(want)) await selectTable(want);
  } catch (e) {
    setStatus("down", e.message);
  }
  connect();
}

async function loadMore(last) {
  const name = state.table;
  const page = await api(`/tables/${enc(name)}/keys?values=true&limit=${PAGE}&after=${enc(last)}`);
  if (name !== state.table) return;
  for (const v of page.values || []) {
    if (rowFor(v.key)) continue;
    state.keys.push(v.key);
    $("keys").append(keyRow(v));
  }
  state.more = page.more;
  $("more-keys").hidden = !page.more;
}

start();
