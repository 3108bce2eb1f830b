package kv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

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

// snapshots reports whether the options ask for snapshots at all.
func (o *Options) snapshots() bool { return o.SnapshotEvery > 0 || o.SnapshotInterval > 0 }

// recentSize is how many folded events a Store remembers the outcome of,
// for writers whose acknowledgement arrives after the fold passed their
// event (a power of two).
const recentSize = 4096

// outcome is what the fold did with one event.
type outcome struct {
	pos transport.Position
	err error // the rejection, wrapping ErrInvalidOp, ErrTableType or ErrNoTable
}

// Store is one replica of the key/value store: a goroutine (the
// materializer) folds the log's "kv.>" events into local state, and reads
// are answered from that state. A Store is safe for concurrent use.
type Store struct {
	log  *transport.Log
	opts Options
	lg   *slog.Logger

	mu     sync.RWMutex // the fold holds it to write st; reads hold it to read
	st     *state
	recent [recentSize]outcome // by seq modulo recentSize, under mu
	keysMu sync.Mutex          // the tables' sorted-key caches, while reading

	applied atomic.Uint64

	wmu     sync.Mutex
	waiters []*waiter
	nwait   atomic.Int64

	watchMu  sync.Mutex
	watchers map[*watcher]struct{}
	nwatch   atomic.Int64

	snapDue   chan struct{} // the fold asks for a snapshot
	sinceSnap atomic.Int64  // ops folded since the last snapshot
	snapTaken atomic.Uint64 // seq of the newest snapshot written
	restored  uint64        // seq of the snapshot Open restored

	ctx     context.Context
	cancel  context.CancelFunc
	done    chan struct{} // closed when the materializer has stopped
	closing chan struct{} // closed by Close
	wg      sync.WaitGroup
	once    sync.Once
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
// sequence, matches its hash and decodes. Invalid ones are logged and
// skipped, falling back to older ones and finally to folding from the
// start.
//
// Errors: transport.ErrInvalidOption for options that do not validate,
// transport.ErrUnavailable when the stream cannot be read (both wrapped).
func Open(ctx context.Context, log *transport.Log, opts Options) (*Store, error) {
	opts.setDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	s := &Store{
		log: log, opts: opts, lg: opts.Logger, st: newState(),
		watchers: map[*watcher]struct{}{},
		snapDue:  make(chan struct{}, 1),
		done:     make(chan struct{}), closing: make(chan struct{}),
	}
	sn, err := openSnapshots(ctx, log, opts)
	if err != nil {
		return nil, err
	}
	if !opts.NoRestore {
		if st := sn.restore(ctx, s.lg); st != nil {
			s.st = st
			s.applied.Store(st.applied)
			s.snapTaken.Store(st.applied)
			s.restored = st.applied
		}
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	go s.run()
	if opts.snapshots() {
		s.wg.Add(1)
		go s.snapshotLoop(sn)
	}
	return s, nil
}

// Close stops the materializer and the snapshots, closes every Watch
// channel and makes waiting calls return [ErrClosed]. A snapshot being
// saved when Close is called is saved first (or fails within a minute, or
// the log's timeout if longer), so what the snapshot bucket holds once
// Close returns does not change behind the caller. It does not close the
// log. It is safe to call more than once.
func (s *Store) Close() error {
	s.once.Do(func() {
		s.cancel()
		close(s.closing)
		<-s.done
		s.wg.Wait()
		s.watchMu.Lock()
		for w := range s.watchers {
			delete(s.watchers, w)
			close(w.ch)
		}
		s.watchMu.Unlock()
	})
	return nil
}

// Restored returns the stream sequence covered by the snapshot Open
// restored, and 0 if it restored none.
func (s *Store) Restored() uint64 { return s.restored }

// Applied returns the stream sequence of the last event the materializer
// folded (0 before the first).
func (s *Store) Applied() uint64 { return s.applied.Load() }

// run is the materializer. It reads the log from the event after the
// last one read, starting over after an error, and hands the events to
// the fold in another goroutine, so that reading and folding overlap.
func (s *Store) run() {
	defer close(s.done)
	evs := make(chan transport.Event, foldQueue)
	folded := make(chan struct{})
	go func() {
		defer close(folded)
		s.foldLoop(evs)
	}()
	defer func() {
		close(evs)
		<-folded
	}()
	read := s.applied.Load() // the last event handed to the fold
	backoff := 50 * time.Millisecond
	for s.ctx.Err() == nil {
		from := read + 1
		for ev, err := range s.log.Events(s.ctx, []string{"kv.>"}, transport.ReadOptions{From: from, Follow: true}) {
			if err != nil {
				if s.ctx.Err() != nil {
					return // closed: not a failure to read
				}
				s.lg.Warn("kv: reading the log", "from", from, "err", err)
				break
			}
			select {
			case evs <- ev:
				read = ev.Seq
			case <-s.ctx.Done():
				return
			}
			backoff = 50 * time.Millisecond
		}
		select {
		case <-s.ctx.Done():
		case <-time.After(backoff):
			backoff = min(2*backoff, 5*time.Second)
		}
	}
}

// foldQueue bounds the events read but not yet folded; foldBatch, the
// events folded under one hold of the lock.
const (
	foldQueue = 1024
	foldBatch = 64
)

// foldLoop folds the events from evs, in batches of those already
// waiting.
func (s *Store) foldLoop(evs <-chan transport.Event) {
	batch := make([]transport.Event, 0, foldBatch)
	var changes []Change
	for ev := range evs {
		batch = append(batch[:0], ev)
	more:
		for len(batch) < foldBatch {
			select {
			case ev, ok := <-evs:
				if !ok {
					break more
				}
				batch = append(batch, ev)
			default:
				break more
			}
		}
		changes = s.fold(batch, changes[:0])
		clear(batch)
	}
}

// fold applies a batch of events and tells waiters, watchers and the
// snapshotter.
func (s *Store) fold(batch []transport.Event, changes []Change) []Change {
	watching := s.nwatch.Load() > 0
	s.mu.Lock()
	for _, tev := range batch {
		ev := eventOf(tev)
		r := s.st.apply(ev)
		o := outcome{pos: ev.pos}
		if r.rejected != nil {
			o.err = rejectionError(r.rejected)
		}
		s.recent[ev.pos.Seq%recentSize] = o
		if watching {
			ch := Change{Table: r.table, Key: r.key, Position: ev.pos, Rejected: r.rejected}
			if t := s.st.tables[r.table]; t != nil && r.rejected == nil {
				if e := t.keys[r.key]; e != nil {
					ch.Value, _ = t.value(r.key, e, false)
				}
			}
			changes = append(changes, ch)
		}
	}
	s.mu.Unlock()
	// Watchers first, so that once Wait returns the changes are in the
	// watch channels.
	for _, ch := range changes {
		s.broadcast(ch)
	}
	s.applied.Store(batch[len(batch)-1].Seq)
	if s.nwait.Load() > 0 {
		s.notify()
	}
	if n := s.sinceSnap.Add(int64(len(batch))); s.opts.SnapshotEvery > 0 && n >= int64(s.opts.SnapshotEvery) {
		select {
		case s.snapDue <- struct{}{}:
		default:
		}
	}
	return changes
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

// waiter is a call waiting for the fold to reach seq.
type waiter struct {
	seq uint64
	ch  chan struct{} // closed when applied >= seq
}

// notify wakes the waiters whose sequence the fold has reached.
func (s *Store) notify() {
	applied := s.applied.Load()
	s.wmu.Lock()
	kept := s.waiters[:0]
	for _, w := range s.waiters {
		if w.seq <= applied {
			close(w.ch)
			s.nwait.Add(-1)
		} else {
			kept = append(kept, w)
		}
	}
	clear(s.waiters[len(kept):])
	s.waiters = kept
	s.wmu.Unlock()
}

// waitSeq waits until the fold has reached seq.
func (s *Store) waitSeq(ctx context.Context, seq uint64) error {
	if s.applied.Load() >= seq {
		return nil
	}
	w := &waiter{seq: seq, ch: make(chan struct{})}
	s.wmu.Lock()
	s.waiters = append(s.waiters, w)
	s.nwait.Add(1)
	s.wmu.Unlock()
	if s.applied.Load() >= seq {
		s.notify()
	}
	select {
	case <-w.ch:
		return nil
	case <-ctx.Done():
		s.dropWaiter(w)
		return ctx.Err()
	case <-s.closing:
		s.dropWaiter(w)
		return ErrClosed
	}
}

func (s *Store) dropWaiter(w *waiter) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	for i, x := range s.waiters {
		if x == w {
			s.waiters = append(s.waiters[:i], s.waiters[i+1:]...)
			s.nwait.Add(-1)
			return
		}
	}
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
	seq, err := s.log.LastSeq(ctx, ESKPrefix+">")
	if err != nil {
		return err
	}
	return s.waitSeq(ctx, seq)
}

// errClosed reports a closed store.
func (s *Store) errClosed() error {
	if s.ctx.Err() != nil {
		return ErrClosed
	}
	return nil
}
