// Package kvhttp serves a [kv.Store] over HTTP: a JSON API in one
// [http.Handler], made by [New], and the kv page of the node's browser UI
// ([Page]), which the shell of package web serves around it. `detbus
// serve` mounts both, behind the node's access rule (web.Protect), on its
// --http address beside /metrics and /healthz.
//
// # JSON API
//
// Every path is under /api/kv. Requests and responses are JSON; field names
// are snake_case.
//
//	GET  /api/kv/tables                      {"tables":[table...]}, sorted by name, _config included
//	POST /api/kv/tables                      {"name":"users","crdt":"lww"}: declare a table through _config
//	GET  /api/kv/tables/{table}              table
//	GET  /api/kv/tables/{table}/keys         ?after=&limit=&values=: one page of keys, sorted
//	GET  /api/kv/tables/{table}/keys/{key}   value, with its CRDT metadata
//	POST /api/kv/tables/{table}/ops          an op in the log's JSON format (see package kv)
//	GET  /api/kv/rejections                  ?table=: ops the fold rejected, oldest first
//	GET  /api/kv/events                      ?table=: Server-Sent Events of changes
//
// A table is {"name","crdt","keys","ops","rejected","declared"}; a position
// is {"esk","index","seq"}; a value is {"table","key","crdt","exists",
// "value","meta"}, where "value" is what the CRDT means (an LWW value, an
// OR-set's elements, a counter's total, a map object, an MV-register's
// values) and "meta" is the CRDT's internal state (timestamps, dots, tags,
// tombstones) in the deterministic form of package crdt.
//
// Keys may hold any byte but must be escaped in the path (%2F for "/"); the
// {key} segment takes the rest of the path. A page of keys holds at most
// "limit" keys (default 100, at most 1000) greater than "after" in byte
// order, with "more" and "next" (the last key, to pass as "after") when
// there are more; values=true adds each key's value. Pages list the keys
// that hold a value; a key deleted or emptied is not listed but can still
// be read, with "exists": false and its CRDT state.
//
// # Writes
//
// POST .../ops publishes one op and then waits until this node's store has
// folded the op's position, so the response reflects it: 200 with
// {"position", "value"} (the key's value after the op). POST /api/kv/tables
// answers 201 with {"table","position","created":true} for a new table,
// and 200 with "created":false when the table already has that type (no
// event is written). Options.Timeout (default 10s) bounds the publish and
// the wait together.
//
// # Errors
//
// Errors have a JSON body {"error": "..."}. When the op reached the log but
// did not take effect (the fold rejected it, the same way on every
// replica, or it was not seen applied in time), the body also has its
// "position" and the status follows the reason.
//
//   - 400: malformed JSON (the message names the field or byte offset), an
//     invalid op, table name, key or query parameter
//   - 401: no valid token (see Access)
//   - 403: a cross-origin browser write, or, without a token, a request
//     whose Host is not a loopback name
//   - 404: unknown table, key or path
//   - 405: a method the path does not serve (with Allow)
//   - 409: the op does not fit the table's type, or a table is re-declared
//     with another type
//   - 413: a body larger than Options.MaxBody (default 1 MiB + 4 KiB)
//   - 503: NATS unavailable, the store closed, or the op not applied within
//     Options.Timeout
//
// # Events
//
// GET /api/kv/events streams text/event-stream. The first event is "ready"
// with {"applied": seq}; then one "change" event per applied op, with id the
// op's stream sequence and data {"table","key","position","value"}, and one
// "rejection" event per rejected op, with data {"position","table",
// "reason","data"}. A change's value has no "meta": GET the key for its
// CRDT internals. A "dropped" event, {"dropped": n}, says that n changes
// were skipped because the client read too slowly for the store's watch
// buffer (see [kv.Store.Watch]); the client should reload. A comment line is sent every Options.Heartbeat (default
// 15s) to keep proxies from closing the stream. The stream ends when the
// client leaves or the store closes; events that happen while a client is
// disconnected are not replayed (Last-Event-ID is ignored): a client that
// reconnects reloads the state it shows.
//
// # Browser UI
//
// [Page] is the kv page of the UI, at "/": plain HTML and JavaScript
// embedded in the binary that lists tables, keys, values and CRDT
// internals, creates tables, applies ops per type, shows rejections, and
// follows the events stream to update live. It talks only to this API,
// under [APIPrefix].
//
// # Access
//
// [New] does no authentication; it rejects cross-origin browser writes
// ([http.CrossOriginProtection]). Wrap it, or the handler of package web
// that holds it, with web.Protect for the node's token, users or loopback
// rule, as `detbus serve` does: a write then needs the caller's right to
// write the table's ESK (httpapi.MayWrite).
//
// # Concurrency
//
// A Handler is safe for concurrent use. It reads the store's local state and
// never blocks reads on NATS.
package kvhttp
