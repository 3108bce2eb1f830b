// Package tasks is a task queue whose whole life is events on the detbus
// log: queues, tasks, claims, leases, retries and dead letters are
// operations appended to a queue's ESK and folded, in log order, by the
// deterministic state machine of package [machine].
//
// # Queues and operations
//
// Queue "emails" is ESK "tasks.emails" (subject "events.tasks.emails").
// Its events are the JSON operations documented by package machine:
// create_queue, enqueue, claim, heartbeat, complete, fail, cancel and
// requeue. Any publisher can write them, the nats CLI included:
//
//	nats pub -J events.tasks.emails '{"op":"create_queue","lease":"30s"}'
//	nats pub -J events.tasks.emails '{"op":"enqueue","id":"t1","payload":{"to":"a@b"}}'
//
// An event's time is its HLC time ([transport.Event.Time]): the client
// stamps its writes with the log's hybrid logical clock
// ([transport.WithHLC]); events without the header, such as the nats
// CLI's, take the stream's stored time. Leases and due times are judged
// at each event's time, so every client that folds the same events
// reaches the same state.
//
// # The client
//
// [Open] starts a goroutine that folds every queue ("tasks.>") from the
// newest valid snapshot (see Snapshots), or from the beginning of the log
// when there is none, and follows it; it returns once the fold has
// caught up with the log as of the call. Reads ([Client.Queues],
// [Client.List], [Client.Show], [Client.Dead], [Client.Rejections]) answer
// from that local state, without a round trip, and may lag the log.
// Writes ([Client.Create], [Client.Enqueue], [Client.Cancel],
// [Client.Requeue], or any operation with [Client.Append]) check the
// operation with [machine.Decode] first (bad input is an error wrapping
// ErrInvalid, nothing written), return the position once the log
// acknowledges the event, and do not wait for the fold: [Client.Wait]
// with that position gives read-your-writes, [Client.Outcome] what the
// event did, [Client.Sync] waits for everything written by anyone so
// far. Enqueue is idempotent by task id: retrying one whose outcome is
// unknown (a timeout) changes nothing the second time.
//
// # Bad input
//
// An event the machine rejects changes nothing and never blocks the
// queue: the next event is applied as usual. Rejections are visible: each
// queue counts them ([QueueInfo]) and keeps the newest with their
// position, reason and payload ([Client.Rejections]), split into
// malformed operations (bad JSON, unknown op or field, bad value, logged
// as warnings) and well-formed ones refused in the queue's state (a claim
// that lost the race, a report after the lease ended).
//
// # Snapshots
//
// A client saves what its fold holds into a JetStream object store
// bucket beside the log (Options.Snapshots, default
// [DefaultSnapshotBucket]), as the object named Options.Replica (default
// "<host>-<pid>"), so that the next [Open] reads only the tail of the
// log:
//
//   - What is saved: for every queue that has events, its machine state
//     ([machine.Queue.Snapshot]: configuration and every task), its
//     event count, and its kept rejections of each kind with their
//     counts; and the stream sequence of the last task event folded,
//     with its ESK. The encoding is deterministic (JSON, queues sorted by
//     name, rejections oldest first): clients that folded the same
//     events write the same bytes, whether they folded from the start or
//     from a snapshot, as long as they and the writer of that snapshot
//     keep the same number of rejections (Options.KeepRejections; a
//     client that keeps fewer than a snapshot holds keeps the newest,
//     and every client counts them all). Outcomes ([Client.Outcome])
//     are not saved: a restored client keeps those of the events it
//     folds itself.
//   - When: every Options.SnapshotEvery task events folded (default
//     [DefaultSnapshotEvery]), and Options.SnapshotInterval after the
//     last snapshot if events were folded since (default
//     [DefaultSnapshotInterval]); never while Open catches up, after
//     which one snapshot covers the catch-up if it folded SnapshotEvery
//     events or more; and on [Client.Snapshot]. A snapshot copies the
//     state under the fold's lock (each queue's tasks into one slice,
//     sorting and encoding nothing), then encodes and saves the copy
//     in another goroutine, one snapshot at a time, while the fold goes
//     on. Saving replaces the replica's object, and deletes the objects
//     of other replicas of the same stream that cover no more of the log
//     and were not replaced for a day (replicas named after their
//     process leave one each).
//   - How it is checked: the object's metadata names the stream, its
//     subject prefix, the stream's creation time, the sequence covered,
//     the format and a SHA-256 of the data. Open considers the snapshots
//     of its stream and prefix (others are ignored), newest first, and
//     skips, with a warning to Options.Logger, one of another format,
//     of another incarnation of the stream (another creation time), or
//     covering a sequence past the stream's last; one whose data does
//     not match its hash; one that does not decode to a state folding
//     can reach (each queue's machine state must be in the canonical
//     form [machine.Queue.Restore] accepts, the rest consistent); and
//     one that does not match the log: the event at the sequence it
//     covers must be, on the ESK it names, the last one it counts. The
//     first snapshot that passes is restored; with none, the fold starts
//     from the beginning. Options.NoRestore ignores snapshots. The hash
//     detects damage, not forgery: whoever may write the bucket can
//     write a snapshot that passes, so NATS permissions should let only
//     trusted clients write it.
//   - What Open costs: a stream info request, listing the bucket,
//     reading, hashing and decoding the snapshot, which grow with the
//     state held (every task ever enqueued, finished ones included),
//     and one index lookup; then the task events after the snapshot,
//     which are all it reads of the log. Measured on one node with a
//     million task events (333,333 tasks) before a snapshot of 39 MB:
//     folding them all takes about 4.5 s, opening from the snapshot
//     and folding the 3,000 events after it about 1.2 s.
//
// # Workers
//
// A [Worker] claims tasks of one queue and runs a [Handler] on each, at
// most Concurrency at once:
//
//   - Claims name no task. The fold decides claims one at a time in log
//     order and gives each the best claimable task (priority, then
//     enqueue order), so claims by competing workers do not collide:
//     while tasks are claimable every claim wins a different one, and
//     workers are served in the order their claims land. A worker learns
//     whether its claim won when its own fold reaches it.
//   - A worker claims only when its fold shows claimable tasks, and no
//     more than its free slots and the claimable tasks not already
//     covered by its own claims in flight, so it never holds tasks it
//     cannot start and an idle worker writes nothing. The one cost of
//     contention is when fewer tasks are claimable than workers ask for:
//     each idle worker can then lose one claim (a refused event) per
//     newly claimable task. Due times and lease expiries wake the worker
//     when they fall due.
//   - While a handler runs, the worker heartbeats every HeartbeatEvery
//     (default a third of the lease). The handler's context is cancelled
//     with cause ErrLeaseLost when the lease is lost: LeaseMargin before
//     it ends by the worker's clock with no heartbeat accepted, or as soon
//     as the fold shows a heartbeat refused, the task cancelled, or the
//     task claimed by another attempt.
//   - A nil error completes the task; an error fails the attempt with its
//     text, and the machine retries it after the queue's backoff or moves
//     it to the dead letters after the last attempt. A panic is an
//     error. A report is not written when the fold shows the task is no
//     longer the attempt's.
//   - Run's context ends claiming; running handlers have ShutdownTimeout
//     to finish, after which their contexts are cancelled with cause
//     ErrShutdown; Run returns once their reports are acknowledged.
//   - A worker with a free slot also dead-letters tasks whose last
//     attempt's lease expired (a claim naming the task), which claims
//     without id skip.
//
// Execution is at least once: a task runs again when its worker dies,
// stalls past its lease or cannot write its report, and only a report
// from the current lease holder is accepted. Two attempts of a task never
// hold the lease at the same time; their handlers overlap only if a
// handler ignores its context or clocks are skewed by more than
// LeaseMargin.
//
// # Concurrency
//
// A Client is safe for concurrent use; reads wait only while the fold
// applies one batch of the events already read (at most 64) or a
// snapshot copies the state. A Worker runs once. Many clients and
// workers, in any processes, share queues through the log only.
package tasks
