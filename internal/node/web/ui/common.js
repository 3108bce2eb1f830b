// Helpers shared by the pages of the detbus UI (every page plugged into
// the shell of package web loads this file before its own scripts): DOM
// building, JSON API calls, forms, the feeds of changes and rejections,
// JSON rendering with readable HLC timestamps, and the live status. Nothing here builds HTML from data:
// every value is set as text.
"use strict";

const $ = (id) => document.getElementById(id);

function el(tag, props, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (k === "class") e.className = v;
    else if (k === "dataset") Object.assign(e.dataset, v);
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c != null) e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

// request calls a JSON API at url and returns the decoded body, or throws
// an Error with the server's message. A 401 reloads the page, which then
// asks for the token.
async function request(url, opts = {}) {
  const init = { headers: { Accept: "application/json" }, credentials: "same-origin", ...opts };
  if (opts.body !== undefined) {
    init.method = opts.method || "POST";
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(opts.body);
  }
  const resp = await fetch(url, init);
  if (resp.headers.get("X-Detbus-Token") === "required") $("logout").hidden = false;
  if (resp.status === 401) {
    location.reload();
    throw new Error("the token is needed");
  }
  let body = null;
  try {
    body = await resp.json();
  } catch {
    body = null;
  }
  if (!resp.ok) throw new Error((body && body.error) || `${resp.status} ${resp.statusText}`);
  return body;
}

const enc = encodeURIComponent;

function compact(v) {
  if (v === undefined) return "";
  const s = JSON.stringify(v);
  return s.length > 200 ? s.slice(0, 200) + "…" : s;
}

function showMsg(id, text, ok) {
  const m = $(id);
  m.textContent = text;
  m.className = "msg " + (ok ? "ok" : "err");
}

// submitting runs write with the button btnId disabled, and shows what it
// throws in the message msgId.
async function submitting(btnId, msgId, write) {
  const btn = $(btnId);
  btn.disabled = true;
  try {
    await write();
  } catch (e) {
    showMsg(msgId, e.message, false);
  } finally {
    btn.disabled = false;
  }
}

// term is one entry of a <dl>: k and v, with data-<key>="k" on the <dd>
// when key is given.
function term(k, v, title, key) {
  return el("div", title ? { title } : {}, el("dt", {}, k), el("dd", key ? { dataset: { [key]: k } } : {}, String(v)));
}

// ---- positions and feeds

// posLabel is a position as a write's message names it, posText as a feed
// lists it.
const posLabel = (p) => `${p.esk}#${p.index} (seq ${p.seq})`;
const posText = (p) => `${p.esk}#${p.index} · seq ${p.seq}`;

// A feed keeps its FEED_MAX newest items.
const FEED_MAX = 60;

// feed puts item, flashing, at the top of the list listId.
function feed(listId, item) {
  const ol = $(listId);
  item.classList.add("flash");
  ol.prepend(item);
  while (ol.children.length > FEED_MAX) ol.lastChild.remove();
}

// rejectionItem is a rejected event as the Rejections feed lists it: where
// it was written, its position, why, and its payload when it is text.
function rejectionItem(props, where, r, reason) {
  return el(
    "li",
    props,
    el("span", { class: "where" }, where),
    " ",
    el("span", { class: "pos" }, posText(r.position)),
    el("div", { class: "reason" }, reason),
    r.data ? el("span", { class: "val", title: r.data }, r.data) : null,
  );
}

// ---- JSON rendering with HLC timestamps made readable

const HLC = /^(\d{19})\.(\d{10})$/;

function hlcTitle(s) {
  const m = HLC.exec(s);
  if (!m) return null;
  const ns = BigInt(m[1]);
  const d = new Date(Number(ns / 1000000n));
  return `HLC: ${d.toISOString()} (wall ${m[1]} ns, logical ${Number(m[2])})`;
}

function renderJSON(pre, v) {
  pre.replaceChildren();
  const out = [];
  const indent = (n) => "  ".repeat(n);
  const walk = (x, depth) => {
    if (x === null) out.push(el("span", { class: "b" }, "null"));
    else if (typeof x === "string") {
      const t = hlcTitle(x);
      out.push(el("span", t ? { class: "s ts", title: t } : { class: "s" }, JSON.stringify(x)));
    } else if (typeof x === "number") out.push(el("span", { class: "n" }, String(x)));
    else if (typeof x === "boolean") out.push(el("span", { class: "b" }, String(x)));
    else if (Array.isArray(x)) {
      if (x.length === 0) return out.push("[]");
      out.push("[\n");
      x.forEach((y, i) => {
        out.push(indent(depth + 1));
        walk(y, depth + 1);
        out.push(i < x.length - 1 ? ",\n" : "\n");
      });
      out.push(indent(depth) + "]");
    } else {
      const ks = Object.keys(x);
      if (ks.length === 0) return out.push("{}");
      out.push("{\n");
      ks.forEach((k, i) => {
        out.push(indent(depth + 1), el("span", { class: "k" }, JSON.stringify(k)), ": ");
        walk(x[k], depth + 1);
        out.push(i < ks.length - 1 ? ",\n" : "\n");
      });
      out.push(indent(depth) + "}");
    }
  };
  walk(v, 0);
  pre.append(...out);
}

function setStatus(s, text) {
  $("status").dataset.state = s;
  $("status-text").textContent = text;
}
