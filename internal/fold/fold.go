package fold

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/detbus/detbus/transport"
)

// Errors.
var (
	// ErrClosed: the fold is closed.
	ErrClosed = errors.New("fold: closed")
	// ErrInvalidConfig is wrapped by the errors of a [Config] that does
	// not validate.
	ErrInvalidConfig = errors.New("fold: invalid config")
)

// MaxHold is the most events applied under one hold of the client's lock.
const MaxHold = 64

// Retries of a failed source: the first after retryMin, then twice as
// long each time up to retryMax.
const (
	retryMin = 50 * time.Millisecond
	retryMax = time.Second
)

// Config configures a [Fold].
type Config[O any] struct {
	// Name says whose fold it is ("kv", "tasks"), at the start of its
	// log messages.
	Name string
	// Sources are the logs to fold: at least one.
	Sources []Source
	// Mu guards the client's state: the fold holds it for writing while
	// it applies events.
	Mu *sync.RWMutex
	// Apply applies one event of source src (an index into Sources) to
	// the client's state, with Mu held for writing, and returns its
	// outcome. It must not block or call the fold.
	Apply func(src int, ev *transport.Event) O
	// KeepOutcomes is how many of the newest events of each source keep
	// their outcome for [Fold.Outcome] (0: none).
	KeepOutcomes int
	// Logger receives read failures and failed snapshots (default: none).
	Logger *slog.Logger

	// Snapshots, when set, is where snapshots of the state go; Encode
	// then returns the state's encoding and the sequence of the first
	// source it covers, holding Mu as long as it needs. With several
	// sources, the encoding says where it leaves each of them.
	Snapshots *SnapshotStore
	Encode    func() ([]byte, uint64, error)
	// SnapshotEvery is the number of events applied between snapshots
	// (<= 0: never by count); SnapshotInterval snapshots this long after
	// the last one if events were applied since (<= 0: never by time).
	SnapshotEvery    int
	SnapshotInterval time.Duration
	// SnapshotTimeout bounds the saving of one automatic snapshot
	// (default a minute).
	SnapshotTimeout time.Duration
}

// Validate reports every problem with the config, joined; each wraps
// ErrInvalidConfig.
func (c Config[O]) Validate() error {
	var errs []error
	bad := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, a...)))
	}
	if len(c.Sources) == 0 {
		bad("no source")
	}
	names := map[string]bool{}
	for i, s := range c.Sources {
		if s == nil {
			bad("source %d is nil", i)
			continue
		}
		if names[s.Name()] {
			bad("two sources named %q", s.Name())
		}
		names[s.Name()] = true
	}
	if c.Mu == nil {
		bad("no lock (Mu)")
	}
	if c.Apply == nil {
		bad("no Apply")
	}
	if c.KeepOutcomes < 0 {
		bad("KeepOutcomes %d is negative", c.KeepOutcomes)
	}
	if (c.Snapshots == nil) != (c.Encode == nil) {
		bad("Snapshots and Encode go together")
	}
	return errors.Join(errs...)
}

// Fold follows its sources and applies their events to a client's state;
// see the package documentation for its contract.
type Fold[O any] struct {
	cfg  Config[O]
	hold int // MaxHold, but for benchmarks of other holds
	lg   *slog.Logger
	curs []cursor
	outs []outcomes[O] // by source, under cfg.Mu

	failure atomic.Pointer[error] // the last read failure, until progress

	snapMu    sync.Mutex    // one snapshot at a time
	snapDue   chan struct{} // the fold asks for a snapshot
	sinceSnap atomic.Int64  // events applied since the last snapshot
	snapTaken atomic.Uint64 // the sequence of the newest snapshot saved or restored
	snapHeld  atomic.Bool

	ctx     context.Context
	cancel  context.CancelFunc
	readers sync.WaitGroup
	loops   sync.WaitGroup
	started atomic.Bool
	once    sync.Once
}

// New returns a fold of cfg's sources; [Fold.Start] starts it.
//
// Errors: ErrInvalidConfig (wrapped) for a config that does not validate.
func New[O any](cfg Config[O]) (*Fold[O], error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.SnapshotTimeout <= 0 {
		cfg.SnapshotTimeout = time.Minute
	}
	f := &Fold[O]{cfg: cfg, hold: MaxHold, lg: cfg.Logger, curs: make([]cursor, len(cfg.Sources)), snapDue: make(chan struct{}, 1)}
	if f.lg == nil {
		f.lg = slog.New(slog.DiscardHandler)
	}
	for range cfg.Sources {
		f.outs = append(f.outs, newOutcomes[O](cfg.KeepOutcomes))
	}
	f.ctx, f.cancel = context.WithCancel(context.Background())
	return f, nil
}

