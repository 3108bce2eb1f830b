// Package loghttp serves the log itself over HTTP: a read-only JSON API
// over a [transport.Log] in one [http.Handler], made by [New], and the log
// page of the node's browser UI ([Page]), which the shell of package web
// serves at /log. `detbus serve` mounts both beside the kv and tasks
// pages, behind the node's access rule (web.Protect).
//
// # JSON API
//
// Every path is under /api/log; every method but GET is refused (405).
// Responses are JSON with snake_case field names.
//
//	GET /api/log/esks                         ?prefix=&after=&limit=: one page of ESKs
//	GET /api/log/esks/{esk}/events            ?from=&seq=&limit=: one page of an ESK's events
//	GET /api/log/esks/{esk}/events/{index}    one event, with its whole payload
//	GET /api/log/esks/{esk}/live              ?after=: Server-Sent Events of its new events
//
// A page of ESKs lists, in byte order of their names, at most "limit"
// ESKs (default 100, at most 1000) whose name starts with "prefix" (any
// start of a name, "orders.e" included; not a pattern) and comes after
// "after": {"esks":[{"esk","count","last_seq","last_time"}],"total",
// "more","next","log":{"events","last_seq","esks"}}. "total" counts the
// ESKs matching the prefix, "next" is the name to pass as "after" for
// the next page, "log" is the whole log's head. Counts and last events
// come from the stream leader and batched direct gets, page by page (see
// transport.Directory), so a page costs the same among 200,000 ESKs as
// among ten once the node knows their names.
//
// A page of events holds at most "limit" consecutive events (default
// 50, at most 500): from index "from", or from the first event at or
// after stream position "seq" (a position past the ESK's last event
// gives its last page), or, with neither, the ESK's last page:
// {"esk","count","from","events":[event...],"more_before","more_after"}.
// "count" is the ESK's count as the stream leader holds it. A page
// starting past the end is empty. Its cost does not grow with the ESK's
// length (transport.Log.Range, Seek).
//
// An event is {"index","seq","hlc","time","hlc_header","clamped",
// "stored","headers","content_type","size","format",...}: "hlc" is its
// HLC time as text ("wall.logical") and "time" the wall part, from the
// Detbus-Hlc header ("hlc_header" true) or else the time the stream
// stored it ("stored"); "clamped" marks a header too far from the stored
// time to be believed (transport.MaxEventSkew). "headers" are as
// published. The payload is shown by "format":
//
//   - "json": the payload is JSON (no content type, or application/json
//     or +json), as "json";
//   - "msgpack": application/msgpack, decoded into "json"
//     (transport.MsgpackJSON: bin and ext as {"$bin": base64});
//   - "text": UTF-8 that is not what its content type says, or a payload
//     of any other type, as "text";
//   - "bytes": anything else, as "hex";
//   - "empty": no payload.
//
// "problem" says why a payload of type JSON or msgpack is shown as text
// or bytes. In a page (and in the live stream) a payload over 64 KiB is
// cut to its first 64 KiB, shown as text or bytes, with "truncated":
// true; the event's own path gives it whole.
//
// # Live
//
// GET .../live streams text/event-stream: first "ready", {"esk","after"},
// then one "event" per event of the ESK written after stream position
// "after" (default: its last event now), with id its stream sequence and
// data the event as above. A browser that reconnects sends Last-Event-ID
// and goes on after it. A comment line is sent every Options.Heartbeat
// (default 15s). A "failed" event, {"error"}, ends the stream when the
// log fails. The stream ends when the client leaves, when the session it
// came on ends (web.Protect), or when the node stops.
//
// # Errors
//
// Errors have a JSON body {"error": "..."}: 400 for an invalid ESK
// (naming the token and byte), prefix, index, position or limit; 401,
// 403 from the access rule; 404 for an index that the ESK does not have
// or an unknown path; 405 for a method other than GET; 503 when NATS
// does not answer within Options.Timeout (default 10s).
//
// # Access
//
// [New] does no authentication, and writes nothing. Behind web.Protect,
// every signed-in user and the token may read the whole log (every role
// may on NATS too); without credentials nothing is served.
//
// # Concurrency
//
// A Handler is safe for concurrent use. Each live stream holds a reader
// of the log (an ordered consumer, or direct gets for a user who may not
// create consumers) until it ends.
package loghttp
