// The detbus tasks browser UI: plain JavaScript over the JSON API under
// /api/tasks, with the helpers of common.js. The API has no event
// stream: the page asks /api/tasks/status every second and reloads what
// it shows when the node has applied new task events. It never builds
// HTML from data: every id, payload and reason is set as text.
"use strict";

const API = "/api/tasks";
const PAGE = 100;
const MAX_PAGE = 1000;
const POLL_MS = 1000;
const STATES = ["pending", "claimed", "completed", "dead", "cancelled"];

const api = (path, opts) => request(API + path, opts);

const state = {
  queues: new Map(), // name -> queue
  queue: null, // the selected queue's name
  filter: "", // the state filter, "" for all
  tasks: [], // loaded tasks of the selected queue, in enqueue order
  next: null, // the enqueue index the next page starts after, null when none
  task: null, // the selected task's id
  applied: -1, // the node's applied sequence when the page last reloaded
};

const qpath = (name) => `/queues/${enc(name)}`;

function fmtTime(iso) {
  if (!iso) return "";
  return new Date(iso).toLocaleString();
}

// relative says how far a time is from now: "in 25s", "3m ago".
function relative(iso) {
  const ms = new Date(iso).getTime() - Date.now();
  const abs = Math.abs(ms);
  let s;
  if (abs < 60e3) s = `${Math.round(abs / 1e3)}s`;
  else if (abs < 3600e3) s = `${Math.round(abs / 60e3)}m`;
  else if (abs < 86400e3) s = `${Math.round(abs / 3600e3)}h`;
  else s = `${Math.round(abs / 86400e3)}d`;
  return ms >= 0 ? `in ${s}` : `${s} ago`;
}

function stateBadge(s) {
  return el("span", { class: `badge state-${s}` }, s);
}

function setApplied(seq) {
  $("applied").textContent = seq > 0 ? `applied through seq ${seq}` : "";
}

// ---- queues

async function loadQueues() {
  const body = await api("/queues");
  state.queues = new Map(body.queues.map((q) => [q.name, q]));
  setApplied(body.applied);
  renderQueues();
  if (state.queue) renderQueueHead();
}

function renderQueues() {
  const ul = $("queues");
  ul.replaceChildren();
  for (const q of state.queues.values()) {
    const counts = STATES.map((s) => `${s} ${q.tasks[s]}`).join(", ");
    ul.append(
      el(
        "li",
        { dataset: { queue: q.name }, class: q.name === state.queue ? "selected" : "", title: `${q.name}: ${counts}`, onclick: () => selectQueue(q.name) },
        el("span", { class: "name" }, q.name),
        q.tasks.claimed ? el("span", { class: "badge state-claimed", title: "claimed" }, String(q.tasks.claimed)) : null,
        q.tasks.pending ? el("span", { class: "badge state-pending", title: "pending" }, String(q.tasks.pending)) : null,
        q.tasks.dead ? el("span", { class: "badge state-dead", title: "dead letters" }, String(q.tasks.dead)) : null,
        el("span", { class: "count", title: "tasks" }, String(q.total)),
        q.rejected ? el("span", { class: "rejected", title: "rejected events" }, `✕${q.rejected}`) : null,
      ),
    );
  }
}

function describeConfig(c) {
  if (!c) return "Not created: the queue has events, but no create_queue was accepted yet. Its tasks are not listed.";
  return `lease ${c.lease} · ${c.max_attempts} attempts · backoff ${c.backoff.initial} ×${c.backoff.factor} up to ${c.backoff.max}`;
}

function renderQueueHead() {
  const q = state.queues.get(state.queue);
  if (!q) return;
  $("queue-name").textContent = q.name;
  const b = $("queue-created");
  b.textContent = q.created ? "created" : "not created";
  b.className = "badge" + (q.created ? "" : " gone");
  $("queue-config").textContent = describeConfig(q.config);
  const stats = $("queue-stats");
  stats.replaceChildren();
  const stat = (k, v, title) => stats.append(term(k, v, title, "stat"));
  for (const s of STATES) stat(s, q.tasks[s]);
  stat("events", q.events);
  stat("rejected", q.rejected, `${q.malformed} malformed, ${q.refused} refused`);
}

