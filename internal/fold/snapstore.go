package fold

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
	"unicode/utf8"

	"github.com/detbus/detbus/internal/claims"
	"github.com/detbus/detbus/transport"
)

// Snapshot object metadata keys; the format's is "detbus-<kind>-format".
const (
	MetaStream  = "detbus-stream"
	MetaPrefix  = "detbus-prefix"
	MetaCreated = "detbus-stream-created"
	MetaSeq     = "detbus-seq"
	MetaHash    = "detbus-sha256"
)

// StaleSnapshotAge is how long a snapshot of another replica may go
// unreplaced before a replica that saves a newer one deletes it: that
// replica is taken to be gone (replicas named after their process leave
// one behind each). A variable for tests.
var StaleSnapshotAge = 24 * time.Hour

// SnapshotConfig says whose snapshots a [SnapshotStore] keeps.
type SnapshotConfig struct {
	// Kind is the kind of client ("kv", "tasks"): it names the claims'
	// ESKs (claims.ESK), the format's metadata key and starts messages.
	Kind string
	// What describes the state in the bucket's and objects' descriptions
	// ("kv", "task client").
	What string
	// Bucket is the object store bucket; Replica this client's object in
	// it (1 to 255 bytes of UTF-8).
	Bucket  string
	Replica string
	// Format is the version of the client's encoding; snapshots of
	// another are skipped.
	Format int
	// Logger receives skipped snapshots (default: none).
	Logger *slog.Logger
}

// SnapshotStore keeps the snapshots of one kind of client of one log, in
// an object store bucket beside it: see the package documentation. It is
// safe for concurrent use.
type SnapshotStore struct {
	log     *transport.Log
	cfg     SnapshotConfig
	lg      *slog.Logger
	stream  string
	prefix  string
	created string // the stream's creation time, telling a recreated stream apart
	lastSeq uint64 // the stream's last sequence when opened

	mu  sync.Mutex
	obs *transport.Objects // nil until bound or created
}

// OpenSnapshots returns the snapshot store of cfg on l, reading the
// stream's identity and last sequence; the bucket is bound when first
// used and created by the first save.
//
// Errors: ErrInvalidConfig (wrapped) for a bad replica name or kind;
// transport.ErrUnavailable (wrapped) when the stream cannot be read.
func OpenSnapshots(ctx context.Context, l *transport.Log, cfg SnapshotConfig) (*SnapshotStore, error) {
	if cfg.Kind == "" || cfg.Replica == "" || !utf8.ValidString(cfg.Replica) || len(cfg.Replica) > 255 {
		return nil, fmt.Errorf("%w: snapshots of kind %q by replica %q", ErrInvalidConfig, cfg.Kind, cfg.Replica)
	}
	lcfg := l.Config()
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, lcfg.Timeout)
		defer cancel()
	}
	st, err := l.State(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("%s: stream %q: %w", cfg.Kind, lcfg.Stream, err)
	}
	lg := cfg.Logger
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	return &SnapshotStore{
		log: l, cfg: cfg, lg: lg, stream: lcfg.Stream, prefix: lcfg.Prefix,
		created: st.Created.Format(time.RFC3339Nano), lastSeq: st.LastSeq,
	}, nil
}

// Replica returns the name of this client's object.
func (s *SnapshotStore) Replica() string { return s.cfg.Replica }

// MetaFormat is the metadata key of the format of kind's snapshots.
func MetaFormat(kind string) string { return "detbus-" + kind + "-format" }

func (s *SnapshotStore) metaFormat() string { return MetaFormat(s.cfg.Kind) }

// bind binds the bucket, creating it when create is set.
func (s *SnapshotStore) bind(ctx context.Context, create bool) (*transport.Objects, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.obs != nil {
		return s.obs, nil
	}
	obs, err := s.log.Objects(ctx, s.cfg.Bucket, "detbus "+s.cfg.What+" snapshots", create)
	if err != nil {
		return nil, err
	}
	s.obs = obs
	return obs, nil
}

// Save writes data, a snapshot covering seq, as this replica's object,
// after appending a claim of its hash at seq to the log; then it deletes
// the snapshots of other replicas that cover no more of the log and were
// not replaced for StaleSnapshotAge.
//
// Errors: the bucket's and the log's (transport.ErrUnavailable,
// transport.ErrForbidden), wrapped.
func (s *SnapshotStore) Save(ctx context.Context, data []byte, seq uint64) error {
	obs, err := s.bind(ctx, true)
	if err != nil {
		return fmt.Errorf("%s: snapshot bucket %q: %w", s.cfg.Kind, s.cfg.Bucket, err)
	}
	sum := sha256.Sum256(data)
	hash := hex.EncodeToString(sum[:])
	if err := claims.Make(ctx, s.log, claims.ESK(s.cfg.Kind, seq), s.cfg.Replica, hash); err != nil {
		return fmt.Errorf("%s: snapshot at seq %d: %w", s.cfg.Kind, seq, err)
	}
	meta := map[string]string{
		s.metaFormat(): strconv.Itoa(s.cfg.Format), MetaStream: s.stream, MetaPrefix: s.prefix,
		MetaCreated: s.created, MetaSeq: strconv.FormatUint(seq, 10), MetaHash: hash,
	}
	if err := obs.Put(ctx, s.cfg.Replica, "detbus "+s.cfg.What+" state at seq "+strconv.FormatUint(seq, 10), meta, data); err != nil {
		return fmt.Errorf("%s: save snapshot %q at seq %d: %w", s.cfg.Kind, s.cfg.Replica, seq, err)
	}
	s.prune(ctx, obs, seq)
	return nil
}

