// Package kv is a key/value store folded from the event log: every replica
// (a [Store]) reads the same ops in the log's total order and applies them
// to the conflict-free replicated data types of package crdt, so replicas
// that folded the same prefix of the log hold the same state, byte for
// byte (see [Store.Dump]).
//
// # Tables
//
// Each table is the ESK "kv.<table>": one event is one op. A table name is
// a single ESK token (printable ASCII, no dot, no wildcard; see
// [ValidateTable]). A table must be declared before use, in the built-in
// LWW table [ConfigTable] ("_config", ESK "kv._config"): setting key
// <table> to {"crdt":"<type>"} declares <table> with type lww, orset,
// counter, map or mvreg ([Store.CreateTable] does it).
//
//   - The first declaration in the log stays: a later declaration of the
//     same table with another type is rejected; one with the same type is
//     accepted and changes nothing. Deleting a declaration is rejected.
//   - An op on a table that is not declared at its log position is
//     rejected, even if a declaration follows later.
//
// # Ops
//
// An op is a JSON object (or msgpack map, see below). Fields, all
// snake_case:
//
//	lww      {"op":"set","key":"alice","value":{"age":3}}
//	         {"op":"delete","key":"alice"}
//	mvreg    {"op":"set","key":"k","value":<json>,"context":[<dot>,...]}
//	orset    {"op":"add","key":"k","element":"x"}
//	         {"op":"remove","key":"k","element":"x","observed":[<dot>,...]}
//	counter  {"op":"incr","key":"k","delta":5,"writer":"w"}
//	map      {"op":"set","key":"k","field":"f","value":<json>}
//	         {"op":"incr","key":"k","field":"f","delta":1,"writer":"w"}
//	         {"op":"remove","key":"k","field":"f","observed":[<dot>,...]}
//	_config  {"op":"set","key":"users","value":{"crdt":"lww"}}
//
// A dot is {"esk":"kv.t","index":3}: the event at index 3 of ESK kv.t,
// which is how the CRDTs name ops. "context", "observed", "delta" and
// "writer" are optional:
//
//   - "observed" absent: the remove removes every tag of the element
//     (field) present at the op's log position; [] removes none. With a
//     list, only those tags: an add the remover had not seen survives.
//   - "context" absent: the mvreg set replaces every value present at the
//     op's log position; with a list, only those values.
//   - "delta" absent means 1; negative decrements. "writer" absent means
//     the table's ESK.
//
// Since every replica folds the log in one total order, "present at the
// op's log position" is the same on every replica. Any other field, a
// field the op does not take, a repeated field, or null where a string,
// number or list belongs, makes the op malformed.
//
// A value is any JSON value, stored compacted (see package crdt). Keys,
// fields and elements are non-empty valid UTF-8 of at most [MaxKeyLength]
// bytes.
//
// Anything that publishes to the ESK writes an op, the nats CLI included:
//
//	nats pub events.kv._config '{"op":"set","key":"users","value":{"crdt":"lww"}}'
//	nats pub events.kv.users '{"op":"set","key":"alice","value":{"age":3}}'
//
// An event with the header Content-Type: application/msgpack is a msgpack
// map with the same field names; its "value" is a bin holding JSON text
// (what [Op.EncodeMsgpack] writes) or any msgpack value with a JSON form
// (nil, bool, integer, finite float, str, array, map with str keys),
// converted to JSON. Dots are maps with "esk" and "index". [DecodeOp]
// reads both forms.
//
// # Time and ties
//
// Registers (lww tables, map fields) keep the write with the greatest
// (time, dot), whatever the order ops arrive in. The time is the event's
// HLC header (Detbus-Hlc) when it has one, else the time the stream stored
// it, so that without headers a later op in the log wins unless the
// server's clock went back. This package's writes carry no header unless
// [Options].StampHLC asks for one (a header costs write throughput); ties
// go to the greater dot (ESK, then index). Other types do not use time.
//
// # Rejections
//
// The fold rejects, the same way on every replica: a payload that does
// not decode, an unknown op, an op or field the table's type does not
// have, a bad key, field or element, an op on an undeclared table or under
// an invalid table name, a conflicting re-declaration, and any op a CRDT
// refuses. A rejected op changes no state and never stops the fold: the
// next op is applied as usual. Rejections are counted per table
// ([TableInfo].Rejected; [Store.UndeclaredRejected] for tables not
// declared) and the newest [MaxRejections] of each table (and of the
// undeclared ones together) are kept with their position, reason and
// payload ([Store.Rejections]), and part of the state.
//
// # Reads and writes
//
// Reads (Get, Keys, Tables, Rejections) answer from the local state under
// a read lock and never wait for NATS. A key exists ([Value].Exists) while
// its CRDT holds a value; Keys lists existing keys only.
//
// Writes (Do and the helpers Set, Delete, Add, Remove, Incr, SetField,
// IncrField, RemoveField, CreateTable) check the op, publish it as JSON
// with one JetStream publish (no headers, unless asked), and return once
// this Store has folded it,
// with its position: read-your-writes on this Store, and a rejection by
// the fold comes back as the write's error. Another Store (in this process
// or another) reads the write after [Store.Wait] with that position;
// [Store.Sync] waits for everything in the log as of the call.
//
// [Store.Watch] streams changes as they are folded. The fold never waits
// for a watcher (see [WatchBuffer]).
//
// # Snapshots
//
// A Store saves its whole state ([Store.Dump]'s encoding) into a JetStream
// object store bucket (default [DefaultSnapshotBucket]; the state can be
// far larger than a message) every [Options].SnapshotEvery ops and every
// SnapshotInterval while ops arrive, as the object named by
// Options.Replica, with the stream sequence it covers, the stream's
// identity and a SHA-256 in the object's metadata. [Open] restores the
// newest valid snapshot of any replica (any replica's state at a sequence
// is the same) and folds only what follows; restoring and folding the rest
// gives the same bytes as folding everything. Encoding a snapshot holds
// off the fold for as long as it takes; saving it does not. A replica that
// saves a snapshot deletes those of other replicas that cover no more of
// the log and were not replaced for a day, so that replicas named after
// their process (the default) do not pile up.
//
// # Sites
//
// A Store opened on a site's own log (transport.Config.Site) folds every
// site's log, its own and its copies of the others', in one order every
// site computes alike, so sites that hold the same events hold the same
// bytes; positions, dots and writers name their site ("a:kv.users"). An
// event that arrives late is applied at its place by undoing the events
// after it and applying them again. Snapshots are taken at the last event
// of the site's own log that nothing to come can precede. See site.go
// and sitesnap.go for the rules, and the README's section on sites.
//
// # Concurrency
//
// A Store is safe for concurrent use. One goroutine folds; reads share a
// read lock with each other and wait only while the fold applies one
// batch of the events already read (at most 64), or while a snapshot is
// encoded.
//
// # Errors
//
// [ErrNoTable], [ErrNoKey], [ErrInvalidOp], [ErrTableType] and [ErrClosed]
// are wrapped with detail naming what was wrong; NATS failures wrap
// transport.ErrUnavailable.
package kv