async function selectQueue(name) {
  const changed = name !== state.queue;
  state.queue = name;
  if (changed) {
    state.task = null;
    state.tasks = [];
    $("task-detail").hidden = true;
    $("enqueue-msg").textContent = "";
  }
  setHash();
  $("empty-view").hidden = true;
  $("queue-view").hidden = false;
  renderQueues();
  renderQueueHead();
  await Promise.all([loadTasks(changed), loadRejections()]);
}

function setHash() {
  let h = state.queue ? "#" + enc(state.queue) : "";
  if (state.queue && state.task) h += "/" + enc(state.task);
  history.replaceState(null, "", h || location.pathname);
}

// ---- tasks

function taskRow(t) {
  const q = state.queues.get(state.queue);
  const max = q && q.config ? q.config.max_attempts : "?";
  return el(
    "tr",
    { dataset: { id: t.id, state: t.state }, class: t.id === state.task ? "selected" : "", onclick: () => selectTask(t.id) },
    el("td", { class: "key", title: t.id }, t.id),
    el("td", { class: "state" }, stateBadge(t.state)),
    el("td", { class: "attempts" }, `${t.attempts}/${max}`),
    el("td", { class: "worker", title: t.worker }, t.worker),
    el("td", { class: "error", title: t.last_error }, t.last_error),
  );
}

function tasksQuery(limit, after) {
  let q = `?limit=${limit}`;
  if (state.filter) q += `&state=${enc(state.filter)}`;
  if (after != null) q += `&after=${after}`;
  return q;
}

// loadTasks reloads the selected queue's tasks: the first page, or as
// many as are loaded (up to the API's limit), and reports the changes
// since the last load.
async function loadTasks(reset) {
  const name = state.queue;
  const q = state.queues.get(name);
  const tbody = $("tasks");
  if (!q || !q.created) {
    tbody.replaceChildren();
    state.tasks = [];
    $("more-tasks").hidden = true;
    $("tasks-empty").hidden = false;
    return;
  }
  const limit = reset ? PAGE : Math.min(MAX_PAGE, Math.max(PAGE, state.tasks.length));
  const page = await api(`${qpath(name)}/tasks${tasksQuery(limit)}`);
  if (name !== state.queue) return;
  const rows = page.tasks.map(taskRow);
  if (!reset) noteChanges(page.tasks, rows);
  state.tasks = page.tasks;
  tbody.replaceChildren(...rows);
  state.next = page.more ? page.next : null;
  $("more-tasks").hidden = !page.more;
  $("tasks-empty").hidden = page.tasks.length > 0;
}

// noteChanges flashes the rows whose task is new or changed state since
// the tasks loaded before, and lists them under Changes.
function noteChanges(tasks, rows) {
  const seen = new Map(state.tasks.map((t) => [t.id, t.state]));
  tasks.forEach((t, i) => {
    const was = seen.get(t.id);
    if (was === t.state) return;
    rows[i].classList.add("flash");
    feed(
      "changes",
      el(
        "li",
        { dataset: { queue: state.queue, id: t.id, state: t.state } },
        el("span", { class: "where" }, `${state.queue} / ${t.id}`),
        " ",
        el("span", { class: "pos" }, was ? `${was} → ${t.state}` : `new, ${t.state}`),
        t.worker && t.state !== "pending" ? el("span", { class: "val" }, `worker ${t.worker}, attempt ${t.attempts}`) : null,
      ),
    );
  });
}

async function loadMore() {
  const name = state.queue;
  const page = await api(`${qpath(name)}/tasks${tasksQuery(PAGE, state.next)}`);
  if (name !== state.queue) return;
  for (const t of page.tasks) {
    state.tasks.push(t);
    $("tasks").append(taskRow(t));
  }
  state.next = page.more ? page.next : null;
  $("more-tasks").hidden = !page.more;
}

