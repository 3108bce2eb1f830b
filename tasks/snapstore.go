package tasks

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/detbus/detbus/internal/claims"
	"github.com/detbus/detbus/transport"
)

// Snapshot object metadata keys.
const (
	metaFormat  = "detbus-tasks-format"
	metaStream  = "detbus-stream"
	metaPrefix  = "detbus-prefix"
	metaCreated = "detbus-stream-created"
	metaSeq     = "detbus-seq"
	metaHash    = "detbus-sha256"
)

// snapshots reads and writes the snapshots of a client: one object per
// replica in a JetStream object store bucket, holding the state's
// deterministic encoding, with the stream position it covers in the
// object's metadata.
type snapshots struct {
	log     *transport.Log
	opts    Options
	stream  string
	prefix  string
	created string // the stream's creation time, telling a recreated stream apart
	lastSeq uint64 // the stream's last sequence at Open

	mu  sync.Mutex
	obs *transport.Objects // nil until bound or created
}

func openSnapshots(ctx context.Context, log *transport.Log, opts Options) (*snapshots, error) {
	cfg := log.Config()
	ctx, cancel := withDefaultTimeout(ctx, cfg.Timeout)
	defer cancel()
	st, err := log.State(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("tasks: stream %q: %w", cfg.Stream, err)
	}
	return &snapshots{
		log: log, opts: opts, stream: cfg.Stream, prefix: cfg.Prefix,
		created: st.Created.Format(time.RFC3339Nano), lastSeq: st.LastSeq,
	}, nil
}

// withDefaultTimeout gives ctx a deadline d away if it has none.
func withDefaultTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}

// bind binds the bucket, creating it when create is set.
func (sn *snapshots) bind(ctx context.Context, create bool) (*transport.Objects, error) {
	sn.mu.Lock()
	defer sn.mu.Unlock()
	if sn.obs != nil {
		return sn.obs, nil
	}
	obs, err := sn.log.Objects(ctx, sn.opts.Snapshots, "detbus task client snapshots", create)
	if err != nil {
		return nil, err
	}
	sn.obs = obs
	return obs, nil
}

// restore returns the state of the newest valid snapshot, or nil.
func (sn *snapshots) restore(ctx context.Context, lg *slog.Logger) *restoredState {
	ctx, cancel := withDefaultTimeout(ctx, max(sn.log.Config().Timeout, time.Minute))
	defer cancel()
	obs, err := sn.bind(ctx, false)
	if err != nil {
		if !errors.Is(err, transport.ErrNotFound) {
			lg.Warn("tasks: snapshots unavailable, folding from the start", "bucket", sn.opts.Snapshots, "err", err)
		}
		return nil
	}
	infos, err := obs.List(ctx)
	if err != nil {
		lg.Warn("tasks: cannot list snapshots, folding from the start", "bucket", sn.opts.Snapshots, "err", err)
		return nil
	}
	type cand struct {
		name string
		seq  uint64
		hash string
	}
	var cands []cand
	for _, in := range infos {
		m := in.Metadata
		if m[metaStream] != sn.stream || m[metaPrefix] != sn.prefix {
			continue // another log's
		}
		seq, err := strconv.ParseUint(m[metaSeq], 10, 64)
		if err != nil || m[metaFormat] != strconv.Itoa(snapFormat) {
			lg.Warn("tasks: skipping a snapshot of another format", "object", in.Name, "format", m[metaFormat], "seq", m[metaSeq])
			continue
		}
		if m[metaCreated] != sn.created || seq > sn.lastSeq {
			lg.Warn("tasks: skipping a snapshot of another incarnation of the stream", "object", in.Name, "seq", seq,
				"stream_created", m[metaCreated], "last_seq", sn.lastSeq)
			continue
		}
		cands = append(cands, cand{in.Name, seq, m[metaHash]})
	}
	slices.SortFunc(cands, func(a, b cand) int { return cmp.Compare(b.seq, a.seq) }) // newest first
	for _, c := range cands {
		if ctx.Err() != nil {
			lg.Warn("tasks: no time left to restore a snapshot, folding from the start", "err", ctx.Err())
			return nil
		}
		data, _, err := obs.Get(ctx, c.name)
		if err != nil {
			lg.Warn("tasks: cannot read a snapshot", "object", c.name, "seq", c.seq, "err", err)
			continue
		}
		sum := sha256.Sum256(data)
		if hex.EncodeToString(sum[:]) != c.hash {
			lg.Warn("tasks: a snapshot does not match its hash", "object", c.name, "seq", c.seq)
			continue
		}
		st, err := decodeSnapshot(data, sn.opts.KeepRejections)
		if err == nil && st.seq != c.seq {
			err = fmt.Errorf("%w: it covers seq %d, its metadata says %d", errCorrupt, st.seq, c.seq)
		}
		if err != nil {
			lg.Warn("tasks: a snapshot does not decode", "object", c.name, "seq", c.seq, "err", err)
			continue
		}
		if err := sn.confirm(ctx, st); err != nil {
			lg.Warn("tasks: a snapshot does not match the log", "object", c.name, "seq", c.seq, "err", err)
			continue
		}
		if err := claims.Check(ctx, sn.log, claims.ESK("tasks", c.seq), c.hash); err != nil {
			lg.Warn("tasks: a snapshot the log does not confirm", "object", c.name, "seq", c.seq, "err", err)
			continue
		}
		return st
	}
	return nil
}