// prune deletes the snapshots of the same stream that cover at most seq
// and were not replaced for StaleSnapshotAge. Failures are left for the
// next save.
func (s *SnapshotStore) prune(ctx context.Context, obs *transport.Objects, seq uint64) {
	infos, err := obs.List(ctx)
	if err != nil {
		return
	}
	for _, in := range infos {
		m := in.Metadata
		if in.Name == s.cfg.Replica || m[MetaStream] != s.stream || m[MetaPrefix] != s.prefix || time.Since(in.Modified) < StaleSnapshotAge {
			continue
		}
		if at, err := strconv.ParseUint(m[MetaSeq], 10, 64); err == nil && at <= seq {
			_ = obs.Delete(ctx, in.Name)
		}
	}
}

// candidate is a snapshot worth reading.
type candidate struct {
	name string
	seq  uint64
	hash string
}

// candidates lists the snapshots of this stream, newest first, warning
// about those of another format or incarnation of the stream.
func (s *SnapshotStore) candidates(ctx context.Context) []candidate {
	obs, err := s.bind(ctx, false)
	if err != nil {
		if !errors.Is(err, transport.ErrNotFound) {
			s.lg.Warn(s.cfg.Kind+": snapshots unavailable, folding from the start", "bucket", s.cfg.Bucket, "err", err)
		}
		return nil
	}
	infos, err := obs.List(ctx)
	if err != nil {
		s.lg.Warn(s.cfg.Kind+": cannot list snapshots, folding from the start", "bucket", s.cfg.Bucket, "err", err)
		return nil
	}
	var out []candidate
	for _, in := range infos {
		m := in.Metadata
		if m[MetaStream] != s.stream || m[MetaPrefix] != s.prefix {
			continue // another log's
		}
		seq, err := strconv.ParseUint(m[MetaSeq], 10, 64)
		if err != nil || m[s.metaFormat()] != strconv.Itoa(s.cfg.Format) {
			s.lg.Warn(s.cfg.Kind+": skipping a snapshot of another format", "object", in.Name, "format", m[s.metaFormat()], "seq", m[MetaSeq])
			continue
		}
		if m[MetaCreated] != s.created || seq > s.lastSeq {
			s.lg.Warn(s.cfg.Kind+": skipping a snapshot of another incarnation of the stream", "object", in.Name, "seq", seq,
				"stream_created", m[MetaCreated], "last_seq", s.lastSeq)
			continue
		}
		out = append(out, candidate{in.Name, seq, m[MetaHash]})
	}
	slices.SortFunc(out, func(a, b candidate) int { return cmp.Compare(b.seq, a.seq) })
	return out
}

// Restore returns the state of the newest valid snapshot in s and the
// sequence it covers, or ok false when there is none. decode decodes a
// snapshot's data into the state and the sequence it covers; check, if
// set, checks the decoded state against the log. A snapshot is valid
// when it is of this stream and format, matches its hash, decodes to the
// sequence its metadata names, passes check and is confirmed by the
// log's claims; each invalid one is skipped with a warning. Restore
// gives up, folding from the start, when ctx ends (without a deadline:
// after a minute, or the log's timeout if longer).
func Restore[T any](ctx context.Context, s *SnapshotStore, decode func([]byte) (T, uint64, error), check func(context.Context, T) error) (st T, seq uint64, ok bool) {
	var zero T
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, max(s.log.Config().Timeout, time.Minute))
		defer cancel()
	}
	kind := s.cfg.Kind
	for _, c := range s.candidates(ctx) {
		if ctx.Err() != nil {
			s.lg.Warn(kind+": no time left to restore a snapshot, folding from the start", "err", ctx.Err())
			return zero, 0, false
		}
		data, _, err := s.obs.Get(ctx, c.name)
		if err != nil {
			s.lg.Warn(kind+": cannot read a snapshot", "object", c.name, "seq", c.seq, "err", err)
			continue
		}
		sum := sha256.Sum256(data)
		if hex.EncodeToString(sum[:]) != c.hash {
			s.lg.Warn(kind+": a snapshot does not match its hash", "object", c.name, "seq", c.seq)
			continue
		}
		st, at, err := decode(data)
		if err == nil && at != c.seq {
			err = fmt.Errorf("it covers seq %d, its metadata says %d", at, c.seq)
		}
		if err != nil {
			s.lg.Warn(kind+": a snapshot does not decode", "object", c.name, "seq", c.seq, "err", err)
			continue
		}
		if check != nil {
			if err := check(ctx, st); err != nil {
				s.lg.Warn(kind+": a snapshot does not match the log", "object", c.name, "seq", c.seq, "err", err)
				continue
			}
		}
		if err := claims.Check(ctx, s.log, claims.ESK(kind, c.seq), c.hash); err != nil {
			s.lg.Warn(kind+": a snapshot the log does not confirm", "object", c.name, "seq", c.seq, "err", err)
			continue
		}
		return st, c.seq, true
	}
	return zero, 0, false
}
