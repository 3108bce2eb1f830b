package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/detbus/detbus/tasks/machine"
	"github.com/detbus/detbus/transport"
	"github.com/nats-io/nuid"
)

// DefaultShutdownTimeout is how long [Worker.Run] lets running handlers
// finish after its context is done, unless WorkerOptions says otherwise.
const DefaultShutdownTimeout = 30 * time.Second

// Task is what a handler is given: one attempt at a task.
type Task struct {
	Queue    string
	ID       string
	Payload  json.RawMessage // compact JSON; null when the enqueue had none
	Priority int64
	// Attempt is this attempt's number: 1 for the first claim, more after
	// failures and expired leases.
	Attempt int
	Worker  string // this worker's ID
	// LeaseUntil is when the lease ends unless heartbeats extend it, as of
	// the claim.
	LeaseUntil time.Time
	// LastError is the error of the previous attempt, if any.
	LastError string
	// Claim is where the winning claim landed.
	Claim transport.Position
}

// Handler runs one attempt at a task. Returning nil completes the task;
// an error fails the attempt with the error's text (the task is retried
// after the queue's backoff, or dead after its last attempt). ctx is
// cancelled when the lease is lost (cause ErrLeaseLost) or the worker's
// shutdown deadline passes (cause ErrShutdown); a handler should then
// stop, since another worker may run the task.
type Handler func(ctx context.Context, t Task) error

// WorkerOptions configures a [Worker]. The zero value means every
// default.
type WorkerOptions struct {
	// ID names the worker in its claims and reports; it must be unique
	// among the queue's workers (default: host name, process id and a
	// random suffix).
	ID string
	// Concurrency is how many handlers run at once (default 1).
	Concurrency int
	// Lease is the lease claims ask for (default 0: the queue's).
	Lease time.Duration
	// HeartbeatEvery is how often a running task's lease is extended
	// (default: a third of the lease).
	HeartbeatEvery time.Duration
	// LeaseMargin is how long before the lease ends, by this worker's
	// clock, the handler's context is cancelled when no heartbeat has
	// extended it (default: a tenth of the lease). It absorbs clock skew
	// between workers and the delay of a handler's last write.
	LeaseMargin time.Duration
	// ShutdownTimeout is how long running handlers may finish after Run's
	// context is done (default DefaultShutdownTimeout).
	ShutdownTimeout time.Duration
	// Logger receives claim and report failures and lost leases;
	// default: discard.
	Logger *slog.Logger
}

// Validate reports every problem with the options, joined.
func (o WorkerOptions) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidOption}, args...)...))
	}
	if o.Concurrency < 0 {
		bad("Concurrency %d is negative", o.Concurrency)
	}
	for _, d := range []struct {
		name string
		d    time.Duration
	}{{"Lease", o.Lease}, {"HeartbeatEvery", o.HeartbeatEvery}, {"LeaseMargin", o.LeaseMargin}, {"ShutdownTimeout", o.ShutdownTimeout}} {
		if d.d < 0 {
			bad("%s %v is negative", d.name, d.d)
		}
	}
	if o.Lease > 0 && o.HeartbeatEvery >= o.Lease {
		bad("HeartbeatEvery %v is not shorter than Lease %v", o.HeartbeatEvery, o.Lease)
	}
	if o.Lease > 0 && o.LeaseMargin >= o.Lease {
		bad("LeaseMargin %v is not shorter than Lease %v", o.LeaseMargin, o.Lease)
	}
	if o.ID != "" {
		if _, err := (machine.Op{Op: machine.OpClaim, Worker: o.ID}).MarshalJSON(); err != nil {
			bad("ID %q: %v", o.ID, err)
		}
	}
	return errors.Join(errs...)
}

