package tasks

import (
	"bytes"
	"container/heap"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/detbus/detbus/hlc"
	"github.com/detbus/detbus/tasks/machine"
	"github.com/detbus/detbus/transport"
)

// ESKPrefix is the prefix of queue ESKs: queue "emails" is ESK
// "tasks.emails", subject "events.tasks.emails" under the default prefix.
const ESKPrefix = "tasks."

// Defaults of [Options].
const (
	DefaultKeepOutcomes    = 16384
	DefaultKeepRejections  = 1000
	DefaultRetryFoldAfter  = 500 * time.Millisecond
	maxKeptRejectedPayload = 1024
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
	// Logger receives malformed operations (warn) and fold restarts
	// (error); default: discard.
	Logger *slog.Logger
}

func (o *Options) setDefaults() {
	if o.KeepOutcomes == 0 {
		o.KeepOutcomes = DefaultKeepOutcomes
	}
	if o.KeepRejections == 0 {
		o.KeepRejections = DefaultKeepRejections
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate reports every problem with the options, joined.
func (o Options) Validate() error {
	var errs []error
	if o.KeepOutcomes < 0 {
		errs = append(errs, fmt.Errorf("%w: KeepOutcomes %d is negative", ErrInvalidOption, o.KeepOutcomes))
	}
	if o.KeepRejections < 0 {
		errs = append(errs, fmt.Errorf("%w: KeepRejections %d is negative", ErrInvalidOption, o.KeepRejections))
	}
	return errors.Join(errs...)
}

// Client folds every queue of a log and writes operations to them. It is
// safe for concurrent use. See the package documentation for its
// contract.
type Client struct {
	log   *transport.Log
	clock *hlc.Clock
	opts  Options

	cancel context.CancelFunc
	done   chan struct{}

	mu       sync.RWMutex
	queues   map[string]*queueState
	applied  uint64            // stream sequence of the last task event applied
	counts   map[string]uint64 // events applied per ESK
	advanced chan struct{}     // closed when applied moves, if taken
	taken    bool              // someone waits on advanced
	outcomes map[uint64]machine.Outcome
	ring     []uint64 // sequences in outcomes, oldest replaced first
	next     int
	foldErr  error // last error of the fold, cleared by progress
	closed   bool
	waiters  seqHeap // Wait calls, by the sequence they wait for
}

// queueState is one queue's fold and what the client keeps beside it.
type queueState struct {
	name      string
	q         *machine.Queue
	malformed rejections
	refused   rejections
	changed   chan struct{} // closed when the queue's state changes, if taken
	taken     bool
	watches   map[string][]*watch // by task id
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

// watch calls fn, in the fold, after every event about a task.
type watch struct {
	fn func(machine.Task, machine.Outcome)
}

// Open starts folding every queue of l ("tasks.>") in log order, and
// returns once the fold has applied every task event that the log held
// when Open was called, so that reads reflect at least that. The fold
// then follows new events until [Client.Close]; when NATS fails it
// resumes after the last event it applied.
//
// Errors: ErrInvalidOption for bad options; the errors of [Client.Sync]
// (ErrUnavailable, or ctx's error) when the fold cannot catch up.
func Open(ctx context.Context, l *transport.Log, opts Options) (*Client, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts.setDefaults()
	fctx, cancel := context.WithCancel(context.Background())
	c := &Client{
		log: l, clock: l.Config().Clock, opts: opts, cancel: cancel, done: make(chan struct{}),
		queues: map[string]*queueState{}, counts: map[string]uint64{},
		advanced: make(chan struct{}), outcomes: make(map[uint64]machine.Outcome),
	}
	go c.fold(fctx)
	if err := c.Sync(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// Close stops the fold. Reads keep answering from the state folded so
// far; waits and writes return ErrClosed. Close does not close the log.
// It is safe to call more than once.
func (c *Client) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.cancel()
	<-c.done
	c.mu.Lock()
	c.wake()
	for _, w := range c.waiters {
		close(w.ch)
	}
	c.waiters = nil
	c.mu.Unlock()
	return nil
}

// Log returns the log the client folds.
func (c *Client) Log() *transport.Log { return c.log }

// fold applies the task events of the log in order until ctx is done,
// resuming after the last applied event when the stream fails.
func (c *Client) fold(ctx context.Context) {
	defer close(c.done)
	for {
		c.mu.RLock()
		from := c.applied + 1
		c.mu.RUnlock()
		for ev, err := range c.log.Events(ctx, []string{ESKPrefix + ">"}, transport.ReadOptions{From: from, Follow: true}) {
			if err != nil {
				c.mu.Lock()
				c.foldErr = err
				c.wake()
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

// apply folds one event.
func (c *Client) apply(ev transport.Event) {
	name := strings.TrimPrefix(ev.ESK, ESKPrefix)
	c.mu.Lock()
	defer c.mu.Unlock()
	if ev.Seq <= c.applied {
		return // already applied before a restart
	}
	qs := c.queues[name]
	if qs == nil {
		qs = &queueState{name: name, q: machine.New(name), changed: make(chan struct{})}
		c.queues[name] = qs
	}
	o := qs.q.Apply(machine.Event{Index: ev.Index, Time: ev.Time, Data: ev.Data})
	malformed := false
	if o.Kind == machine.KindRejected {
		_, err := machine.Decode(ev.Data)
		malformed = err != nil || ev.Time.WallTime < 0
	}
	outs := []machine.Outcome{o}
	if o.Kind == machine.KindBatch {
		outs = o.Ops
	}
	changed := false
	for _, x := range outs {
		switch x.Kind {
		case machine.KindRejected:
			r := Rejection{Position: ev.Position(), Time: ev.Time, Op: x.Op, Reason: x.Reason, Malformed: malformed,
				Data: bytes.Clone(ev.Data[:min(len(ev.Data), maxKeptRejectedPayload)])}
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
		if x.TaskID != "" {
			if ws := qs.watches[x.TaskID]; len(ws) > 0 {
				t, _ := qs.q.Task(x.TaskID)
				for _, w := range ws {
					w.fn(t, x)
				}
			}
		}
	}
	if changed && qs.taken {
		close(qs.changed)
		qs.changed, qs.taken = make(chan struct{}), false
	}
	c.keepOutcome(ev.Seq, o)
	c.applied = ev.Seq
	c.counts[ev.ESK] = ev.Index + 1
	c.foldErr = nil
	for len(c.waiters) > 0 && c.waiters[0].seq <= ev.Seq {
		close(heap.Pop(&c.waiters).(*seqWaiter).ch)
	}
	c.wake()
}

// keepOutcome remembers the outcome of the event at seq, forgetting the
// oldest beyond KeepOutcomes.
func (c *Client) keepOutcome(seq uint64, o machine.Outcome) {
	if len(c.ring) < c.opts.KeepOutcomes {
		c.ring = append(c.ring, seq)
	} else {
		delete(c.outcomes, c.ring[c.next])
		c.ring[c.next] = seq
		c.next = (c.next + 1) % len(c.ring)
	}
	c.outcomes[seq] = o
}

// seqWaiter is a Wait for the fold to apply seq.
type seqWaiter struct {
	seq uint64
	ch  chan struct{}
}

// seqHeap orders Wait calls by the sequence they wait for.
type seqHeap []*seqWaiter

func (h seqHeap) Len() int           { return len(h) }
func (h seqHeap) Less(i, j int) bool { return h[i].seq < h[j].seq }
func (h seqHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *seqHeap) Push(x any)        { *h = append(*h, x.(*seqWaiter)) }
func (h *seqHeap) Pop() any {
	old := *h
	w := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return w
}

// wake releases the waiters on advanced. c.mu is held.
func (c *Client) wake() {
	if c.taken {
		close(c.advanced)
		c.advanced, c.taken = make(chan struct{}), false
	}
}

// await waits until cond, checked under the read lock, holds.
func (c *Client) await(ctx context.Context, what string, cond func() bool) error {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	for {
		c.mu.Lock()
		if cond() {
			c.mu.Unlock()
			return nil
		}
		if c.closed {
			c.mu.Unlock()
			return ErrClosed
		}
		ch := c.advanced
		c.taken = true
		foldErr := c.foldErr
		c.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			if foldErr != nil {
				return fmt.Errorf("tasks: waiting for %s: %w (fold: %v)", what, ctx.Err(), foldErr)
			}
			return fmt.Errorf("tasks: waiting for %s: %w", what, ctx.Err())
		}
	}
}

// withTimeout applies the log's default timeout to a ctx without deadline.
func (c *Client) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, c.log.Config().Timeout)
}

// Wait waits until the fold has applied the task event at pos (and so
// every task event before it in log order): after Wait, reads reflect a
// write that returned pos. pos must be the position of a task event, as
// the write methods return; for any other position Wait waits for the
// next task event after it. Without a deadline on ctx, Wait gives up
// after the log's timeout.
//
// Errors: ctx's error (wrapped, with the fold's last error if it is
// failing); ErrClosed.
func (c *Client) Wait(ctx context.Context, pos transport.Position) error {
	c.mu.Lock()
	switch {
	case c.applied >= pos.Seq:
		c.mu.Unlock()
		return nil
	case c.closed:
		c.mu.Unlock()
		return ErrClosed
	}
	w := &seqWaiter{seq: pos.Seq, ch: make(chan struct{})}
	heap.Push(&c.waiters, w)
	c.mu.Unlock()
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	select {
	case <-w.ch:
		c.mu.RLock()
		defer c.mu.RUnlock()
		if c.applied < pos.Seq {
			return ErrClosed
		}
		return nil
	case <-ctx.Done():
		// w stays queued until the fold passes it or the client closes.
		return c.await(ctx, fmt.Sprintf("%s at seq %d", pos.ESK, pos.Seq), func() bool { return c.applied >= pos.Seq })
	}
}

// Sync waits until the fold has applied every task event that the log
// holds when Sync is called, whoever wrote it: reads after Sync reflect
// every write acknowledged before it.
//
// Errors: ErrUnavailable when the log cannot be counted; as [Client.Wait].
func (c *Client) Sync(ctx context.Context) error {
	counts, err := c.log.Counts(ctx, ESKPrefix+">")
	if err != nil {
		return err
	}
	return c.await(ctx, "the task fold to catch up", func() bool {
		for esk, n := range counts {
			if c.counts[esk] < n {
				return false
			}
		}
		return true
	})
}

// Outcome waits for the task event at pos to be applied, as [Client.Wait]
// does, and returns what it did. The client keeps the outcomes of the
// newest Options.KeepOutcomes task events.
//
// Errors: as Wait; ErrOutcomeNotKept when the event's outcome is no
// longer kept, or pos is not a task event.
func (c *Client) Outcome(ctx context.Context, pos transport.Position) (machine.Outcome, error) {
	if err := c.Wait(ctx, pos); err != nil {
		return machine.Outcome{}, err
	}
	c.mu.RLock()
	o, ok := c.outcomes[pos.Seq]
	c.mu.RUnlock()
	if !ok {
		return machine.Outcome{}, fmt.Errorf("%w: %s index %d (seq %d)", ErrOutcomeNotKept, pos.ESK, pos.Index, pos.Seq)
	}
	return o, nil
}

// Applied returns the stream sequence of the last task event the fold
// applied (0 before the first).
func (c *Client) Applied() uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.applied
}

// queueChanges returns the queue's state summary at time now and a
// channel closed at its next change. The queue need not exist yet.
func (c *Client) queueChanges(name string, now time.Time) (machine.Due, <-chan struct{}, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return machine.Due{}, nil, ErrClosed
	}
	qs := c.queues[name]
	if qs == nil {
		qs = &queueState{name: name, q: machine.New(name), changed: make(chan struct{})}
		c.queues[name] = qs
	}
	qs.taken = true
	return qs.q.Due(wallTimestamp(now)), qs.changed, nil
}

// watchTask calls fn in the fold after every event about task id of
// queue, with the task's state after it, until the returned function is
// called. fn runs with the client locked: it must be quick and must not
// call the client. It also returns the task's state now.
func (c *Client) watchTask(queue, id string, fn func(machine.Task, machine.Outcome)) (machine.Task, func()) {
	w := &watch{fn: fn}
	c.mu.Lock()
	defer c.mu.Unlock()
	qs := c.queues[queue]
	if qs == nil {
		return machine.Task{}, func() {}
	}
	if qs.watches == nil {
		qs.watches = map[string][]*watch{}
	}
	qs.watches[id] = append(qs.watches[id], w)
	t, _ := qs.q.Task(id)
	return t, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		ws := qs.watches[id]
		for i, x := range ws {
			if x == w {
				ws = append(ws[:i], ws[i+1:]...)
				break
			}
		}
		if len(ws) == 0 {
			delete(qs.watches, id)
		} else {
			qs.watches[id] = ws
		}
	}
}