// confirm checks a snapshot against the log: the event at the sequence
// it covers is the last one it counts of the ESK it names.
func (sn *snapshots) confirm(ctx context.Context, st *restoredState) error {
	index, err := sn.log.IndexOf(ctx, st.last, st.seq)
	if err != nil {
		return err
	}
	if index+1 != st.counts[st.last] {
		return fmt.Errorf("%w: the event at seq %d is index %d of %s, the snapshot counts %d events", errCorrupt, st.seq, index, st.last, st.counts[st.last])
	}
	return nil
}

// save writes data, a snapshot covering seq, as this replica's object.
func (sn *snapshots) save(ctx context.Context, data []byte, seq uint64) error {
	obs, err := sn.bind(ctx, true)
	if err != nil {
		return fmt.Errorf("tasks: snapshot bucket %q: %w", sn.opts.Snapshots, err)
	}
	sum := sha256.Sum256(data)
	if err := claims.Make(ctx, sn.log, claims.ESK("tasks", seq), sn.opts.Replica, hex.EncodeToString(sum[:])); err != nil {
		return fmt.Errorf("tasks: snapshot at seq %d: %w", seq, err)
	}
	meta := map[string]string{
		metaFormat: strconv.Itoa(snapFormat), metaStream: sn.stream, metaPrefix: sn.prefix,
		metaCreated: sn.created, metaSeq: strconv.FormatUint(seq, 10), metaHash: hex.EncodeToString(sum[:]),
	}
	if err := obs.Put(ctx, sn.opts.Replica, "detbus task client state at seq "+strconv.FormatUint(seq, 10), meta, data); err != nil {
		return fmt.Errorf("tasks: save snapshot %q at seq %d: %w", sn.opts.Replica, seq, err)
	}
	sn.prune(ctx, obs, seq)
	return nil
}

// staleSnapshotAge is how long a snapshot of another replica may go
// unreplaced before a replica that saves a newer one deletes it: that
// replica is taken to be gone (replicas named after their process leave
// one behind each).
var staleSnapshotAge = 24 * time.Hour

// prune deletes the snapshots of the same stream that cover at most seq
// and were not replaced for staleSnapshotAge. Failures are left for the
// next save.
func (sn *snapshots) prune(ctx context.Context, obs *transport.Objects, seq uint64) {
	infos, err := obs.List(ctx)
	if err != nil {
		return
	}
	for _, in := range infos {
		m := in.Metadata
		if in.Name == sn.opts.Replica || m[metaStream] != sn.stream || m[metaPrefix] != sn.prefix || time.Since(in.Modified) < staleSnapshotAge {
			continue
		}
		if s, err := strconv.ParseUint(m[metaSeq], 10, 64); err == nil && s <= seq {
			_ = obs.Delete(ctx, in.Name)
		}
	}
}

// snapshotLoop writes a snapshot when the fold asks (every SnapshotEvery
// events) or SnapshotInterval after the last one, if anything was folded
// since, until ctx is done; none while Open catches up.
func (c *Client) snapshotLoop(ctx context.Context) {
	defer c.loops.Done()
	var tick <-chan time.Time
	if c.opts.SnapshotInterval > 0 {
		t := time.NewTicker(c.opts.SnapshotInterval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.snapDue:
		case <-tick:
		}
		if ctx.Err() != nil || c.catchUp.Load() || c.sinceSnap.Swap(0) == 0 {
			continue
		}
		// Close does not cut a save short but waits for it: a save
		// cancelled half-way may still land after its error (NATS stores
		// messages whose acknowledgement nobody waited for), changing the
		// stored snapshot after Close returned.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), max(c.log.Config().Timeout, time.Minute))
		_, err := c.snapshot(sctx)
		cancel()
		if err != nil {
			c.opts.Logger.Warn("tasks: snapshot failed", "replica", c.opts.Replica, "err", err)
		}
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
	return c.snapshot(ctx)
}

func (c *Client) snapshot(ctx context.Context) (uint64, error) {
	c.snapMu.Lock()
	defer c.snapMu.Unlock()
	c.mu.RLock()
	seq := c.folded
	c.mu.RUnlock()
	if seq == c.snapTaken.Load() {
		return seq, nil
	}
	f := c.freeze()
	data, err := f.encode()
	if err != nil {
		return 0, err
	}
	if err := c.sn.save(ctx, data, f.seq); err != nil {
		return 0, err
	}
	c.snapTaken.Store(f.seq)
	return f.seq, nil
}
