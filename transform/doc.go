// Package transform runs deterministic transforms (DETs): business logic
// written once, run as several identical instances with no leader, that
// read input events in the log's total order and race to append the same
// outputs. Exactly one output lands per index; every other instance checks
// that its own output equals the one that landed.
//
// # The contract of a DET
//
// A DET is a [Spec] (name, version, input ESKs, output ESK, constructor)
// and a [Transform] (Step, Snapshot, Restore). Outputs must depend only on
// the inputs (payload, ESK, index, stream position, time) and the DET's
// state, so that every instance computes the same bytes. A DET must not:
//
//   - read the wall clock: use [Context.Time], the input's time;
//   - draw unseeded randomness: use [Context.Rand], seeded from the input's
//     stream position;
//   - let map iteration order reach an output or a snapshot: iterate sorted
//     keys (encoding/json already sorts map keys);
//   - start goroutines, read files, call services, or keep state outside
//     what Snapshot encodes: anything that can differ between instances or
//     runs makes outputs differ;
//   - use floating point where results could depend on the order of
//     operations across instances.
//
// Output index k of the output ESK is a deterministic function of the
// input prefix: the number of outputs the DET emitted before.
//
// # Racing
//
// [Runner.Run] appends each output with existsOrWrite at its index. The
// fastest instance writes it (won); the others find it written and equal
// (lost). A slow or dead instance costs nothing: there is no election, the
// others keep winning. Instances follow the output ESK, so one that lags
// learns the landed outputs and compares them without publishing.
//
// # Divergence
//
// An instance whose output differs from the one that landed has found a
// divergence: a DET that is not deterministic, or instances running other
// logic. It is logged (with the output index, the input position and both
// sha256 hashes), counted in [Status], and handled by the
// [DivergencePolicy]: by default the instance stops with a
// [*DivergenceError]; with ObserveOnDivergence it keeps running as an
// observer that never writes again and reports every further divergence.
//
// # Bad input and step errors
//
// A DET should answer malformed input with an output of its own (a
// rejection). If Step returns an error, the runner records the input as
// rejected on "<output>.rejected" ({"input":{"esk","index","seq"},"error"}
// at the next index there) and goes on: the same on every instance, never
// a crash loop, never a silent skip. Step must leave the state unchanged
// when it returns an error.
//
// # Snapshots
//
// With a [SnapshotStore], an instance saves its state every N inputs or T
// seconds, keyed by DET name and input position, with the output count,
// the version and a sha256 of the state. A starting instance restores the
// newest snapshot and replays only what follows. Instances that snapshot
// the same position meet on the same key: differing hashes are reported
// as a snapshot divergence. A snapshot from another version is refused
// with [ErrSnapshotVersion].
package transform
