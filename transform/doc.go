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
// # Racing and group commit
//
// [Runner.Run] steps the inputs in one goroutine and hands the outputs, in
// order, to a committer that appends them in another: while one append is
// in flight the instance goes on stepping, and the outputs that pile up
// meanwhile go out together as one run ([transport.Log.AppendRun]: one
// fast batch of up to 1,000 outputs and 8 MiB, about one round trip
// whatever its length). An index holds the first output that reached it:
// the fastest instance writes it (won); the others find it written
// (lost) and compare it with their own, by hash. There is no election, and
// a slow, paused or dead instance costs nothing: the others keep winning.
// Instances follow the output ESKs, so one that lags learns the landed
// outputs and compares them without publishing; an instance that lost the
// last output waits a moment for the next to land before it races (its
// deference: three times how far the winner usually is behind it, at most
// Config.Deference), so racing costs the winner nothing and a paused
// winner delays one output by that moment. [Status] counts the outputs
// stepped but not yet settled (Pending) and the batches written.
//
// A panic in Step is a step error (see below), the same on every instance.
// When the inputs end for any reason but ctx, Run resumes after the last
// input applied.
//
// # Generations
//
// After a divergence, an output that instances contradict can never be
// extended. The DET goes on as its next generation ([Config.Generation]):
// generation N writes to "<output>.g<N>" ([GenerationOutput]), with its own
// rejections, claims and snapshots, from the first input or, with
// [Config.StartAfter], from the previous generation's confirmed snapshot
// at a chosen input; the older output stays as it was, for audit.
//
// # Shadows
//
// A shadow ([Config.Shadow]) computes the outputs of a new version from
// the first input and compares each with the one that landed, writing
// nothing: it counts the matches and mismatches and keeps the first
// mismatch (index, input, both hashes) in its [Status]. It is how a new
// version proves it computes what the running one does before it races.
//
// Package worker (transform/worker) runs DETs as worker processes with
// the flags of detbus worker, for a program that defines its own.
//
// # Provenance
//
// Every output and every rejection names the input it came from, in two
// headers: Detbus-Input, "<stream>:<esk>:<index>@<seq>", where stream is
// the input's origin stream ([transport.Log.ChainOrigin]: a copy of that
// stream, which keeps its sequences, can be found at any site), and
// Detbus-Input-Hash, the input's [transport.HashEvent]. Both depend on the
// input alone, so every instance writes the same; instances still compare
// outputs by their payloads. [transport.Log.Trace] and `detbus trace`
// follow them from any output back to the source's event, through DETs
// that read other DETs' outputs, checking each input against its hash.
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
// seconds, keyed by stream, DET name and input position, with the output
// count, the version and a sha256 of the state (a state over 256 KiB is
// kept in an object bucket, in chunks), and claims it in the log; only a
// snapshot the log confirms is a restore point. A starting instance restores the
// newest snapshot and replays only what follows. Instances that snapshot
// the same position meet on the same key: differing hashes are reported
// as a snapshot divergence. A snapshot from another version is refused
// with [ErrSnapshotVersion].
package transform
