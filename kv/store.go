package kv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/detbus/detbus/internal/fold"
	"github.com/detbus/detbus/transport"
)

// Options configures a [Store]. The zero value means every default.
type Options struct {
	// Replica names this replica: the name of its snapshot object
	// (default "<host>-<pid>", a new name for every process; give
	// long-lived replicas a stable name so that they replace their own
	// snapshot instead of adding one).
	Replica string
	// SnapshotEvery is the number of folded ops between snapshots
	// (0: DefaultSnapshotEvery; < 0: never snapshot).
	SnapshotEvery int
	// SnapshotInterval also snapshots this long after the last snapshot
	// if ops were folded since (0: DefaultSnapshotInterval; < 0: only by
	// count).
	SnapshotInterval time.Duration
	// Snapshots is the JetStream object store bucket holding snapshots
	// (default DefaultSnapshotBucket).
	Snapshots string
	// NoRestore folds the log from its start, ignoring snapshots.
	NoRestore bool
	// StampHLC stamps this store's writes with the log's hybrid logical
	// clock (the Detbus-Hlc header), which then orders them in registers
	// instead of the time the stream stored them. It costs a header on
	// every write; see the package documentation.
	StampHLC bool
	// Logger receives the store's warnings (default slog.Default()).
	Logger *slog.Logger
}

// Defaults of [Options].
const (
	DefaultSnapshotEvery    = 10000
	DefaultSnapshotInterval = time.Minute
	DefaultSnapshotBucket   = "detbus-kv-snapshots"
)