function selectTask(id) {
  state.task = id;
  setHash();
  for (const tr of $("tasks").children) tr.classList.toggle("selected", tr.dataset.id === id);
  $("action-msg").textContent = "";
  return refreshDetail();
}

async function refreshDetail() {
  if (!state.task) return;
  const name = state.queue;
  const id = state.task;
  try {
    const t = await api(`${qpath(name)}/tasks/${enc(id)}`);
    if (name === state.queue && id === state.task) showTask(t);
  } catch (e) {
    showMsg("action-msg", e.message, false);
  }
}

function showTask(t) {
  $("task-detail").hidden = false;
  $("task-detail").dataset.state = t.state;
  $("detail-id").textContent = t.id;
  const b = $("detail-state");
  b.textContent = t.state;
  b.className = `badge state-${t.state}`;
  const q = state.queues.get(t.queue);
  const fields = $("detail-fields");
  fields.replaceChildren();
  const field = (k, v, title) => {
    if (v === "" || v == null) return;
    fields.append(term(k, v, title, "field"));
  };
  field("attempts", q && q.config ? `${t.attempts} of ${q.config.max_attempts}` : t.attempts);
  field("worker", t.worker);
  if (t.lease_until) field("lease until", `${fmtTime(t.lease_until)} (${relative(t.lease_until)})`, `${t.lease_until}; lease ${t.lease}`);
  field("due", t.not_before ? `${fmtTime(t.not_before)} (${relative(t.not_before)})` : "at once", t.not_before || "");
  field("priority", t.priority);
  field("enqueue index", t.enqueue_index);
  field("last error", t.last_error);
  $("cancel-task").hidden = !["pending", "claimed", "dead"].includes(t.state);
  $("retry-task").hidden = t.state !== "dead";
  $("task-actions").hidden = $("cancel-task").hidden && $("retry-task").hidden;
  renderJSON($("detail-payload"), t.payload);
  renderJSON($("detail-result"), t.result);
}

// ---- writes

async function taskAction(action) {
  const name = state.queue;
  const id = state.task;
  await submitting(action === "cancel" ? "cancel-task" : "retry-task", "action-msg", async () => {
    const r = await api(`${qpath(name)}/tasks/${enc(id)}/${action}`, { method: "POST" });
    showMsg("action-msg", `${r.outcome} at ${posLabel(r.position)}`, true);
    if (name === state.queue && id === state.task) showTask(r.task);
    kick();
  });
}

function newID() {
  const r = new Uint8Array(4);
  crypto.getRandomValues(r);
  return "ui-" + Date.now().toString(36) + "-" + Array.from(r, (b) => b.toString(16).padStart(2, "0")).join("");
}

async function enqueue(ev) {
  ev.preventDefault();
  const name = state.queue;
  const body = { id: $("enqueue-id").value.trim() || newID() };
  try {
    const p = $("enqueue-payload").value.trim();
    if (p) {
      try {
        body.payload = JSON.parse(p);
      } catch {
        throw new Error('payload must be JSON: quote text, as in "hello"');
      }
    }
    const prio = $("enqueue-priority").value.trim();
    if (prio && prio !== "0") {
      if (!/^-?\d+$/.test(prio)) throw new Error("priority must be a whole number");
      body.priority = Number(prio);
    }
    const delay = $("enqueue-delay").value.trim();
    if (delay) body.delay = delay;
  } catch (e) {
    showMsg("enqueue-msg", e.message, false);
    return;
  }
  await submitting("enqueue-submit", "enqueue-msg", async () => {
    const r = await api(`${qpath(name)}/tasks`, { body });
    showMsg("enqueue-msg", r.created ? `enqueued ${body.id} at ${posLabel(r.position)}` : `${body.id} is already in the queue: nothing written`, true);
    $("enqueue-id").value = "";
    if (name === state.queue) {
      state.task = r.task.id;
      setHash();
      showTask(r.task);
    }
    kick();
  });
}