func (o *WorkerOptions) setDefaults() {
	if o.ID == "" {
		host, _ := os.Hostname()
		o.ID = fmt.Sprintf("%s-%d-%s", host, os.Getpid(), nuid.Next()[16:])
	}
	if o.Concurrency == 0 {
		o.Concurrency = 1
	}
	if o.ShutdownTimeout == 0 {
		o.ShutdownTimeout = DefaultShutdownTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// WorkerStats counts what a worker did.
type WorkerStats struct {
	Claims     uint64 // claims written
	Won        uint64 // claims that won a task
	Lost       uint64 // claims refused (another worker's claim came first)
	Completed  uint64 // completes written
	Failed     uint64 // fails written
	Heartbeats uint64 // heartbeats written
	LeaseLost  uint64 // attempts whose lease was lost while running
	Dead       uint64 // expired last attempts this worker moved to the dead letters
	Errors     uint64 // writes that failed
}

// Worker claims tasks of one queue and runs a handler on each. See the
// package documentation for how it claims, heartbeats and shuts down.
type Worker struct {
	c       *Client
	queue   string
	handler Handler
	opts    WorkerOptions
	running atomic.Bool

	claims, won, lost, completed, failed, heartbeats, leaseLost, dead, errs atomic.Uint64
}

// NewWorker returns a worker for queue that runs handler; start it with
// [Worker.Run].
//
// Errors: ErrInvalid for a bad queue name or a nil handler;
// ErrInvalidOption for bad options.
func NewWorker(c *Client, queue string, handler Handler, opts WorkerOptions) (*Worker, error) {
	if err := ValidateQueue(queue); err != nil {
		return nil, err
	}
	if handler == nil {
		return nil, fmt.Errorf("%w: nil handler", ErrInvalid)
	}
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts.setDefaults()
	return &Worker{c: c, queue: queue, handler: handler, opts: opts}, nil
}

// ID returns the worker's ID.
func (w *Worker) ID() string { return w.opts.ID }

// Stats returns the worker's counters.
func (w *Worker) Stats() WorkerStats {
	return WorkerStats{
		Claims: w.claims.Load(), Won: w.won.Load(), Lost: w.lost.Load(), Completed: w.completed.Load(),
		Failed: w.failed.Load(), Heartbeats: w.heartbeats.Load(), LeaseLost: w.leaseLost.Load(),
		Dead: w.dead.Load(), Errors: w.errs.Load(),
	}
}

// slotDone and claimDone are what an attempt tells the dispatcher.
type attemptEvent struct{ slotFree bool }

// Run claims and runs tasks until ctx is done, then shuts down
// gracefully: it stops claiming, lets running handlers finish for up to
// ShutdownTimeout (cancelling their contexts with cause ErrShutdown
// after that), waits for their reports to be acknowledged, and returns
// nil. A worker runs once.
//
// Errors: ErrClosed when the client is closed under it; an error when
// Run is called twice.
func (w *Worker) Run(ctx context.Context) error {
	if !w.running.CompareAndSwap(false, true) {
		return errors.New("tasks: worker already ran")
	}
	hard, hardStop := context.WithCancelCause(context.WithoutCancel(ctx))
	defer hardStop(nil)
	var reports sync.WaitGroup
	events := make(chan attemptEvent, 2*w.opts.Concurrency)
	free, claiming := w.opts.Concurrency, 0
	reaping := map[string]bool{}
	var shutdown <-chan time.Time // the deadline of running handlers
	stopping := false
	var fatal error
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		var changed <-chan struct{}
		var wake <-chan time.Time
		if ctx.Err() == nil && fatal == nil && free > claiming {
			d, ch, err := w.c.queueChanges(w.queue, time.Now())
			if err != nil {
				fatal = err
				continue
			}
			changed = ch
			w.reap(hard, d.Expired, reaping)
			for n := min(free, d.Claimable) - claiming; n > 0; n-- {
				free--
				claiming++
				go w.attempt(hard, events, &reports)
			}
			if !d.Next.IsZero() {
				if timer == nil {
					timer = time.NewTimer(time.Hour)
				}
				timer.Reset(time.Until(time.Unix(0, d.Next.WallTime)) + time.Microsecond)
				wake = timer.C
			}
		}
		if (ctx.Err() != nil || fatal != nil) && free == w.opts.Concurrency {
			break
		}
		var done <-chan struct{}
		switch {
		case ctx.Err() == nil && fatal == nil:
			done = ctx.Done()
		case !stopping:
			stopping = true
			shutdown = time.After(w.opts.ShutdownTimeout)
		}
		select {
		case ev := <-events:
			if ev.slotFree {
				free++
			} else {
				claiming--
			}
		case <-changed:
		case <-wake:
		case <-done:
		case <-shutdown:
			hardStop(ErrShutdown)
			shutdown = nil
		}
	}
	reports.Wait()
	if fatal != nil {
		return fatal
	}
	return nil
}

// reap moves expired last attempts to the dead letters with a claim
// naming each, once per task.
func (w *Worker) reap(ctx context.Context, expired []string, reaping map[string]bool) {
	for _, id := range expired {
		if reaping[id] {
			continue
		}
		reaping[id] = true
		go func() {
			pos, err := w.c.Append(ctx, w.queue, machine.Op{Op: machine.OpClaim, ID: id, Worker: w.opts.ID})
			if err == nil {
				var o machine.Outcome
				if o, err = w.c.Outcome(ctx, pos); err == nil && o.Kind == machine.KindDead {
					w.dead.Add(1)
				}
			}
			if err != nil {
				w.errs.Add(1)
				w.opts.Logger.Warn("dead-letter claim failed", "queue", w.queue, "task", id, "err", err)
			}
		}()
	}
}

// attempt claims a task and, if the claim wins, runs it. It tells the
// dispatcher when the claim is decided and when the slot is free.
func (w *Worker) attempt(ctx context.Context, events chan<- attemptEvent, reports *sync.WaitGroup) {
	decided := false
	decide := func() {
		if !decided {
			decided = true
			events <- attemptEvent{}
		}
	}
	defer func() {
		decide()
		events <- attemptEvent{slotFree: true}
	}()
	pos, err := w.c.Append(ctx, w.queue, machine.Op{Op: machine.OpClaim, Worker: w.opts.ID, Lease: w.opts.Lease})
	w.claims.Add(1)
	var o machine.Outcome
	if err == nil {
		o, err = w.c.Outcome(ctx, pos)
	}
	decide()
	if err != nil {
		w.errs.Add(1)
		w.opts.Logger.Warn("claim failed", "queue", w.queue, "err", err)
		if !errors.Is(err, ErrClosed) {
			pause(ctx, 200*time.Millisecond)
		}
		return
	}
	if o.Kind != machine.KindClaimed {
		w.lost.Add(1)
		return
	}
	w.won.Add(1)
	w.execute(ctx, pos, o, reports)
}

// pause sleeps for d or until ctx is done.
func pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// lease is the state of a running attempt's lease, updated by the fold.
type lease struct {
	worker  string
	attempt int
	margin  time.Duration
	cancel  context.CancelCauseFunc

	mu    sync.Mutex
	timer *time.Timer
	gone  bool // the fold shows the task is no longer this attempt's
}

// onEvent runs in the fold after every event about the task.
func (l *lease) onEvent(t machine.Task, o machine.Outcome) {
	mine := t.State == machine.StateClaimed && t.Worker == l.worker && t.Attempts == l.attempt
	refused := o.Kind == machine.KindRejected && o.Op == machine.OpHeartbeat && o.Worker == l.worker && o.Attempt == l.attempt
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case !mine || refused:
		l.gone = true
		l.cancel(ErrLeaseLost)
	case o.Kind == machine.KindHeartbeat && l.timer != nil:
		l.timer.Reset(time.Until(time.Unix(0, t.LeaseUntil.WallTime)) - l.margin)
	}
}

