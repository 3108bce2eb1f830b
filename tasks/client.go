package tasks

import (
	"bytes"
	"container/heap"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/detbus/detbus/hlc"
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
	DefaultRetryFoldAfter   = 500 * time.Millisecond
	DefaultSnapshotEvery    = 10000
	DefaultSnapshotInterval = time.Minute
	DefaultSnapshotBucket   = "detbus-tasks-snapshots"
	maxKeptRejectedPayload  = 1024
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
	// Logger receives malformed operations and skipped snapshots (warn)
	// and fold restarts (error); default: discard.
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

	cancel context.CancelFunc
	done   chan struct{}
	closed atomic.Bool

	mu      sync.RWMutex // the folded state: writes by the fold, reads by everyone
	queues  map[string]*queueState
	counts  map[string]uint64 // events applied per ESK
	folded  uint64            // stream sequence of the last event in the state
	last    string            // its ESK
	foldErr error             // last error of the fold, cleared by progress

	// applied is the stream sequence of the last task event applied; it
	// moves under wmu, after the state and the outcome are in place.
	applied  atomic.Uint64
	wmu      sync.Mutex
	waiters  seqHeap       // Wait calls, by the sequence they wait for
	advanced chan struct{} // closed when applied moves, if taken
	taken    bool

	omu      sync.Mutex // the kept outcomes
	outcomes map[uint64]machine.Outcome
	ring     []uint64 // sequences in outcomes, oldest replaced first
	next     int

	sn        *snapshots
	snapMu    sync.Mutex    // one snapshot written at a time
	snapDue   chan struct{} // the fold asks for a snapshot
	sinceSnap atomic.Int64  // events folded since the last snapshot
	snapTaken atomic.Uint64 // seq of the newest snapshot written or restored
	catchUp   atomic.Bool   // Open is catching up: no snapshots yet
	restored  uint64        // seq of the snapshot Open restored
	loops     sync.WaitGroup
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
	watchers  []*watcher // under mu
}

// watcher is called in the fold with every outcome of a queue's events.
type watcher struct {
	fn func(machine.Outcome)
}

// rejections is a bounded list of rejected events and their count.
type rejections struct {
	count uint64
	kept  []Rejection
	next  int
}

func (r *rejections) add(x Rejection, keep int) {
	r.count++
	if len(r.kept) < keep {
		r.kept = append(r.kept, x)
		return
	}
	r.kept[r.next] = x
	r.next = (r.next + 1) % keep
}

// list returns the kept rejections, oldest first.
func (r *rejections) list() []Rejection {
	out := make([]Rejection, 0, len(r.kept))
	out = append(out, r.kept[r.next:]...)
	return append(out, r.kept[:r.next]...)
}

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
	fctx, cancel := context.WithCancel(context.Background())
	c := &Client{
		log: l, clock: l.Config().Clock, opts: opts, cancel: cancel, done: make(chan struct{}),
		queues: map[string]*queueState{}, counts: map[string]uint64{},
		advanced: make(chan struct{}), outcomes: make(map[uint64]machine.Outcome),
		sn: sn, snapDue: make(chan struct{}, 1),
	}
	if !opts.NoRestore {
		if st := sn.restore(ctx, opts.Logger); st != nil {
			c.install(st)
		}
	}
	c.catchUp.Store(true)
	go c.fold(fctx)
	if opts.snapshots() {
		c.loops.Add(1)
		go c.snapshotLoop(fctx)
	}
	if err := c.Sync(ctx); err != nil {
		c.Close()
		return nil, err
	}
	// Snapshots wait for the catch-up to end, and then the first one
	// covers it: snapshots taken one after another while the fold reads
	// a long history would cost more than the fold.
	c.catchUp.Store(false)
	if opts.SnapshotEvery > 0 && c.sinceSnap.Load() >= int64(opts.SnapshotEvery) {
		select {
		case c.snapDue <- struct{}{}:
		default:
		}
	}
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
	c.cancel()
	<-c.done
	c.loops.Wait()
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wake()
	for _, w := range c.waiters {
		close(w.ch)
	}
	c.waiters = nil
	return nil
}

