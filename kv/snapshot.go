package kv

import (
	"context"

	"github.com/detbus/detbus/internal/fold"
	"github.com/detbus/detbus/transport"
)

// openSnapshots returns the store of the snapshots of kv replicas of log:
// one object per replica in a JetStream object store bucket, holding the
// state's deterministic encoding, with the stream position it covers in
// the object's metadata.
func openSnapshots(ctx context.Context, log *transport.Log, opts Options) (*fold.SnapshotStore, error) {
	return fold.OpenSnapshots(ctx, log, fold.SnapshotConfig{
		Kind: "kv", What: "kv", Bucket: opts.Snapshots, Replica: opts.Replica, Format: dumpFormat, Logger: opts.Logger,
	})
}

// decodeSnapshot decodes a snapshot's data into a state and the sequence
// it covers.
func decodeSnapshot(data []byte) (*state, uint64, error) {
	st, err := loadState(data)
	if err != nil {
		return nil, 0, err
	}
	return st, st.applied, nil
}

// Snapshot writes a snapshot of the current state now (unless one of this
// state was written already) and returns the stream sequence it covers.
//
// Errors: the bucket's or NATS's, wrapped.
func (s *Store) Snapshot(ctx context.Context) (uint64, error) {
	return s.f.Snapshot(ctx)
}
