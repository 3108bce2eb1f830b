// Package ranges assigns key ranges to nodes with the CRDT key/value store
// (package kv): nodes register and release ranges with priorities, and
// every replica works out the same owner of every range from the store's
// state alone.
//
// # State
//
// The claims live in one kv table of type map (default "ranges"): the key
// is a range ("start..end"), the field a node, and the field's counter the
// node's priority for the range. The map is add-wins, so a claim is
// present while a registration has not been released by a later release
// of the same node; the counter is a PN-counter, so priorities move up and
// down by increments. A node writes only its own claims.
//
// # Ownership
//
// The owner of a range is the node whose present claim has the highest
// priority, ties going to the node name that sorts first ([Decide]). It is
// a function of the table's state, which every replica that folded the
// same ops holds, so every replica names the same owners, whatever the
// order in which the nodes wrote.
//
// # Usage
//
//	store, _ := kv.Open(ctx, log, kv.Options{})
//	reg, _ := ranges.Open(ctx, store, "")
//	reg.Register(ctx, "node-1", ranges.Range{Start: "a", End: "m"}, 5)
//	reg.Release(ctx, "node-1", ranges.Range{Start: "a", End: "m"})
//	owners, _ := reg.Owners()          // every claimed range and its owner
//	o, ok, _ := reg.OwnerOf("carol")   // the owner of a key
//
// The runnable demo is examples/ranges/demo.
package ranges
