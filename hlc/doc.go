// Package hlc implements a hybrid logical clock (HLC): a clock whose
// timestamps pair a physical wall time with a logical counter, so that they
// stay close to real time while also capturing the happened-before order of
// events exchanged between nodes.
//
// A [Timestamp] is a pair (WallTime, Logical). WallTime is a Unix time in
// nanoseconds read from a physical clock; Logical is a counter that
// disambiguates events which share a wall time. Timestamps are ordered first
// by WallTime and then by Logical (see [Timestamp.Compare]). A [Clock] hands
// out timestamps with [Clock.Now] for local and send events and merges
// timestamps received from other nodes with [Clock.Update].
//
// # Monotonicity
//
// For a single [Clock], every timestamp returned by [Clock.Now] or
// [Clock.Update] is strictly greater than every timestamp that Clock returned
// before it. When the wall clock has advanced past the last issued
// timestamp, the new timestamp takes the wall time with a logical value of
// zero; otherwise the last timestamp is kept and its logical counter is
// incremented. Should the logical counter reach its maximum, the wall time
// is advanced by one nanosecond and the counter restarts at zero, so
// monotonicity holds even then.
//
// # Causality
//
// When a node receives a message carrying a remote timestamp r and passes it
// to [Clock.Update], the returned timestamp, and every later result of
// [Clock.Now] on that Clock, is strictly greater than r. Timestamps carried
// on messages therefore respect causality: an event that could have been
// influenced by another event always has a greater timestamp. The converse
// does not hold; a greater timestamp does not imply a causal relation.
//
// # Bounded skew
//
// A Clock may be configured with a maximum offset (see [NewClock]). A remote
// timestamp whose wall time is more than the maximum offset ahead of the
// local wall clock is treated as untrustworthy: [Clock.Update] rejects it
// with an [*OffsetError] wrapping [ErrUntrustedRemote] and leaves the clock
// exactly as it was. This prevents a single node with a badly skewed clock
// from dragging every other clock arbitrarily far into the future. Remote
// timestamps that are behind the local clock are always accepted. A maximum
// offset of zero disables the check.
//
// # Ties
//
// Timestamps are unique only per Clock. Two different nodes can issue equal
// timestamps for unrelated events, because each node's clock is independent.
// Callers that need a total order across nodes must break ties with a unique
// event identity, for example a node identifier together with a per-node
// sequence number, compared after the timestamp.
//
// # Concurrency
//
// [Clock] and [ManualClock] are safe for concurrent use by multiple
// goroutines. [Timestamp] is a small value type; copies may be used freely.
//
// # Hazards
//
// The physical clock is not trusted to be monotonic. If the wall clock jumps
// backwards, for example after an NTP correction, [Clock.Now] keeps the
// wall time of the last issued timestamp and increments the logical counter
// until the wall clock catches up again, so the timestamps it issues remain
// strictly increasing. During such a period the timestamps drift ahead of the
// wall clock by the size of the jump. Likewise, accepting a remote timestamp
// within the maximum offset can push the clock ahead of the local wall time
// by up to that offset.
//
// # Encoding
//
// [Timestamp.String] renders a timestamp as "<wall>.<logical>", with the
// wall time zero-padded to 19 decimal digits and the logical counter to 10,
// so that for non-negative wall times the lexical order of the strings equals
// the timestamp order. [Parse] reads that form back. The same form is used by
// [Timestamp.MarshalText], and hence in JSON, and as the value of the
// [Header] message header.
package hlc