// execute runs the handler on a won claim, heartbeating meanwhile, and
// reports the result.
func (w *Worker) execute(ctx context.Context, pos transport.Position, o machine.Outcome, reports *sync.WaitGroup) {
	hctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	l := &lease{worker: w.opts.ID, attempt: o.Attempt, cancel: cancel}
	t, unwatch := w.c.watchTask(w.queue, o.TaskID, l.onEvent)
	defer unwatch()
	leaseLen := t.Lease
	l.mu.Lock()
	if t.State != machine.StateClaimed || t.Worker != w.opts.ID || t.Attempts != o.Attempt {
		l.gone = true // cancelled or lost before it started
	}
	l.margin = w.opts.LeaseMargin
	if l.margin == 0 {
		l.margin = leaseLen / 10
	}
	l.timer = time.AfterFunc(time.Until(time.Unix(0, t.LeaseUntil.WallTime))-l.margin, func() { cancel(ErrLeaseLost) })
	gone := l.gone
	l.mu.Unlock()
	defer l.timer.Stop()
	if gone {
		w.leaseLost.Add(1)
		return
	}
	every := w.opts.HeartbeatEvery
	if every == 0 {
		every = leaseLen / 3
	}
	hbDone := make(chan struct{})
	go w.heartbeat(hctx, t.ID, o.Attempt, every, hbDone)
	err := w.call(hctx, Task{
		Queue: w.queue, ID: t.ID, Payload: t.Payload, Priority: t.Priority, Attempt: o.Attempt, Worker: w.opts.ID,
		LeaseUntil: time.Unix(0, t.LeaseUntil.WallTime), LastError: t.LastError, Claim: pos,
	})
	lost := errors.Is(context.Cause(hctx), ErrLeaseLost)
	cancel(nil)
	<-hbDone
	l.mu.Lock()
	gone = l.gone
	l.mu.Unlock()
	if lost {
		w.leaseLost.Add(1)
		w.opts.Logger.Warn("lease lost", "queue", w.queue, "task", t.ID, "attempt", o.Attempt, "taken", gone)
	}
	if gone {
		return // the task is no longer this attempt's: a report would be refused
	}
	op := machine.Op{Op: machine.OpComplete, ID: t.ID, Worker: w.opts.ID, Attempt: o.Attempt}
	if err != nil {
		op.Op, op.Error = machine.OpFail, err.Error()
		if op.Error == "" {
			op.Error = "error with no text"
		}
	}
	w.report(op, reports)
}

