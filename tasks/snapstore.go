package tasks

import (
	"context"
	"fmt"
	"time"

	"github.com/detbus/detbus/internal/fold"
	"github.com/detbus/detbus/transport"
)

// openSnapshots returns the store of the snapshots of task clients of
// log: one object per replica in a JetStream object store bucket,
// holding the state's deterministic encoding, with the stream position it
// covers in the object's metadata.
func openSnapshots(ctx context.Context, log *transport.Log, opts Options) (*fold.SnapshotStore, error) {
	return fold.OpenSnapshots(ctx, log, fold.SnapshotConfig{
		Kind: "tasks", What: "task client", Bucket: opts.Snapshots, Replica: opts.Replica, Format: snapFormat, Logger: opts.Logger,
	})
}

// withDefaultTimeout gives ctx a deadline d away if it has none.
func withDefaultTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}

// confirmSnapshot checks a snapshot against the log: the event at the
// sequence it covers is the last one it counts of the ESK it names.
func confirmSnapshot(log *transport.Log) func(context.Context, *restoredState) error {
	return func(ctx context.Context, st *restoredState) error {
		index, err := log.IndexOf(ctx, st.last, st.seq)
		if err != nil {
			return err
		}
		if index+1 != st.counts[st.last] {
			return fmt.Errorf("%w: the event at seq %d is index %d of %s, the snapshot counts %d events", errCorrupt, st.seq, index, st.last, st.counts[st.last])
		}
		return nil
	}
}

// Snapshot writes a snapshot of the state folded so far now, unless one
// of this state was written or restored already, and returns the stream
// sequence it covers (0 before the first task event, writing nothing).
// It copies the state under the fold's lock and encodes and saves the
// copy without it. It may be called at any time, after Close too, and
// concurrently with the client's own snapshots; snapshots are written
// one at a time. Without a deadline on ctx, it gives up after the log's
// timeout.
//
// Errors: the bucket's or NATS's (transport.ErrUnavailable,
// transport.ErrForbidden), wrapped; ctx's error.
func (c *Client) Snapshot(ctx context.Context) (uint64, error) {
	ctx, cancel := withDefaultTimeout(ctx, c.log.Config().Timeout)
	defer cancel()
	return c.f.Snapshot(ctx)
}

// encodeSnapshot copies the state under the lock and encodes the copy
// without it.
func (c *Client) encodeSnapshot() ([]byte, uint64, error) {
	f := c.freeze()
	data, err := f.encode()
	return data, f.seq, err
}
