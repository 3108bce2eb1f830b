// Package taskshttp serves the task queues of a [tasks.Client] over HTTP:
// a JSON API in one [http.Handler], made by [New], and the tasks page of
// the node's browser UI ([Page]), which the shell of package web serves
// at /tasks. `detbus serve` mounts both beside the kv API and page,
// behind the same access rule (web.Protect).
//
// # JSON API
//
// Every path is under /api/tasks. Requests and responses are JSON; field
// names are snake_case.
//
//	GET  /api/tasks/status                               {"applied": seq}
//	GET  /api/tasks/queues                               {"queues":[queue...],"applied":seq}, sorted by name
//	POST /api/tasks/queues                               {"name":"emails", create_queue fields}: create a queue
//	GET  /api/tasks/queues/{queue}                       queue
//	GET  /api/tasks/queues/{queue}/tasks                 ?state=&after=&limit=: one page of tasks
//	POST /api/tasks/queues/{queue}/tasks                 {"id","payload","priority","not_before"|"delay"}: enqueue
//	GET  /api/tasks/queues/{queue}/tasks/{id}            task, with payload and result
//	POST /api/tasks/queues/{queue}/tasks/{id}/cancel     cancel a pending, claimed or dead task
//	POST /api/tasks/queues/{queue}/tasks/{id}/retry      requeue a dead task
//	GET  /api/tasks/queues/{queue}/rejections            rejected events, oldest first
//
// "applied" is the stream sequence of the last task event the client
// folded: a reader that polls /api/tasks/status learns that something
// changed when it moves. There is no event stream: the client offers no
// watch of every queue, so the UI polls status every second.
//
// A queue is {"name","created","config","events","tasks","total",
// "rejected","malformed","refused"}: "tasks" counts tasks by state (every
// state listed), "config" is {"lease","max_attempts","backoff":{"initial",
// "factor","max"}} with durations as Go duration strings, null until a
// create_queue is accepted. A queue is listed from its first event, so one
// written to before it was created shows with "created": false and its
// rejections. A task is {"id","state","priority","enqueue_index",
// "attempts","worker","lease_until","not_before","last_error"}; the full
// task adds "queue", "lease" (the current attempt's), "payload" and
// "result". Times are RFC 3339 in UTC, the wall time of the machine's HLC
// timestamps, null when unset: "lease_until" when the task is not
// claimed, "not_before" when it was due at once. A rejection is
// {"position","time","op","reason","malformed","data"} ("data_base64"
// instead of "data" when the payload is not UTF-8); a position is
// {"esk","index","seq"}.
//
// A page of tasks lists, in enqueue order, at most "limit" tasks (default
// 100, at most 1000) whose enqueue_index is greater than "after", in the
// states given by "state" (one or more of pending, claimed, completed,
// dead, cancelled, separated by commas; all when absent), with "more" and
// "next" (the last task's enqueue_index, to pass as "after") when there
// are more. Task ids and queue names may hold any byte the tasks package
// allows but must be escaped in the path (%2F for "/").
//
// Reads answer from the client's local state, without a round trip to
// NATS, and may lag the log.
//
// # Writes
//
// A write publishes one operation (see package machine), then waits until
// the client has folded it, so the response reflects it:
//
//   - POST /api/tasks/queues takes "name" and the create_queue fields
//     ("lease", "max_attempts", "backoff"), absent ones defaulted as the
//     machine does. 201 with {"queue","position","created":true}; 200 with
//     "created": false when the queue already has that config (nothing is
//     written); 409 when it has another.
//   - POST .../tasks enqueues: "id" is required; "payload" is any JSON
//     (absent: null); "priority" orders claims; the task is due at
//     "not_before" (an RFC 3339 time) or after "delay" (a Go duration) by
//     this node's clock, at once without either. 201 with {"task",
//     "position","created":true}; 200 with "created": false when the
//     queue already has a task with that id (enqueue is idempotent by id:
//     the existing task is returned, nothing is written).
//   - POST .../cancel and .../retry answer 200 with {"task","position",
//     "outcome"}, the outcome being the machine's kind ("cancelled",
//     "requeued", or "duplicate" for a repeated cancel). Cancelling a
//     completed task, or retrying a task that is not dead, is 409 without
//     a write.
//
// Options.Timeout (default 10s) bounds the publish and the wait together.
//
// # Errors
//
// Errors have a JSON body {"error": "..."}. When the operation reached
// the log but did not take effect (the machine rejected it, the same way
// on every replica, or it was not seen applied in time), the body also
// has its "position".
//
//   - 400: malformed JSON (the message names the field or byte offset), an
//     invalid queue name, create_queue field, task or query parameter
//   - 401, 403: the access rule (web.Protect), or a cross-origin
//     browser write, or NATS refusing the node's credentials
//   - 404: unknown queue (or one not created yet, for its tasks), task or
//     path
//   - 405: a method the path does not serve (with Allow)
//   - 409: a queue created with another config, an action the task's
//     state does not allow, or an operation the machine rejected
//   - 413: a body larger than Options.MaxBody (default 1 MiB + 4 KiB), or
//     an operation larger than the log's payload limit
//   - 503: NATS unavailable, the client closed, or the operation not
//     applied within Options.Timeout
//
// # Access
//
// [New] does no authentication; it rejects cross-origin browser writes
// ([http.CrossOriginProtection]). Wrap it, or the handler of package web
// that holds it, with web.Protect for a node's token, users or loopback
// rule, as `detbus serve` does.
//
// # Browser UI
//
// [Page] is the tasks page of the UI: it lists queues with their counts
// by state, a queue's tasks with their state, attempts, last error and
// worker, a task's payload and result, creates queues, enqueues, cancels
// and retries tasks, and shows rejections. It polls /api/tasks/status
// every second and reloads what it shows when it moves.
//
// # Concurrency
//
// A Handler is safe for concurrent use. Reads never block on NATS.
package taskshttp
