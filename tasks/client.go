package tasks

import (
	"bytes"
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

	"github.com/detbus/detbus/hlc"
	"github.com/detbus/detbus/internal/fold"
	"github.com/detbus/detbus/tasks/machine"
	"github.com/detbus/detbus/transport"
)

// ESKPrefix is the prefix of queue ESKs: queue "emails" is ESK
// "tasks.emails", subject "events.tasks.emails" under the default prefix.
const ESKPrefix = "tasks."

// Defaults of [Options].
const (
	DefaultKeepOutcomes     = 16384
	DefaultKeepRejections   = 1000
	DefaultSnapshotEvery    = 10000
	DefaultSnapshotInterval = time.Minute
	DefaultSnapshotBucket   = "detbus-tasks-snapshots"
	maxKeptRejectedPayload  = 1024

	// DefaultRetryFoldAfter was the fixed delay before the fold read the
	// log again after a failure.
	//
	// Deprecated: the fold now reads again 50ms after a failure, then
	// twice as long each time up to a second; nothing uses this value.
	DefaultRetryFoldAfter = 500 * time.Millisecond
)

// Options configures a [Client]. The zero value means every default.
type Options struct {
	// KeepOutcomes is how many of the newest task events keep their
	// outcome for [Client.Outcome] (default DefaultKeepOutcomes).
	KeepOutcomes int
	// KeepRejections is how many of the newest rejected events each queue
	// keeps, of each kind (malformed and refused), for
	// [Client.Rejections] (default DefaultKeepRejections). All are
	// counted.
	KeepRejections int
	// Replica names this client's snapshot object: 1 to 255 bytes of
	// UTF-8 (default "<host>-<pid>", a new name for every process; give
	// long-lived clients a stable name so that each replaces its own
	// snapshot instead of adding one).
	Replica string
	// SnapshotEvery is the number of task events folded between
	// snapshots (0: DefaultSnapshotEvery; < 0: never by count).
	SnapshotEvery int
	// SnapshotInterval also snapshots this long after the last snapshot
	// if task events were folded since (0: DefaultSnapshotInterval; < 0:
	// only by count). With both negative the client writes snapshots
	// only when [Client.Snapshot] is called.
	SnapshotInterval time.Duration
	// Snapshots is the JetStream object store bucket holding snapshots:
	// letters, digits, '-' and '_' (default DefaultSnapshotBucket).
	Snapshots string
	// NoRestore folds the log from its start, ignoring snapshots.
	NoRestore bool
	// Logger receives malformed operations, skipped snapshots and fold
	// restarts (warn); default: discard.
	Logger *slog.Logger
}

