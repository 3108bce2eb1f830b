// Package kv is a key/value store whose every replica folds the same event
// log into the same state, with the CRDTs of package crdt.
package kv
