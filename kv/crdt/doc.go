// Package crdt implements conflict-free replicated data types (CRDTs) for a
// key/value store whose replicas fold the same event log: a last-writer-wins
// register ([LWW]), an add-wins observed-remove set ([ORSet]), a PN-counter
// ([Counter]), a multi-value register ([MVReg]) and an add-wins map of
// registers and counters ([Map]).
//
// The types are pure: they do no I/O, read no clock, start no goroutines and
// use no randomness. Everything they compute follows from the ops given to
// them.
//
// # Ops
//
// Each type has an op struct ([LWWOp], [ORSetOp], [CounterOp], [MVRegOp],
// [MapOp]) describing one event's effect. Every op carries:
//
//   - Dot: the event's identity, its ESK and its index in that ESK's log.
//     A Dot is unique across the system, so ops with the same Dot are the
//     same op, and the types use it to recognise an op seen before. The zero
//     Dot (empty ESK) is rejected.
//   - TS: the event's hybrid logical clock time ([hlc.Timestamp]). Only the
//     registers ordered by time use it: [LWW] and the registers of [Map].
//     [ORSet], [Counter] and [MVReg] ignore it.
//
// The other fields are per type: a register write's JSON Value (LWWOp,
// MVRegOp, MapOp with [MapSet]), an LWW Delete, an OR-set Element and Remove
// flag, a counter's Writer and signed Delta (CounterOp, MapOp with [MapAdd]),
// and the Dots a writer had seen: a remove's Observed tags (ORSetOp, MapOp
// with [MapRemove]) and a multi-value write's Context (MVRegOp). A replica
// fills those from the state it reads ([ORSet.Tags], [Map.Tags],
// [MVReg.Context]).
//
// # Operations on a state
//
// Every type has the same methods:
//
//   - Apply(op) error applies one op. It is idempotent: applying an op that
//     was already applied, directly or through a merge, changes nothing.
//     Apply(op) has the same effect as merging in the state that holds only
//     op. An op it cannot accept (zero Dot, invalid JSON value, negative
//     wall time where a timestamp is stored, string fields that are not valid
//     UTF-8) is rejected with an error wrapping [ErrInvalidOp], and the state
//     is unchanged. The verdict depends on the op alone, never on the state,
//     so every replica rejects the same ops.
//   - Merge(other) joins another replica's state into the receiver. It is
//     commutative, associative and idempotent, up to Equal. The receiver
//     never shares memory with other afterwards.
//   - Value returns what the state means (see each type). Returned slices
//     and JSON values are copies.
//   - Equal(other) reports whether two states are the same, including the
//     bookkeeping (tombstones, hidden values) that Value does not show.
//   - Clone returns a deep copy.
//
// The zero value of each type is an empty state ready to use, and a nil
// pointer is read as an empty state by Value, Equal and Merge's argument.
//
// # Convergence
//
// Any two replicas that applied the same set of ops, in any order and with
// any duplication, directly or by merging states that were built from parts
// of the set, are Equal, and their MarshalJSON output is the same bytes.
//
// This holds even if a Dot is wrongly reused for two different ops: the
// types then keep one of them chosen by content (the LWW tie-break below,
// the greater counter delta for the same writer, the byte-wise greater
// multi-value register value), whatever the order.
//
// # Tie-break rule
//
// An [LWW] register (and a [Map] register) keeps the write with the greatest
// timestamp; writes with equal timestamps are ordered by Dot, ESK first
// (byte-wise) and then Index. The winner therefore never depends on the order
// ops arrived in. A delete is a write of a tombstone and competes the same
// way: a delete beats exactly the writes it is greater than.
//
// # Add-wins
//
// An add to an [ORSet] or an update of a [Map] key tags the element or key
// with the op's Dot. A remove removes only the tags in its Observed list, so
// an add the remover had not seen, such as a concurrent one, keeps the
// element present. An [MVReg] write likewise replaces only the values in its
// Context.
//
// # JSON values
//
// Register values are JSON, stored in the form encoding/json writes a
// [encoding/json.RawMessage]: compacted, with <, >, &, U+2028 and U+2029
// inside strings escaped. Values are otherwise opaque: {"a":1,"b":2} and
// {"b":2,"a":1} are different values.
//
// # Encoding
//
// MarshalJSON of each type encodes its whole state, tombstones included,
// with every list sorted (elements, keys and writers byte-wise, Dots by
// [Dot.Compare]) and no Go maps, so equal states encode to equal bytes.
// Timestamps use the [hlc.Timestamp] text form. UnmarshalJSON accepts that
// form only: unknown fields, null, trailing data, missing fields, unsorted
// or duplicated entries and zero Dots are rejected with an error wrapping
// [ErrMalformed], and the receiver is then unchanged.
//
// # Growth
//
// Removed tags, replaced values and counter ops are remembered for ever, so
// that an op delivered late is still recognised; states grow with the
// number of ops applied.
//
// # Concurrency
//
// Apply, Merge and UnmarshalJSON modify their receiver and must not run
// concurrently with any other use of it. Every other method only reads:
// Value, Equal, Clone, MarshalJSON and the other accessors, and Merge's
// argument, may be used by any number of goroutines at once while nothing
// modifies the state. A caller that shares a state between goroutines
// guards it with a read-write lock, or gives each goroutine a Clone.
package crdt
