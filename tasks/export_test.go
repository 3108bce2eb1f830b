package tasks

import (
	"time"

	"github.com/detbus/detbus/internal/fold"
)

// Hooks for the external tests.

// SnapshotData returns the encoding a snapshot of c would hold now, and
// the stream sequence it covers, without saving it.
func SnapshotData(c *Client) ([]byte, uint64, error) {
	f := c.freeze()
	data, err := f.encode()
	return data, f.seq, err
}

// Snapshot object metadata keys.
const (
	MetaStream  = fold.MetaStream
	MetaCreated = fold.MetaCreated
	MetaSeq     = fold.MetaSeq
	MetaHash    = fold.MetaHash
)

// SetStaleSnapshotAge sets the age after which other replicas' snapshots
// are pruned, until the returned function is called.
func SetStaleSnapshotAge(d time.Duration) (undo func()) {
	old := fold.StaleSnapshotAge
	fold.StaleSnapshotAge = d
	return func() { fold.StaleSnapshotAge = old }
}
