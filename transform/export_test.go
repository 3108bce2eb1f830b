package transform

// NewSnapshot builds a snapshot as an instance would, for tests of the
// store.
var NewSnapshot = newSnapshot
