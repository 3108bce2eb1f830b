// Package machine is the deterministic state machine of a task queue whose
// whole life is events on a log.
//
// A queue is folded from the events of its ESK "tasks.<queue>" in log
// order: [Queue.Apply] takes one [Event] and returns an [Outcome]. The
// machine is pure: no I/O, no wall clock, no goroutines, no randomness,
// and no map iteration order reaches an outcome, a listing or a snapshot.
// Two queues fed the same events give the same outcomes and the same
// snapshot bytes.
//
// # Time
//
// The only clock is the event's HLC time ([Event.Time]), the "now" of that
// event. Leases and due times are compared with it by
// [hlc.Timestamp.Compare]; a lease of d taken at time t lasts until t plus
// d (wall time plus d, same logical part), and has expired at every event
// whose time is at or after that. Nothing happens between events: an
// expired lease or a due task changes nothing until an event looks at it.
// Log order need not follow time order; each event is judged at its own
// time. Events with a negative wall time are rejected.
//
// # Operations
//
// An event's data is a JSON object with an "op"; durations are Go duration
// strings ("30s", "1m30s"), timestamps are [hlc.Timestamp.String] strings,
// payloads and results any JSON (stored compacted; absent is null):
//
//	{"op":"create_queue","lease":"30s","max_attempts":5,"backoff":{"initial":"1s","factor":2,"max":"1m"}}
//	{"op":"enqueue","id":"t1","payload":{"to":"a@b"},"priority":0,"not_before":"1700000000000000000.0000000000"}
//	{"op":"claim","id":"t1","worker":"w1","lease":"30s"}
//	{"op":"claim","worker":"w1"}
//	{"op":"heartbeat","id":"t1","worker":"w1","attempt":1}
//	{"op":"complete","id":"t1","worker":"w1","attempt":1,"result":{"sent":true}}
//	{"op":"fail","id":"t1","worker":"w1","attempt":1,"error":"smtp timeout"}
//	{"op":"cancel","id":"t1"}
//	{"op":"requeue","id":"t1"}
//	{"op":"batch","ops":[{"op":"complete","id":"t1","worker":"w1","attempt":1},{"op":"claim","worker":"w1"}]}
//
// [Decode] reads an operation with the checks listed under Rejections,
// without a queue, and [Op.MarshalJSON] writes its canonical form.
//
// Every create_queue field is optional; the defaults ([DefaultConfig]) are
// a lease of "30s", max_attempts 5 and a backoff of initial "1s", factor 2,
// max "1m", each backoff field defaulting on its own. The lease must be
// positive, max_attempts between 1 and [MaxAttemptsLimit], factor a
// positive integer, initial not negative and max not less than initial.
// The queue exists from its first accepted create_queue; every other op
// before it is rejected. A later create_queue with the same configuration
// after defaults ("30s" equals "30000ms") is a duplicate; with another, it
// is rejected.
//
// In enqueue, "id" is required; "priority" (any int64, default 0),
// "not_before" (default: due at once) and "payload" are optional. In
// claim, "id" and "lease" are optional. In heartbeat, complete and fail,
// "attempt" is a positive integer; "result" and "error" (a string) are
// optional. A null field counts as absent.
//
// # Batches
//
// A batch holds 1 to [MaxBatchOps] operations of any op but batch, and
// applies them in order, each as if it were an event with the batch's
// index and time: a batch's effect and the outcomes of its operations are
// those of the operations one by one. Tasks enqueued by one batch share
// its enqueue index, so among equal priorities they are claimed by id. A
// malformed operation makes the whole batch malformed: it is rejected,
// with the operation's position in the reason ("ops[2]: missing id"), and
// nothing in it is applied; a well-formed operation refused in the
// queue's state is refused alone. Batches let a worker report finished
// tasks, extend its leases and claim new tasks in one event.
//
// # Claims
//
// A task is claimable at time now if it is pending and due (not_before at
// or before now), or claimed with a lease that expired at or before now
// and attempts left (attempts < max_attempts). A claim naming a claimable
// task wins it: the task becomes claimed by the worker with attempt
// attempts+1 and a lease of the claim's "lease" or the queue's. Claims are
// decided one event at a time, so the first claim in log order wins and
// no two workers ever hold the same unexpired lease. A claim without "id"
// wins the best claimable task: highest priority, then earliest enqueue
// index, then smallest id ([Queue.Claimable] lists them in that order).
//
// A claim naming a task whose last allowed attempt's lease has expired
// moves it to the dead letters (outcome "dead") instead; a claim without
// id skips such tasks.
//
// # Leases
//
// Heartbeat, complete and fail are accepted only from the holder of the
// current lease: the task is claimed, "attempt" is its current attempt,
// "worker" holds it and the lease has not expired at the event's time.
// A heartbeat extends the lease to now plus the attempt's lease duration
// (never shortening it). Complete records the result; the task is done.
// Fail records the error; the task is pending again, due at now plus
// backoff(attempt) = min(initial * factor^(attempt-1), max), or dead when
// the attempt was the last allowed. Cancel ends a pending, claimed or dead
// task (a holder's later operations are rejected). Requeue turns a dead
// task back into a pending one, due at once, with attempts reset to 0.
// Completed and cancelled are final.
//
// # Idempotence
//
// These repeats change nothing and give the outcome "duplicate": an
// enqueue of an id the queue has ever had (whatever its payload); a
// create_queue with the same configuration; a claim naming a task the same
// worker holds with an unexpired lease (with that attempt and lease); a
// complete of a task completed by the same worker and attempt; a cancel of
// a cancelled task. A claim without id is not idempotent: each one that
// wins takes another task.
//
// # Outcomes
//
// Every outcome has the event's Index, its Kind and, when the op is a
// string, the Op. TaskID and Worker are the operation's, as far as they
// were read; for a claim without id, TaskID is the task it won. Attempt is
// the attempt concerned (claimed, heartbeated, completed, failed or
// dead-lettered), or the operation's on a rejection. Claimed, heartbeat
// and a duplicate claim set LeaseUntil; enqueued and retry set NotBefore.
// Reason is set on "rejected" (why), "retry" and "dead" (the task's last
// error, as recorded in [Task.LastError]). Malformed is set on a
// rejection of the event as a whole (it does not decode, or its time is
// before the epoch), unset on one refused in the queue's state. A batch that is applied has
// the kind "batch" and, in Ops, the outcome of each of its operations in
// order, each with the batch's Index.
//
// # Rejections
//
// A rejected event changes nothing and never blocks the queue: the next
// event is applied as usual. Checks run in this order and the first fault
// gives the reason (quoted strings are JSON strings):
//
//	event time before the Unix epoch
//	malformed JSON | operation must be a JSON object | duplicate field "id"
//	missing op | op must be a string | op must not be empty | unknown op "x"
//	unknown field "x"   (fields are checked in sorted order; "backoff.x" within backoff)
//	missing ops | ops must be a JSON array | ops must not be empty
//	ops holds more than 1000 operations | ops[i]: <any reason above> | ops[i]: a batch cannot hold a batch
//	field faults, in the order of the op's fields as listed above:
//	    missing id | id must be a string | id must not be empty (and worker)
//	    attempt must be an integer | attempt must be positive | attempt out of range
//	    lease must be a string | lease must be a duration | lease must be positive
//	    priority must be an integer | priority out of range
//	    not_before must be an HLC timestamp | error must be a string
//	    max_attempts ... | backoff must be a JSON object | backoff.initial ...
//	    backoff.factor ... | backoff.max must not be less than backoff.initial
//	queue not created | queue already created with another config
//	no task "t1" | no claimable task
//	task "t1" is completed   (or pending, dead, cancelled)
//	task "t1" is not due until <time> | task "t1" is held by "w2" until <time>
//	attempt 1 is not the current attempt 2 | attempt 2 is held by "w2"
//	lease of attempt 2 expired at <time>
//	task "t1" is pending, not dead   (requeue)
//
// # Cost
//
// A queue keeps its live tasks (pending or claimed) apart from the
// finished ones: a claim without id looks at the best ready task (pending
// without not_before, kept in claim order) and at the tasks in flight or
// delayed, never at completed, dead or cancelled ones. [Queue.Due] does
// the same.
//
// # Snapshots
//
// [Queue.Snapshot] encodes the state as canonical JSON, byte-identical for
// equal states:
//
//	{"queue":"mail","config":{"lease":"30s","max_attempts":5,"backoff":{"initial":"1s","factor":2,"max":"1m0s"}},"tasks":[{"id":"t1","state":"claimed","enqueue_index":1,"payload":{"to":"a@b"},"attempts":1,"worker":"w1","lease_until":"1700000030000000000.0000000000","lease":"30s"}]}
//
// [Queue.Restore] accepts exactly the bytes Snapshot produces for a
// reachable state of a queue of the same name, and refuses anything else
// with an error, leaving the state unchanged. The state keeps every task
// ever enqueued, so that ids stay deduplicated.
//
// [Queue.Freeze] copies the tasks, sorting and encoding nothing, so that
// [Frozen.Snapshot] can encode them while the queue goes on: a caller
// that folds under a lock holds it only for the copy.
package machine
