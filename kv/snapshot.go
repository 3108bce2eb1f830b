package kv

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
	"time"

	"github.com/detbus/detbus/internal/claims"
	"github.com/detbus/detbus/transport"
)

// Snapshot object metadata keys.
const (
	metaFormat  = "detbus-kv-format"
	metaStream  = "detbus-stream"
	metaPrefix  = "detbus-prefix"
	metaCreated = "detbus-stream-created"
	metaSeq     = "detbus-seq"
	metaHash    = "detbus-sha256"
)

// snapshots reads and writes the snapshots of a store: one object per
// replica in a JetStream object store bucket, holding the state's
// deterministic encoding, with the stream position it covers in the
// object's metadata.
type snapshots struct {
	log     *transport.Log
	opts    Options
	stream  string
	prefix  string
	created string             // the stream's creation time, telling a recreated stream apart
	lastSeq uint64             // the stream's last sequence at Open
	obs     *transport.Objects // nil until bound or created
}

func openSnapshots(ctx context.Context, log *transport.Log, opts Options) (*snapshots, error) {
	cfg := log.Config()
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.Timeout)
		defer cancel()
	}
	st, err := log.State(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("kv: stream %q: %w", cfg.Stream, err)
	}
	return &snapshots{
		log: log, opts: opts, stream: cfg.Stream, prefix: cfg.Prefix,
		created: st.Created.Format(time.RFC3339Nano), lastSeq: st.LastSeq,
	}, nil
}

// bind binds the bucket, creating it when create is set.
func (sn *snapshots) bind(ctx context.Context, create bool) error {
	if sn.obs != nil {
		return nil
	}
	obs, err := sn.log.Objects(ctx, sn.opts.Snapshots, "detbus kv snapshots", create)
	if err != nil {
		return err
	}
	sn.obs = obs
	return nil
}

// restore returns the state of the newest valid snapshot, or nil.
func (sn *snapshots) restore(ctx context.Context, lg *slog.Logger) *state {
	if err := sn.bind(ctx, false); err != nil {
		if !errors.Is(err, transport.ErrNotFound) {
			lg.Warn("kv: snapshots unavailable, folding from the start", "bucket", sn.opts.Snapshots, "err", err)
		}
		return nil
	}
	infos, err := sn.obs.List(ctx)
	if err != nil {
		lg.Warn("kv: cannot list snapshots, folding from the start", "bucket", sn.opts.Snapshots, "err", err)
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
		if m[metaStream] != sn.stream || m[metaPrefix] != sn.prefix || m[metaFormat] != strconv.Itoa(dumpFormat) {
			continue
		}
		seq, err := strconv.ParseUint(m[metaSeq], 10, 64)
		if err != nil {
			continue
		}
		if m[metaCreated] != sn.created || seq > sn.lastSeq {
			lg.Warn("kv: skipping a snapshot of another incarnation of the stream", "object", in.Name, "seq", seq)
			continue
		}
		cands = append(cands, cand{in.Name, seq, m[metaHash]})
	}
	slices.SortFunc(cands, func(a, b cand) int { return cmp.Compare(b.seq, a.seq) }) // newest first
	for _, c := range cands {
		data, _, err := sn.obs.Get(ctx, c.name)
		if err != nil {
			lg.Warn("kv: cannot read a snapshot", "object", c.name, "seq", c.seq, "err", err)
			continue
		}
		sum := sha256.Sum256(data)
		if hex.EncodeToString(sum[:]) != c.hash {
			lg.Warn("kv: a snapshot does not match its hash", "object", c.name, "seq", c.seq)
			continue
		}
		st, err := loadState(data)
		if err == nil && st.applied != c.seq {
			err = fmt.Errorf("%w: it covers seq %d, its metadata says %d", errCorrupt, st.applied, c.seq)
		}
		if err != nil {
			lg.Warn("kv: a snapshot does not decode", "object", c.name, "seq", c.seq, "err", err)
			continue
		}
		if err := claims.Check(ctx, sn.log, claims.ESK("kv", c.seq), c.hash); err != nil {
			lg.Warn("kv: a snapshot the log does not confirm", "object", c.name, "seq", c.seq, "err", err)
			continue
		}
		return st
	}
	return nil
}