func (o *Options) setDefaults() {
	if o.KeepOutcomes == 0 {
		o.KeepOutcomes = DefaultKeepOutcomes
	}
	if o.KeepRejections == 0 {
		o.KeepRejections = DefaultKeepRejections
	}
	if o.Replica == "" {
		host, _ := os.Hostname()
		if host == "" {
			host = "tasks"
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
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate reports every problem with the options, joined; each wraps
// ErrInvalidOption. Zero values stand for their defaults and are valid.
func (o Options) Validate() error {
	var errs []error
	if o.KeepOutcomes < 0 {
		errs = append(errs, fmt.Errorf("%w: KeepOutcomes %d is negative", ErrInvalidOption, o.KeepOutcomes))
	}
	if o.KeepRejections < 0 {
		errs = append(errs, fmt.Errorf("%w: KeepRejections %d is negative", ErrInvalidOption, o.KeepRejections))
	}
	if o.Replica != "" && (!utf8.ValidString(o.Replica) || len(o.Replica) > 255) {
		errs = append(errs, fmt.Errorf("%w: Replica %q: want 1 to 255 bytes of UTF-8", ErrInvalidOption, o.Replica))
	}
	if o.Snapshots != "" && !validBucket(o.Snapshots) {
		errs = append(errs, fmt.Errorf("%w: Snapshots bucket %q: use letters, digits, '-' and '_'", ErrInvalidOption, o.Snapshots))
	}
	return errors.Join(errs...)
}

func validBucket(name string) bool {
	if len(name) > 200 {
		return false
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// snapshots reports whether the options ask for snapshots without a call
// to [Client.Snapshot].
func (o *Options) snapshots() bool { return o.SnapshotEvery > 0 || o.SnapshotInterval > 0 }

// Client folds every queue of a log and writes operations to them. It is
// safe for concurrent use. See the package documentation for its
// contract.
type Client struct {
	log   *transport.Log
	clock *hlc.Clock
	opts  Options

	mu     sync.RWMutex // the folded state: writes by the fold, reads by everyone
	queues map[string]*queueState
	counts map[string]uint64 // events applied per ESK
	folded uint64            // stream sequence of the last event in the state
	last   string            // its ESK

	f        *fold.Fold[machine.Outcome]
	watchers fold.Watchers[machine.Outcome] // by queue name
	closed   atomic.Bool
	restored uint64 // seq of the snapshot Open restored
}

// queueState is one queue's fold and what the client keeps beside it.
type queueState struct {
	name      string
	q         *machine.Queue
	malformed rejections
	refused   rejections
	clamped   uint64        // events whose HLC time was too far from their stored time
	changed   chan struct{} // closed when the queue's state changes, if taken; replaced under mu
	taken     atomic.Bool
}

// rejections is a bounded list of rejected events and their count.
type rejections = fold.Rejections[Rejection]

// Open starts folding every queue of l ("tasks.>") in log order, and
// returns once the fold has applied every task event that the log held
// when Open was called, so that reads reflect at least that. The fold
// then follows new events until [Client.Close]; when NATS fails it
// resumes after the last event it applied.
//
// Unless Options.NoRestore, the fold starts from the newest valid
// snapshot in the Options.Snapshots bucket and reads only the task
// events after it; see the package documentation for what makes a
// snapshot valid. Invalid snapshots are logged and skipped, falling back
// to older ones and finally to folding from the start of the log.
//
// Errors: ErrInvalidOption for bad options; transport.ErrUnavailable
// (wrapped) when the stream cannot be read; the errors of [Client.Sync]
// when the fold cannot catch up.
func Open(ctx context.Context, l *transport.Log, opts Options) (*Client, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts.setDefaults()
	sn, err := openSnapshots(ctx, l, opts)
	if err != nil {
		return nil, err
	}
	c := &Client{log: l, clock: l.Config().Clock, opts: opts, queues: map[string]*queueState{}, counts: map[string]uint64{}}
	if !opts.NoRestore {
		decode := func(data []byte) (*restoredState, uint64, error) {
			st, err := decodeSnapshot(data, opts.KeepRejections)
			if err != nil {
				return nil, 0, err
			}
			return st, st.seq, nil
		}
		if st, _, ok := fold.Restore(ctx, sn, decode, confirmSnapshot(l)); ok {
			c.install(st)
		}
	}
	c.f, err = fold.New(fold.Config[machine.Outcome]{
		Name: "tasks", Sources: []fold.Source{fold.LogSource(l, ESKPrefix+">")}, Mu: &c.mu,
		Apply: c.apply, KeepOutcomes: opts.KeepOutcomes, Logger: opts.Logger,
		Snapshots: sn, Encode: c.encodeSnapshot, SnapshotEvery: opts.SnapshotEvery, SnapshotInterval: opts.SnapshotInterval,
		SnapshotTimeout: max(l.Config().Timeout, time.Minute),
	})
	if err != nil {
		return nil, err
	}
	// Snapshots wait for the catch-up to end, and then the first one
	// covers it: snapshots taken one after another while the fold reads
	// a long history would cost more than the fold.
	c.f.HoldSnapshots()
	c.f.Start([]uint64{c.restored})
	if err := c.Sync(ctx); err != nil {
		c.Close()
		return nil, err
	}
	c.f.ReleaseSnapshots()
	return c, nil
}

// Close stops the fold and the snapshots. A snapshot being saved when
// Close is called is saved first (or fails within a minute, or the log's
// timeout if longer), so what the snapshot bucket holds once Close
// returns does not change behind the caller. Reads keep answering from
// the state folded so far; waits and writes return ErrClosed. Close does
// not close the log. It is safe to call more than once.
func (c *Client) Close() error {
	c.closed.Store(true)
	c.f.Close()
	return nil
}

// Restored returns the stream sequence covered by the snapshot Open
// restored, and 0 if it restored none.
func (c *Client) Restored() uint64 { return c.restored }

// Log returns the log the client folds.
func (c *Client) Log() *transport.Log { return c.log }

// apply folds one event, with c.mu held for writing, and returns its
// outcome.
func (c *Client) apply(_ int, ev *transport.Event) machine.Outcome {
	name := strings.TrimPrefix(ev.ESK, ESKPrefix)
	qs := c.queueLocked(name)
	if ev.Clamped {
		qs.clamped++
	}
	o := qs.q.Apply(machine.Event{Index: ev.Index, Time: ev.Time, Data: ev.Data})
	malformed := o.Malformed
	outs := []machine.Outcome{o}
	if o.Kind == machine.KindBatch {
		outs = o.Ops
	}
	changed := false
	watched := c.watchers.Active()
	for _, x := range outs {
		switch x.Kind {
		case machine.KindRejected:
			r := Rejection{Position: ev.Position(), Time: ev.Time, Op: x.Op, Reason: x.Reason, Malformed: malformed}
			if len(ev.Data) > 0 { // an empty payload is kept as nil, as a snapshot restores it
				r.Data = bytes.Clone(ev.Data[:min(len(ev.Data), maxKeptRejectedPayload)])
			}
			if malformed {
				qs.malformed.Add(r, c.opts.KeepRejections)
				c.opts.Logger.Warn("malformed task operation rejected", "queue", name, "index", ev.Index, "seq", ev.Seq, "reason", x.Reason)
			} else {
				qs.refused.Add(r, c.opts.KeepRejections)
			}
		case machine.KindDuplicate:
		default:
			changed = true
		}
		if watched {
			c.watchers.Notify(name, x)
		}
	}
	if changed && qs.taken.Swap(false) {
		close(qs.changed)
		qs.changed = make(chan struct{})
	}
	c.counts[ev.ESK] = ev.Index + 1
	c.folded, c.last = ev.Seq, ev.ESK
	return o
}

// queueLocked returns the state of queue name, made empty if the client
// has none yet (its first event is still to come). c.mu is held for
// writing. Queue states are never removed.
func (c *Client) queueLocked(name string) *queueState {
	qs := c.queues[name]
	if qs == nil {
		qs = &queueState{name: name, q: machine.New(name), changed: make(chan struct{})}
		c.queues[name] = qs
	}
	return qs
}

// queueChanges returns the queue's state summary at time now and a
// channel closed at its next change. The queue need not exist yet.
func (c *Client) queueChanges(name string, now time.Time) (machine.Due, <-chan struct{}, error) {
	if c.closed.Load() {
		return machine.Due{}, nil, ErrClosed
	}
	c.mu.RLock()
	qs := c.queues[name]
	if qs == nil {
		c.mu.RUnlock()
		c.mu.Lock()
		qs = c.queueLocked(name)
		c.mu.Unlock()
		c.mu.RLock()
	}
	defer c.mu.RUnlock()
	qs.taken.Store(true)
	return qs.q.Due(wallTimestamp(now)), qs.changed, nil
}

// watchQueue calls fn in the fold with the outcome of every event of
// queue applied from now on (of every operation of a batch, one by one),
// until the returned function is called. fn runs with the client's state
// locked: it must be quick and must not call the client.
func (c *Client) watchQueue(queue string, fn func(machine.Outcome)) func() {
	return c.watchers.Add(queue, fn)
}

// taskWith calls fn and returns the task's state with no event applied
// in between: a watcher sees every event after that state.
func (c *Client) taskWith(queue, id string, fn func()) (machine.Task, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	fn()
	qs := c.queues[queue]
	if qs == nil {
		return machine.Task{}, false
	}
	return qs.q.Task(id)
}