// Start starts following the sources after the cursors at (one per
// source; nil: from the start of each), where a restored snapshot left
// the state. A snapshot at at[0] counts as saved. Start runs once; later
// calls do nothing.
func (f *Fold[O]) Start(at []uint64) {
	if !f.started.CompareAndSwap(false, true) || f.ctx.Err() != nil {
		return
	}
	for i := range f.curs {
		if i < len(at) {
			f.curs[i].folded = at[i]
			f.curs[i].applied.Store(at[i])
		}
	}
	if len(at) > 0 {
		f.snapTaken.Store(at[0])
	}
	for i := range f.cfg.Sources {
		f.readers.Add(1)
		go f.follow(i)
	}
	if f.cfg.Snapshots != nil && (f.cfg.SnapshotEvery > 0 || f.cfg.SnapshotInterval > 0) {
		f.loops.Add(1)
		go f.snapshotLoop()
	}
}

// Close stops reading and automatic snapshots, waiting for a snapshot
// being saved, and releases every Wait with ErrClosed. The state stays as
// folded. It is safe to call more than once.
func (f *Fold[O]) Close() {
	f.once.Do(func() {
		f.cancel()
		f.readers.Wait()
		f.loops.Wait()
		for i := range f.curs {
			f.curs[i].close()
		}
	})
}

// Closed reports whether Close was called.
func (f *Fold[O]) Closed() bool { return f.ctx.Err() != nil }

// Applied returns source src's cursor: the sequence of its last event
// applied (or that the restored state covers), once the waits for it can
// return.
func (f *Fold[O]) Applied(src int) uint64 { return f.curs[src].applied.Load() }

// Err returns the last failure to read a source, until the next event
// is applied; nil when the fold is keeping up.
func (f *Fold[O]) Err() error {
	if p := f.failure.Load(); p != nil {
		return *p
	}
	return nil
}

// Wait returns once source src's cursor reaches seq: reads of the state
// then see that event and everything before it in src.
//
// Errors: ctx's error; ErrClosed once the fold is closed and seq is not
// applied.
func (f *Fold[O]) Wait(ctx context.Context, src int, seq uint64) error {
	return f.curs[src].wait(ctx, seq)
}

// Waiting returns how many Wait calls wait for source src.
func (f *Fold[O]) Waiting(src int) int { return int(f.curs[src].nwait.Load()) }

// Sync returns once every source's cursor reaches the last event the
// source holds when Sync is called.
//
// Errors: the sources' (transport.ErrUnavailable, wrapped), and those of
// [Fold.Wait].
func (f *Fold[O]) Sync(ctx context.Context) error {
	for i, s := range f.cfg.Sources {
		last, err := s.Last(ctx)
		if err != nil {
			return err
		}
		if err := f.Wait(ctx, i, last); err != nil {
			return err
		}
	}
	return nil
}

// Outcome returns the outcome Apply returned for the event at seq of
// source src, if it is among the newest KeepOutcomes of src. It takes Mu
// for reading.
func (f *Fold[O]) Outcome(src int, seq uint64) (O, bool) {
	f.cfg.Mu.RLock()
	defer f.cfg.Mu.RUnlock()
	return f.outs[src].get(seq)
}

// follow reads source src and applies its events until the fold closes,
// reading again after the cursor when the source fails.
func (f *Fold[O]) follow(src int) {
	defer f.readers.Done()
	s := f.cfg.Sources[src]
	backoff := retryMin
	for f.ctx.Err() == nil {
		after := f.curs[src].applied.Load()
		err := s.Read(f.ctx, after, func(evs []transport.Event) error {
			if f.apply(src, evs) {
				backoff = retryMin
			}
			return nil
		})
		if f.ctx.Err() != nil {
			return
		}
		if err == nil {
			err = fmt.Errorf("%w: %s ended", transport.ErrUnavailable, s.Name())
		}
		f.failure.Store(&err)
		f.lg.Warn(f.cfg.Name+": reading the log failed; reading again", "source", s.Name(), "after", after, "retry_in", backoff, "err", err)
		select {
		case <-f.ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, retryMax)
	}
}

// apply applies a batch of source src's events, MaxHold at a time, and
// reports whether it applied any.
func (f *Fold[O]) apply(src int, evs []transport.Event) bool {
	c, outs := &f.curs[src], &f.outs[src]
	progress := false
	for len(evs) > 0 {
		hold := evs[:min(len(evs), f.hold)]
		evs = evs[len(hold):]
		n := 0
		f.cfg.Mu.Lock()
		last := c.folded
		for i := range hold {
			ev := &hold[i]
			if ev.Seq <= last {
				continue // applied before a restart
			}
			outs.add(ev.Seq, f.cfg.Apply(src, ev))
			last = ev.Seq
			n++
		}
		c.folded = last
		f.cfg.Mu.Unlock()
		if n == 0 {
			continue
		}
		progress = true
		c.advance(last)
		f.snapshotCount(n)
	}
	if progress && f.failure.Load() != nil {
		f.failure.Store(nil)
	}
	return progress
}