// call runs the handler, turning a panic into an error.
func (w *Worker) call(ctx context.Context, t Task) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("handler panic: %v\n%s", p, debug.Stack())
		}
	}()
	return w.handler(ctx, t)
}

// report writes a complete or fail without holding the slot; Run waits
// for its acknowledgement before returning.
func (w *Worker) report(op machine.Op, reports *sync.WaitGroup) {
	ctx := context.Background()
	p, err := w.c.appendAsync(ctx, w.queue, op)
	if err != nil && errors.Is(err, ErrInvalid) && op.Op == machine.OpFail {
		// An error text the machine cannot carry (it can carry any
		// string, so this is not expected): report it plainly.
		op.Error = fmt.Sprintf("%q", op.Error)
		p, err = w.c.appendAsync(ctx, w.queue, op)
	}
	if err != nil {
		w.reportErr(op, err)
		return
	}
	if op.Op == machine.OpComplete {
		w.completed.Add(1)
	} else {
		w.failed.Add(1)
	}
	reports.Add(1)
	go func() {
		defer reports.Done()
		if _, err := p.Result(); err != nil {
			w.reportErr(op, err)
		}
	}()
}

func (w *Worker) reportErr(op machine.Op, err error) {
	w.errs.Add(1)
	w.opts.Logger.Warn("report failed; the task will be retried when its lease expires", "queue", w.queue, "op", op.Op, "task", op.ID, "attempt", op.Attempt, "err", err)
}

// heartbeat extends the lease every interval until ctx is done.
func (w *Worker) heartbeat(ctx context.Context, id string, attempt int, every time.Duration, done chan<- struct{}) {
	defer close(done)
	if every <= 0 {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	op := machine.Op{Op: machine.OpHeartbeat, ID: id, Worker: w.opts.ID, Attempt: attempt}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		p, err := w.c.appendAsync(context.WithoutCancel(ctx), w.queue, op)
		if err == nil {
			_, err = p.Result()
		}
		if err != nil {
			w.errs.Add(1)
			w.opts.Logger.Warn("heartbeat failed", "queue", w.queue, "task", id, "attempt", attempt, "err", err)
			continue
		}
		w.heartbeats.Add(1)
	}
}