// Restored returns the stream sequence covered by the snapshot Open
// restored, and 0 if it restored none.
func (c *Client) Restored() uint64 { return c.restored }

// Log returns the log the client folds.
func (c *Client) Log() *transport.Log { return c.log }

// fold applies the task events of the log in order until ctx is done,
// resuming after the last applied event when the stream fails.
func (c *Client) fold(ctx context.Context) {
	defer close(c.done)
	for {
		from := c.applied.Load() + 1
		for ev, err := range c.log.Events(ctx, []string{ESKPrefix + ">"}, transport.ReadOptions{From: from, Follow: true}) {
			if err != nil {
				if ctx.Err() != nil {
					return // closed: not a failure to read
				}
				c.mu.Lock()
				c.foldErr = err
				c.mu.Unlock()
				c.opts.Logger.Error("task fold stopped; resuming", "from", from, "err", err)
				break
			}
			c.apply(ev)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(DefaultRetryFoldAfter):
		}
	}
}

// apply folds one event: the state under mu, then its outcome, then the
// applied sequence, which releases the waiters.
func (c *Client) apply(ev transport.Event) {
	if ev.Seq <= c.applied.Load() {
		return // already applied before a restart
	}
	name := strings.TrimPrefix(ev.ESK, ESKPrefix)
	c.mu.Lock()
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
	for _, x := range outs {
		switch x.Kind {
		case machine.KindRejected:
			r := Rejection{Position: ev.Position(), Time: ev.Time, Op: x.Op, Reason: x.Reason, Malformed: malformed}
			if len(ev.Data) > 0 { // an empty payload is kept as nil, as a snapshot restores it
				r.Data = bytes.Clone(ev.Data[:min(len(ev.Data), maxKeptRejectedPayload)])
			}
			if malformed {
				qs.malformed.add(r, c.opts.KeepRejections)
				c.opts.Logger.Warn("malformed task operation rejected", "queue", name, "index", ev.Index, "seq", ev.Seq, "reason", x.Reason)
			} else {
				qs.refused.add(r, c.opts.KeepRejections)
			}
		case machine.KindDuplicate:
		default:
			changed = true
		}
		for _, w := range qs.watchers {
			w.fn(x)
		}
	}
	if changed && qs.taken.Swap(false) {
		close(qs.changed)
		qs.changed = make(chan struct{})
	}
	c.counts[ev.ESK] = ev.Index + 1
	c.folded, c.last = ev.Seq, ev.ESK
	c.foldErr = nil
	c.mu.Unlock()
	c.keepOutcome(ev.Seq, o)
	c.wmu.Lock()
	c.applied.Store(ev.Seq)
	for len(c.waiters) > 0 && c.waiters[0].seq <= ev.Seq {
		close(heap.Pop(&c.waiters).(*seqWaiter).ch)
	}
	c.wake()
	c.wmu.Unlock()
	if n := c.sinceSnap.Add(1); c.opts.SnapshotEvery > 0 && n >= int64(c.opts.SnapshotEvery) {
		select {
		case c.snapDue <- struct{}{}:
		default:
		}
	}
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

// keepOutcome remembers the outcome of the event at seq, forgetting the
// oldest beyond KeepOutcomes.
func (c *Client) keepOutcome(seq uint64, o machine.Outcome) {
	c.omu.Lock()
	defer c.omu.Unlock()
	if len(c.ring) < c.opts.KeepOutcomes {
		c.ring = append(c.ring, seq)
	} else {
		delete(c.outcomes, c.ring[c.next])
		c.ring[c.next] = seq
		c.next = (c.next + 1) % len(c.ring)
	}
	c.outcomes[seq] = o
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
	w := &watcher{fn: fn}
	c.mu.Lock()
	defer c.mu.Unlock()
	qs := c.queueLocked(queue)
	qs.watchers = append(qs.watchers, w)
	return func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		qs.watchers = slices.DeleteFunc(qs.watchers, func(x *watcher) bool { return x == w })
	}
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
