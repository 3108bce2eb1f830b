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
//     [Log.WriteAsync] pipelines many writes.
//   - [Log.ExistsOrWrite] appends at an index only if the index equals the
//     ESK's count. It answers Written (by this call), Present (with whether
//     the present event has the same content) or an error: an
//     [*IndexAheadError] for an index past the count, [ErrInvalidESK] or
//     [ErrPayloadTooLarge] for bad input, [ErrUnavailable] when NATS does not
//     answer in time.
//   - [Log.Get] reads an (ESK, index); [Log.Count] and [Log.Counts] count.
//   - [Log.Events] streams events of literal or wildcard ESKs in total order
//     from a stream position, optionally following new ones.
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
// JetStream counts messages per subject but does not number them. A [Log]
// keeps, per ESK it touches, the stream sequence of every index it has
// learned (8 bytes an event), from facts about the stored log: a successful
// conditional append links its sequence to the one it expected, an ordered
// consumer delivers a subject's messages in order, and batched direct gets
// walk a subject forward from the last known sequence (up to 1000 sequences
// a round trip). The first read of a long ESK by a new Log walks it once;
// after that, reads by index and conditional appends cost one round trip.
// On replicated streams a direct get can be answered by a lagging replica;
// a walk that comes up short is retried, and the stream leader's count is
// the authority for "index ahead".
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