func (o *Options) setDefaults() {
	if o.Replica == "" {
		host, _ := os.Hostname()
		if host == "" {
			host = "kv"
		}
		o.Replica = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	if o.SnapshotEvery == 0 {
		o.SnapshotEvery = DefaultSnapshotEvery
	}
	if o.SnapshotInterval == 0 {
		o.SnapshotInterval = DefaultSnapshotInterval
	}
	if o.Snapshots == "" {
		o.Snapshots = DefaultSnapshotBucket
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Validate reports every problem with the options after defaults, joined;
// each wraps transport.ErrInvalidOption.
func (o Options) Validate() error {
	var errs []error
	if !validBucket(o.Snapshots) {
		errs = append(errs, fmt.Errorf("%w: kv: snapshot bucket %q: use letters, digits, '-' and '_'", transport.ErrInvalidOption, o.Snapshots))
	}
	if o.Replica == "" || !utf8.ValidString(o.Replica) || len(o.Replica) > 255 {
		errs = append(errs, fmt.Errorf("%w: kv: replica name %q: want 1 to 255 bytes of UTF-8", transport.ErrInvalidOption, o.Replica))
	}
	return errors.Join(errs...)
}

func validBucket(name string) bool {
	if name == "" {
		return false
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// recentSize is how many folded events a Store remembers the outcome of,
// for writers whose acknowledgement arrives after the fold passed their
// event.
const recentSize = 4096

// outcome is what the fold did with one event.
type outcome struct {
	index uint64
	err   error // the rejection, wrapping ErrInvalidOp, ErrTableType or ErrNoTable
}

// Store is one replica of the key/value store: a fold (the materializer)
// folds the log's "kv.>" events into local state, and reads are answered
// from that state. A Store is safe for concurrent use.
type Store struct {
	log  *transport.Log
	opts Options
	lg   *slog.Logger

	mu     sync.RWMutex // the fold holds it to write st; reads hold it to read
	st     *state
	keysMu sync.Mutex // the tables' sorted-key caches, while reading

	f        *fold.Fold[outcome]
	watchers fold.Watchers[Change]
	restored uint64 // seq of the snapshot Open restored

	// At a site: the merge of the sites' logs, the results of the events
	// it merged that the fold has not handed out yet (by source and
	// sequence), and the copies to close.
	site        *siteFold
	siteResults []map[uint64]result
	closers     []func() error
}

// Open opens a replica of the store on log: it restores the newest valid
// snapshot from the Options.Snapshots bucket (unless NoRestore), then
// starts the materializer, which folds every later event of "kv.>" in log
// order and follows the log until [Store.Close]. Open returns once the
// snapshot is loaded, without waiting for the fold to catch up; use
// [Store.Sync] for that.
//
// A snapshot is valid when it belongs to the log's stream (same name,
// prefix and creation time), does not lie beyond the stream's last
// sequence, matches its hash, decodes and is confirmed by the log.
// Invalid ones are logged and skipped, falling back to older ones and
// finally to folding from the start.
//
// Errors: transport.ErrInvalidOption for options that do not validate,
// transport.ErrUnavailable when the stream cannot be read (both wrapped).
func Open(ctx context.Context, log *transport.Log, opts Options) (*Store, error) {
	opts.setDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	s := &Store{log: log, opts: opts, lg: opts.Logger, st: newState()}
	if log.Site() != "" && log.CopyOf() == "" {
		return openAtSite(ctx, s)
	}
	sn, err := openSnapshots(ctx, log, opts)
	if err != nil {
		return nil, err
	}
	if !opts.NoRestore {
		if st, seq, ok := fold.Restore(ctx, sn, decodeSnapshot, nil); ok {
			s.st, s.restored = st, seq
		}
	}
	cfg := fold.Config[outcome]{
		Name: "kv", Sources: []fold.Source{fold.LogSource(log, ESKPrefix+">")}, Mu: &s.mu,
		Apply: s.apply, KeepOutcomes: recentSize, Logger: s.lg,
		Snapshots: sn, Encode: s.Dump, SnapshotEvery: opts.SnapshotEvery, SnapshotInterval: opts.SnapshotInterval,
		SnapshotTimeout: max(log.Config().Timeout, time.Minute),
	}
	if s.f, err = fold.New(cfg); err != nil {
		return nil, err
	}
	s.f.Start([]uint64{s.restored})
	return s, nil
}

// Close stops the materializer and the snapshots, closes every Watch
// channel and makes waiting calls return [ErrClosed]. A snapshot being
// saved when Close is called is saved first (or fails within a minute, or
// the log's timeout if longer), so what the snapshot bucket holds once
// Close returns does not change behind the caller. It does not close the
// log. It is safe to call more than once.
func (s *Store) Close() error {
	s.f.Close()
	s.watchers.Close()
	closeAll(s.closers)
	s.closers = nil
	return nil
}

// Restored returns the stream sequence covered by the snapshot Open
// restored, and 0 if it restored none.
func (s *Store) Restored() uint64 { return s.restored }

// Applied returns the stream sequence of the last event the materializer
// folded (0 before the first).
func (s *Store) Applied() uint64 { return s.f.Applied(0) }

// apply folds one event, with s.mu held for writing, and hands the
// change to the watchers.
func (s *Store) apply(src int, tev *transport.Event) outcome {
	ev := eventOf(tev)
	var r result
	if s.site != nil {
		r = s.siteResults[src][tev.Seq]
		delete(s.siteResults[src], tev.Seq)
		if tev.ESK == SiteTickESK {
			return outcome{index: ev.pos.Index}
		}
		ev = qualify(s.site.sites[src], ev)
	} else {
		r = s.st.apply(ev)
	}
	o := outcome{index: ev.pos.Index}
	if r.rejected != nil {
		o.err = rejectionError(r.rejected)
	}
	if s.watchers.Active() {
		ch := Change{Table: r.table, Key: r.key, Position: ev.pos, Rejected: r.rejected}
		if t := s.st.tables[r.table]; t != nil && r.rejected == nil {
			if e := t.keys[r.key]; e != nil {
				ch.Value, _ = t.value(r.key, e, false)
			}
		}
		s.watchers.Notify(r.table, ch)
	}
	return o
}

// rejectedError is returned, with the reason, by writes that the fold
// rejected.
type rejectedError struct {
	rej Rejection
	err error
}

func (e *rejectedError) Error() string {
	return fmt.Sprintf("kv: op at %s@%d (seq %d) rejected: %s", e.rej.Position.ESK, e.rej.Position.Index, e.rej.Position.Seq, e.rej.Reason)
}

func (e *rejectedError) Unwrap() error { return e.err }

// rejectionError turns a rejection into an error wrapping the sentinel
// its reason names.
func rejectionError(r *Rejection) error {
	cause := ErrInvalidOp
	for _, sentinel := range []error{ErrTableType, ErrNoTable} {
		if strings.HasPrefix(r.Reason, sentinel.Error()) {
			cause = sentinel
			break
		}
	}
	return &rejectedError{rej: *r, err: cause}
}

// waitSeq waits until the fold has reached seq.
func (s *Store) waitSeq(ctx context.Context, seq uint64) error {
	if err := s.f.Wait(ctx, 0, seq); errors.Is(err, fold.ErrClosed) {
		return ErrClosed
	} else if err != nil {
		return err
	}
	return nil
}

// Wait returns once the materializer has folded the event at pos (its
// stream sequence pos.Seq): after it, reads on this Store see the op, and
// everything before it in the log. Pass it the position a write returned
// by another Store or process; this Store's own writes have already waited.
// A zero position returns at once.
//
// Errors: ErrInvalidOp (wrapped) for a position outside "kv.>", ctx's
// error, ErrClosed.
func (s *Store) Wait(ctx context.Context, pos transport.Position) error {
	if pos.Seq == 0 {
		return nil
	}
	if pos.ESK != "" && (!strings.HasPrefix(pos.ESK, ESKPrefix) || pos.ESK == ESKPrefix) {
		return fmt.Errorf("%w: position %s@%d is not in a table (ESK kv.<table>)", ErrInvalidOp, pos.ESK, pos.Index)
	}
	if err := s.errClosed(); err != nil {
		return err
	}
	return s.waitSeq(ctx, pos.Seq)
}

// Sync returns once the materializer has folded every "kv.>" event in
// the log as of the call, asking the stream leader for the last one:
// after it, reads on this Store reflect every op written before Sync was
// called.
//
// Errors: ErrUnavailable (wrapped) when NATS does not answer, ctx's
// error, ErrClosed.
func (s *Store) Sync(ctx context.Context) error {
	if err := s.errClosed(); err != nil {
		return err
	}
	if err := s.f.Sync(ctx); errors.Is(err, fold.ErrClosed) {
		return ErrClosed
	} else if err != nil {
		return err
	}
	return nil
}

// errClosed reports a closed store.
func (s *Store) errClosed() error {
	if s.f.Closed() {
		return ErrClosed
	}
	return nil
}