// save writes a snapshot of state covering seq as this replica's object.
func (sn *snapshots) save(ctx context.Context, data []byte, seq uint64) error {
	if err := sn.bind(ctx, true); err != nil {
		return fmt.Errorf("kv: snapshot bucket %q: %w", sn.opts.Snapshots, err)
	}
	sum := sha256.Sum256(data)
	if err := claims.Make(ctx, sn.log, claims.ESK("kv", seq), sn.opts.Replica, hex.EncodeToString(sum[:])); err != nil {
		return fmt.Errorf("kv: snapshot at seq %d: %w", seq, err)
	}
	meta := map[string]string{
		metaFormat: strconv.Itoa(dumpFormat), metaStream: sn.stream, metaPrefix: sn.prefix,
		metaCreated: sn.created, metaSeq: strconv.FormatUint(seq, 10), metaHash: hex.EncodeToString(sum[:]),
	}
	if err := sn.obs.Put(ctx, sn.opts.Replica, "detbus kv state at seq "+strconv.FormatUint(seq, 10), meta, data); err != nil {
		return fmt.Errorf("kv: save snapshot %q at seq %d: %w", sn.opts.Replica, seq, err)
	}
	sn.prune(ctx, seq)
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
func (sn *snapshots) prune(ctx context.Context, seq uint64) {
	infos, err := sn.obs.List(ctx)
	if err != nil {
		return
	}
	for _, in := range infos {
		m := in.Metadata
		if in.Name == sn.opts.Replica || m[metaStream] != sn.stream || m[metaPrefix] != sn.prefix || time.Since(in.Modified) < staleSnapshotAge {
			continue
		}
		if s, err := strconv.ParseUint(m[metaSeq], 10, 64); err == nil && s <= seq {
			_ = sn.obs.Delete(ctx, in.Name)
		}
	}
}

// snapshotLoop takes a snapshot when the fold asks (every SnapshotEvery
// ops) or SnapshotInterval after the last one, if anything was folded
// since. Encoding the state holds off the fold; saving it does not.
func (s *Store) snapshotLoop(sn *snapshots) {
	defer s.wg.Done()
	var tick <-chan time.Time
	if s.opts.SnapshotInterval > 0 {
		t := time.NewTicker(s.opts.SnapshotInterval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-s.snapDue:
		case <-tick:
		}
		if s.ctx.Err() != nil || s.sinceSnap.Load() == 0 {
			continue
		}
		s.sinceSnap.Store(0)
		data, seq, err := s.Dump()
		if err == nil && seq > s.snapTaken.Load() {
			// Close does not cut a save short but waits for it: a save
			// cancelled half-way may still land after its error (NATS
			// stores messages whose acknowledgement nobody waited for),
			// changing the stored snapshot after Close returned.
			ctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), max(s.log.Config().Timeout, time.Minute))
			err = sn.save(ctx, data, seq)
			cancel()
			if err == nil {
				s.snapTaken.Store(seq)
			}
		}
		if err != nil {
			s.lg.Warn("kv: snapshot failed", "replica", s.opts.Replica, "err", err)
		}
	}
}

// Snapshot writes a snapshot of the current state now (unless one of this
// state was written already) and returns the stream sequence it covers.
//
// Errors: the bucket's or NATS's, wrapped.
func (s *Store) Snapshot(ctx context.Context) (uint64, error) {
	data, seq, err := s.Dump()
	if err != nil {
		return 0, err
	}
	if seq == s.snapTaken.Load() {
		return seq, nil
	}
	sn, err := openSnapshots(ctx, s.log, s.opts)
	if err != nil {
		return 0, err
	}
	if err := sn.save(ctx, data, seq); err != nil {
		return 0, err
	}
	s.snapTaken.Store(seq)
	return seq, nil
}