async function createQueue(ev) {
  ev.preventDefault();
  const name = $("new-queue-name").value.trim();
  const body = { name };
  const text = (id, key) => {
    const v = $(id).value.trim();
    if (v) body[key] = v;
  };
  const num = (v) => (/^\d+$/.test(v) ? Number(v) : v);
  text("new-queue-lease", "lease");
  const attempts = $("new-queue-attempts").value.trim();
  if (attempts) body.max_attempts = num(attempts);
  const backoff = {};
  if ($("new-queue-initial").value.trim()) backoff.initial = $("new-queue-initial").value.trim();
  if ($("new-queue-factor").value.trim()) backoff.factor = num($("new-queue-factor").value.trim());
  if ($("new-queue-max").value.trim()) backoff.max = $("new-queue-max").value.trim();
  if (Object.keys(backoff).length) body.backoff = backoff;
  await submitting("create-queue-submit", "create-queue-msg", async () => {
    const r = await api("/queues", { body });
    showMsg("create-queue-msg", r.created ? `created ${name}` : `${name} already has that config`, true);
    for (const id of ["new-queue-name", "new-queue-lease", "new-queue-attempts", "new-queue-initial", "new-queue-factor", "new-queue-max"]) $(id).value = "";
    await loadQueues();
    await selectQueue(name);
  });
}

// ---- rejections

async function loadRejections() {
  const name = state.queue;
  const ol = $("rejections");
  if (!name) return ol.replaceChildren();
  const body = await api(`${qpath(name)}/rejections`);
  if (name !== state.queue) return;
  ol.replaceChildren();
  for (const r of body.rejections.slice(-FEED_MAX)) {
    ol.prepend(rejectionItem({ title: r.time || "" }, r.op || "(no op)", r, (r.malformed ? "malformed: " : "refused: ") + r.reason));
  }
}

// ---- polling

async function reload() {
  await loadQueues();
  if (!state.queue) return;
  if (!state.queues.has(state.queue)) return;
  await Promise.all([loadTasks(false), refreshDetail(), loadRejections()]);
}

let polling = false;
let again = false;
let timer = null;

// poll asks the node what it has applied and reloads when that moved.
// One poll runs at a time; the next is due POLL_MS after it ends.
async function poll() {
  if (polling) {
    again = true;
    return;
  }
  polling = true;
  clearTimeout(timer);
  try {
    const s = await api("/status");
    if (s.applied !== state.applied) {
      await reload();
      state.applied = s.applied;
    }
    setStatus("live", "live");
  } catch (e) {
    setStatus("down", e.message);
  } finally {
    polling = false;
    if (again) {
      again = false;
      poll();
    } else {
      timer = setTimeout(poll, POLL_MS);
    }
  }
}

// kick reloads at once, after a write of this page.
function kick() {
  state.applied = -1;
  poll();
}

async function start() {
  $("status").title = "the page asks the node for changes every second";
  $("create-queue").addEventListener("submit", createQueue);
  $("enqueue").addEventListener("submit", enqueue);
  $("cancel-task").addEventListener("click", () => taskAction("cancel"));
  $("retry-task").addEventListener("click", () => taskAction("retry"));
  $("more-tasks").addEventListener("click", () => loadMore().catch((e) => showMsg("enqueue-msg", e.message, false)));
  $("state-filter").addEventListener("change", () => {
    state.filter = $("state-filter").value;
    state.tasks = [];
    loadTasks(true).catch((e) => setStatus("down", e.message));
  });
  try {
    await loadQueues();
    const [q, id] = location.hash.slice(1).split("/").map(decodeURIComponent);
    if (q && state.queues.has(q)) {
      await selectQueue(q);
      if (id) await selectTask(id);
    }
  } catch (e) {
    setStatus("down", e.message);
  }
  poll();
}

start();
