// Package fold is the machinery shared by the clients that fold the log
// into state (kv.Store, tasks.Client): it follows one or more logs from a
// position, applies each event under the client's lock, keeps the
// outcomes of recent events, serves waits for positions, and schedules,
// saves and restores snapshots that the log confirms. The client brings
// its deterministic core (what one event does to the state) and its
// encoding; everything about reading, waiting and snapshotting is here,
// once.
//
// # Sources and positions
//
// A [Source] is one log: its events come in the log's order, each with a
// sequence that grows along the log (a JetStream stream sequence;
// [LogSource] reads the events of some ESKs of a transport.Log). A fold
// reads every source in [Config].Sources, and its position is one
// sequence per source, its cursor: the sequence of the last event of that
// source applied, 0 before the first. Positions of different sources are
// not comparable; a fold never orders one source's events against
// another's. A fold of one source (every client today) applies the log's
// events in the log's order. A fold of several (a site's own log beside
// copies of other sites' logs) applies each source's events in that
// source's order and interleaves the sources as their events arrive, so
// its state must not depend on that interleaving (a CRDT's does not).
// Snapshots cover one source only ([Config].Snapshots needs exactly one).
//
// # Applying
//
// One goroutine per source reads batches of events from the cursor on
// and hands each event to [Config].Apply with [Config].Mu held for
// writing, at most [MaxHold] events per hold, so that reads (which hold
// Mu for reading) wait at most for one hold. An event at or below the
// cursor is skipped, so each event of a source is applied once, in
// order, even when a source repeats itself after a restart. Apply returns
// the event's outcome, which the fold keeps for the newest
// [Config].KeepOutcomes events of each source ([Fold.Outcome]).
//
// Within a hold, Apply may do anything the client's state needs (keep
// rejections in a [Rejections], notify [Watchers]); it must not block
// and must not call the fold. After the hold the cursor moves, and only
// then do [Fold.Wait] calls for those positions return: once Wait(src,
// seq) returns, reads under Mu see the event at seq of src and every
// event of src before it, its outcome is kept, and watchers have been
// called with it.
//
// # Failures
//
// A source that fails (NATS unavailable, a consumer lost) is read again
// after the cursor, 50ms later and then twice as long each time up to a
// second, until the fold closes; the failure is logged to
// [Config].Logger and returned by [Fold.Err] until the next event is
// applied. Nothing is skipped: a failure delays the fold, it never loses
// or repeats an event.
//
// # Waiting
//
// [Fold.Wait] returns once a source's cursor reaches a sequence; [Fold.Sync]
// once every source's cursor reaches the last event the source held when
// Sync was called (asking the log). Waiters are kept in a heap per source,
// so the fold releases those that are due without scanning the others.
// Both return ctx's error, or [ErrClosed] once the fold is closed (a wait
// that is already satisfied returns nil even then).
//
// # Snapshots
//
// With [Config].Snapshots a fold saves its client's state every
// [Config].SnapshotEvery events applied and [Config].SnapshotInterval
// after the last snapshot when events were applied since, one snapshot
// at a time, never while snapshots are held ([Fold.HoldSnapshots], for a
// client catching up) and never twice for one position. [Fold.Snapshot]
// takes one at once. The client's [Config].Encode produces the bytes and
// the sequence they cover, holding Mu for reading for as long as it
// needs; saving does not hold anything up. [Fold.Close] waits for a save
// in progress, so what the bucket holds does not change after it.
//
// A [SnapshotStore] keeps the snapshots of one kind of client in a
// JetStream object bucket, one object per replica, with the stream, its
// subject prefix and creation time, the sequence covered, the format and
// a SHA-256 of the data in the object's metadata. Saving first appends a
// claim of the hash at the sequence to the log (package claims), on an
// ESK only the node's users with the right to write the reserved prefix
// may write. [Restore] considers the snapshots of the same stream and
// prefix, newest first, and restores the first that is of the client's
// format, of this incarnation of the stream (same creation time, not past
// its last sequence), matches its hash, decodes, passes the client's own
// check against the log, and is confirmed by the log's claims (see the
// security model in DESIGN.md: nothing read from a bucket is trusted
// without a check the reader can make). Every other is skipped with a
// warning, and with none left the client folds from the start.
//
// # Concurrency
//
// A Fold is safe for concurrent use. Config.Apply runs in the fold's
// goroutines only, one call at a time (with several sources, still one at
// a time: every call holds Mu).
package fold
