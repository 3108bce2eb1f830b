// Package transport is detbus's event log on NATS JetStream, and everything
// else that touches NATS: an embedded server, connecting to external ones,
// provisioning the stream, codecs, header names and trace propagation.
//
// # The log
//
// The distributed event log (DEL) is one JetStream stream (default EVENTS,
// subjects "events.>"). Each event source key (ESK) is a literal subject
// under the prefix: ESK "orders.eu" is subject "events.orders.eu". The
// stream sequence is the log's total order. An event's index is its
// 0-based position among the events of its ESK; indices are contiguous from
// 0 with no gap and no duplicate, whoever wrote the events, because the
// stream denies delete, purge and rollup, so positions never shift.
//
// Anything that publishes to the subject writes an event: [Log.Write], the
// request service ([NewService]) or `nats pub -J events.orders.eu '{...}'`.
// Events without the SDK's headers are first-class: their index is their
// position, their time is the stream's timestamp, their content is JSON.
//
// # Operations
//
//   - [Log.Write] appends unconditionally and returns the position;
//     [Log.WriteAsync] pipelines many writes. [Log.Publish] and
//     [Log.PublishAsync] append without learning the index.
//   - [Log.ExistsOrWrite] appends at an index only if the index equals the
//     ESK's count. It answers Written (by this call), Present (with whether
//     the present event has the same content) or an error: an
//     [*IndexAheadError] for an index past the count, [ErrInvalidESK] or
//     [ErrPayloadTooLarge] for bad input, [ErrUnavailable] when NATS does not
//     answer in time.
//   - [Log.Get] reads an (ESK, index); [Log.Count] and [Log.Counts] count.
//   - [Log.Events] streams events of literal or wildcard ESKs in total order
//     from a stream position, optionally following new ones.
//   - [Log.Range] reads consecutive events of an ESK from an index, and
//     [Log.Seek] finds an ESK's first event at or after a stream
//     position, with its index; a [Directory] lists the log's ESKs page by
//     page, with counts and last events, among hundreds of thousands.
//   - [Log.Bucket] and [Log.Objects] keep state beside the log (snapshots,
//     status) in key/value and object store buckets; [Log.Serve] and
//     [Log.Request] let a node answer questions about state it folded.
//
// # How conditional appends stay honest
//
// ExistsOrWrite publishes with Nats-Expected-Last-Subject-Sequence set to
// the sequence of the ESK's last known event. A conflict reply (JetStream
// error 10071, 10164 or 10158), a timeout or a lost reply is not proof that
// the append did not happen: after a partitioned leader rejoins, appends can
// be stored although their writer was told otherwise. So every such reply is
// resolved by reading back what now stands at the index; each call carries a
// unique Detbus-Write-Id header, which tells "written by this call" from
// "written by another". Retrying the same conditional publish is safe: at
// most one publish can match the expected last sequence.
//
// # How indices are known
//
// JetStream counts messages per subject but does not number them, so a
// Log learns indices from server counts, with a cost that does not grow
// with the log's history:
//
//   - The tail. The stream leader counts the ESK's events (stream info
//     with a subject filter) and returns its last event (the JetStream
//     API's message get, which only the leader answers). Asked count,
//     last event, count, one after the other: when the counts agree,
//     nothing landed in between, so the last event's index is the count
//     minus one. A conditional append at the count expects that event.
//   - Any other position. A batched direct get stamps its reply with the
//     number of the subject's messages that follow the one returned
//     (Nats-Num-Pending), under the stream's read lock. For two events a
//     and m of an ESK read from one server at one instant, index(m) -
//     index(a) = pending(a) - pending(m). A known fact serves as a: its
//     reading, m's, and its reading again, pipelined on one connection,
//     are handled by one server in that order, and when the two readings
//     of a agree the difference is exact. A read by index searches with
//     such rounds, probing the interpolated position first, and walks
//     the last stretch of at most 1000 events with one headerless batch.
//   - Replicated streams. Direct gets are answered by any replica, so
//     each request of a round carries a Nats-Trace-Dest header; the
//     server the client is connected to reports which server took it,
//     and only readings made by the same server are paired. Servers that
//     do not trace (before NATS 2.11) are read by walking instead.
//   - Facts. An (index, sequence) pair once true stays true, since the
//     stream denies delete and purge. A Log keeps at most 32 facts for
//     each of at most 4096 ESKs, the least recently used forgotten first
//     (under 2 MiB in all): a writer's own tail, what reads and streams
//     taught it. A writer that knows its ESK's tail confirms its next
//     writes with one headerless read of the events after it, and a
//     stream of events numbers each ESK's events from the first one it
//     looked up (from the log's start, an ESK's first event is index 0:
//     no lookup at all).
//
// A negative answer (no such index, an index ahead of the count) is
// decided by the count of a stream leader that heard from a majority of
// its replicas within [LeaderLease]. [Log.ReadStats] counts what a Log has
// read, for tests and operators that check what a path costs.
//
// Which write to use: [Log.Write] returns the index (one extra headerless
// read when the Log knows the ESK's tail); [Log.Publish] and
// [Log.PublishAsync] return only the stream position, at the speed of a
// raw JetStream publish, and [Log.IndexOf] finds the index when it is
// needed. A source that does not read its own indices should publish; a
// writer that needs indices for every event, such as a test oracle,
// should [Log.WriteAsync]; an appender racing for indices uses
// [Log.ExistsOrWrite].
//
// # The hash chain
//
// Each stream carries a hash chain: the chain after an event is
// [ChainLink] of the chain before it and the event's [HashEvent] (its
// subject, stream sequence, stored time, headers other than JetStream's
// "Nats-" ones, and payload), over every message in sequence order from
// the zero [Hash]. All of it is what a JetStream mirror keeps, so a
// site's copy of a log ([Log.Copy], or any mirror) has the same chain as
// its origin. [Log.Chain] extends the chain from any [ChainPoint] with
// batched direct gets.
//
// A node appends checkpoints ([Checkpoint]: stream, position, chain hash)
// on the reserved ESK [ChainESK], which only admins may write
// ([Log.RunCheckpoints]; `detbus serve --chain-every N --chain-interval
// T`). [Log.VerifyChain] recomputes the chain of a stream or a copy and
// checks every checkpoint it meets: a checkpoint that disagrees while a
// later one agrees is forged; a stream that disagrees with every
// checkpoint from some position on differs from what its checkpoints
// confirmed (VerifyOptions.Against, the origin, locates the first event
// that differs). It resumes after the last checkpoint it confirmed, so a
// verification costs the events since. Reads that verify take only the
// stream's own answers: a mirror of a stream that allows direct gets
// answers the stream's direct gets too (JetStream's mirror direct, which
// a mirror inherits), and those replies are asked again. Checkpoints are
// not signed: they are as trustworthy as the admins of the log, and a
// copy's checkpoints as its origin's.
//
// # Where an output came from
//
// A DET's outputs name their input ([InputRef]: origin stream, ESK,
// index, sequence, and the input's HashEvent) in the headers
// [HeaderInput] and [HeaderInputHash] ([Log.AppendRunFrom], [WithInput]).
// [Log.Trace] walks from any event back through the inputs named, from
// stream to stream (the log's own, a stream of the name, or a mirror of
// it), to a source's event, and reports the first link whose input is
// missing or does not match its hash as a [*BrokenLinkError].
//
// # Sites
//
// A site ([SiteConfig], [Config].Site) is a node or cluster with a log of
// its own, "<Stream>_<site>", linked to other sites by NATS gateways; it
// holds a copy of every other site's log, a JetStream mirror that keeps
// the origin's sequences and stored times and resumes after a partition
// ([Log.SyncCopies], [Log.Copies], [Log.Copy]). A write needs only its own
// site, which keeps taking writes while cut off, and after a restart
// while cut off (its server keeps a leafnode connection from an
// in-process keeper, without which NATS would not restore its streams
// until a link came back). Conditional appends on another site's ESKs go
// through [Log.Owner] and need that site. Reading a copy feeds the site's
// HLC clock, at most [MaxClockLead] ahead of its wall clock.
//
// # Input bounds
//
// ESKs are validated by [ValidateESK] (tokens of printable ASCII, no empty
// token, no wildcard, at most [MaxESKLength] bytes and [MaxESKTokens]
// tokens); payloads are bounded by [Config.MaxPayload] (default NATS's own
// 1 MiB). Codecs ([JSON], [Msgpack]) decode only into concrete types and
// check msgpack structure before decoding, so hostile input cannot make
// them allocate more than a small multiple of its size.
//
// # Durability
//
// An acknowledged write is in the server's file store. With NATS's default
// sync interval (two minutes) a power loss or kernel crash can lose the
// writes of that interval; a process crash cannot. [ServerConfig.Sync]
// chooses "always" (fsync before every acknowledgement) or an interval.
//
// # Tracing
//
// Write, ExistsOrWrite and consumption make OpenTelemetry spans
// (detbus.write, detbus.exists_or_write, detbus.receive) with the global
// tracer provider unless [Config.Tracer] is set, and carry W3C trace context
// in the event's headers, so a consumer's span joins the writer's trace.
//
// # Concurrency
//
// A [Log] is safe for concurrent use by many goroutines. Instances in
// different processes coordinate only through the stream.
package transport
