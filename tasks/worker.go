package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/detbus/detbus/tasks/machine"
	"github.com/detbus/detbus/transport"
	"github.com/nats-io/nuid"
)

// maxErrorText bounds the error text a fail carries.
const maxErrorText = 4096

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
	Batches    uint64 // events written
	Claims     uint64 // claims written
	Won        uint64 // claims that won a task
	Lost       uint64 // claims refused (another worker's claim came first)
	Completed  uint64 // completes accepted
	Failed     uint64 // fails accepted
	Refused    uint64 // reports refused (the lease had ended)
	Heartbeats uint64 // heartbeats written
	LeaseLost  uint64 // attempts whose lease was lost while running
	Dead       uint64 // tasks this worker moved to the dead letters: last attempts it failed, or found expired
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

	lmu  sync.Mutex
	held map[string][]*lease // leases of running attempts, by task id

	batches, claims, won, lost, completed, failed, refused, heartbeats, leaseLost, dead, errs atomic.Uint64
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
	return &Worker{c: c, queue: queue, handler: handler, opts: opts, held: map[string][]*lease{}}, nil
}

// ID returns the worker's ID.
func (w *Worker) ID() string { return w.opts.ID }

// Stats returns the worker's counters.
func (w *Worker) Stats() WorkerStats {
	return WorkerStats{
		Batches: w.batches.Load(), Claims: w.claims.Load(), Won: w.won.Load(), Lost: w.lost.Load(),
		Completed: w.completed.Load(), Failed: w.failed.Load(), Refused: w.refused.Load(),
		Heartbeats: w.heartbeats.Load(), LeaseLost: w.leaseLost.Load(), Dead: w.dead.Load(), Errors: w.errs.Load(),
	}
}

// slotDone and claimDone are what an attempt tells the dispatcher.

// maxInflight is how many events a worker has in flight at once.
const maxInflight = 2

// maxReportsPerEvent bounds the reports one event carries, so that with
// error texts of maxErrorText it stays far below a message's size limit.
const maxReportsPerEvent = machine.MaxBatchOps

// sent is an event a worker wrote: what it holds and, once the fold has
// applied it, its outcome.
type sent struct {
	ops     []machine.Op
	claims  int // the last claims ops are claims without id
	reports int // the first reports ops are completes and fails
	pos     transport.Position
	out     []machine.Outcome
	err     error
	retried bool // the reports were sent before, by an event that failed
}

// runState is the state of Run's loop.
type runState struct {
	jobs     map[jobKey]*job // running handlers
	free     int             // slots neither running nor claimed for
	claiming int             // claims in flight
	inflight int             // events in flight
	reports  []machine.Op    // reports not yet sent
	retried  bool            // reports holds reports of a failed event
	reap     []string        // dead-letter claims not yet sent
	reaped   map[string]bool
	beatDue  bool
	every    time.Duration // heartbeat interval, known from the first lease
}

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
	defer w.c.watchQueue(w.queue, w.onOutcome)()
	st := &runState{jobs: map[jobKey]*job{}, free: w.opts.Concurrency, reaped: map[string]bool{}}
	results := make(chan *sent, maxInflight)
	done := make(chan jobDone, w.opts.Concurrency)
	var beat *time.Ticker
	var beatC <-chan time.Time
	defer func() {
		if beat != nil {
			beat.Stop()
		}
	}()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	stopping := false
	var shutdown <-chan time.Time // the deadline of running handlers
	var fatal error
	for {
		var changed <-chan struct{}
		var wake <-chan time.Time
		claims := 0
		if !stopping && fatal == nil && st.free > 0 {
			d, ch, err := w.c.queueChanges(w.queue, time.Now())
			if err != nil {
				fatal = err
				continue
			}
			changed = ch
			claims = min(st.free, d.Claimable-st.claiming)
			for _, id := range d.Expired {
				if !st.reaped[id] {
					st.reaped[id] = true
					st.reap = append(st.reap, id)
				}
			}
			if !d.Next.IsZero() {
				timer.Reset(time.Until(time.Unix(0, d.Next.WallTime)) + time.Microsecond)
				wake = timer.C
			}
		}
		// An event goes out when none is in flight, or when a second one
		// would carry at least half the slots: small events would cost
		// every fold of the queue as much as large ones.
		pending := len(st.reports) + max(claims, 0) + len(st.reap)
		if st.beatDue {
			pending += len(st.jobs)
		}
		if fatal == nil && pending > 0 && (st.inflight == 0 || st.inflight < maxInflight && 2*pending >= w.opts.Concurrency) {
			w.send(st, max(claims, 0), results)
			continue
		}
		if (stopping || fatal != nil) && len(st.jobs) == 0 && st.inflight == 0 && (len(st.reports) == 0 || fatal != nil) {
			break
		}
		var ctxDone <-chan struct{}
		if !stopping {
			ctxDone = ctx.Done()
		}
		select {
		case s := <-results:
			w.settle(hard, st, s, done)
			if st.every == 0 && len(st.jobs) > 0 {
				st.every = w.heartbeatEvery(st)
				beat = time.NewTicker(st.every)
				beatC = beat.C
			}
		case d := <-done:
			delete(st.jobs, d.key)
			st.free++
			if d.report != nil {
				st.reports = append(st.reports, *d.report)
			}
		case <-changed:
		case <-wake:
		case <-beatC:
			st.beatDue = len(st.jobs) > 0
		case <-ctxDone:
			stopping = true
			shutdown = time.After(w.opts.ShutdownTimeout)
		case <-shutdown:
			hardStop(ErrShutdown)
			shutdown = nil
		}
		if fatal != nil && !stopping {
			stopping = true
			hardStop(fatal)
		}
	}
	return fatal
}

// heartbeatEvery is the heartbeat interval: the option, or a third of
// the lease of a running task.
func (w *Worker) heartbeatEvery(st *runState) time.Duration {
	if w.opts.HeartbeatEvery > 0 {
		return w.opts.HeartbeatEvery
	}
	for _, j := range st.jobs {
		return max(j.lease.length/3, time.Millisecond)
	}
	return time.Second
}

// send writes one event with what is due, in this order: reports,
// heartbeats of the running tasks, dead-letter claims, and claims
// without id; what does not fit waits for the next event.
func (w *Worker) send(st *runState, claims int, results chan<- *sent) {
	s := &sent{retried: st.retried}
	limit := w.c.log.Config().MaxPayload / 2
	data := []byte(`{"op":"batch","ops":[`)
	add := func(op machine.Op) bool {
		if len(s.ops) == machine.MaxBatchOps || len(s.ops) > 0 && len(data) > limit {
			return false
		}
		if len(s.ops) > 0 {
			data = append(data, ',')
		}
		data = op.AppendJSON(data)
		s.ops = append(s.ops, op)
		return true
	}
	for _, op := range st.reports[:min(len(st.reports), maxReportsPerEvent)] {
		if !add(op) {
			break
		}
		s.reports++
	}
	st.reports = st.reports[s.reports:]
	if len(st.reports) == 0 {
		st.retried = false
	}
	if st.beatDue {
		st.beatDue = false
		for _, j := range st.jobs {
			if !w.leaseGone(j.lease) && !add(machine.Op{Op: machine.OpHeartbeat, ID: j.id, Worker: w.opts.ID, Attempt: j.attempt}) {
				st.beatDue = true
				break
			}
		}
	}
	for len(st.reap) > 0 && add(machine.Op{Op: machine.OpClaim, ID: st.reap[0], Worker: w.opts.ID}) {
		st.reap = st.reap[1:]
	}
	for range claims {
		if !add(machine.Op{Op: machine.OpClaim, Worker: w.opts.ID, Lease: w.opts.Lease}) {
			break
		}
		s.claims++
	}
	data = append(data, "]}"...)
	if len(s.ops) == 1 {
		data = s.ops[0].AppendJSON(nil)
	}
	st.free -= s.claims
	st.claiming += s.claims
	st.inflight++
	w.batches.Add(1)
	w.claims.Add(uint64(s.claims))
	p, err := w.c.publishRaw(context.Background(), w.queue, data)
	go func() {
		var pos transport.Position
		ctx, cancel := w.c.withTimeout(context.Background())
		defer cancel()
		if err == nil {
			pos, err = p.Wait(ctx)
		}
		var o machine.Outcome
		if err == nil {
			o, err = w.c.Outcome(ctx, pos)
		}
		s.pos, s.out, s.err = pos, []machine.Outcome{o}, err
		if o.Kind == machine.KindBatch {
			s.out = o.Ops
		}
		results <- s
	}()
}

// settle takes the outcome of a sent event: claims won start jobs,
// claims lost free their slots, reports are counted.
func (w *Worker) settle(hard context.Context, st *runState, s *sent, done chan<- jobDone) {
	st.inflight--
	st.claiming -= s.claims
	if s.err != nil || len(s.out) != len(s.ops) {
		// The event may or may not be stored: claims that won will be
		// retried by others when their leases expire; reports are sent
		// once more (a repeated complete is a duplicate, a repeated fail
		// is refused).
		w.errs.Add(1)
		w.opts.Logger.Warn("writing to the queue failed", "queue", w.queue, "ops", len(s.ops), "err", s.err)
		st.free += s.claims
		if !s.retried && s.reports > 0 {
			st.reports = append(st.reports, s.ops[:s.reports]...)
			st.retried = true
		}
		if errors.Is(s.err, ErrClosed) {
			st.reports = nil
		}
		return
	}
	for i, o := range s.out {
		op := s.ops[i]
		switch {
		case i < s.reports && o.Kind == machine.KindCompleted:
			w.completed.Add(1)
		case i < s.reports && (o.Kind == machine.KindRetry || o.Kind == machine.KindDead):
			w.failed.Add(1)
			if o.Kind == machine.KindDead {
				w.dead.Add(1)
			}
		case i < s.reports && o.Kind != machine.KindDuplicate:
			w.refused.Add(1)
			w.opts.Logger.Warn("report refused", "queue", w.queue, "op", op.Op, "task", op.ID, "attempt", op.Attempt, "reason", o.Reason)
		case op.Op == machine.OpHeartbeat:
			w.heartbeats.Add(1)
		case op.Op == machine.OpClaim && op.ID != "":
			if o.Kind == machine.KindDead {
				w.dead.Add(1)
			}
		case op.Op == machine.OpClaim && o.Kind == machine.KindClaimed && o.Worker == w.opts.ID:
			w.won.Add(1)
			j := w.start(hard, s, o, done)
			st.jobs[j.jobKey] = j
		case op.Op == machine.OpClaim:
			w.lost.Add(1)
			st.free++
		}
	}
}

// leaseGone reports whether the fold shows the lease lost.
func (w *Worker) leaseGone(l *lease) bool {
	w.lmu.Lock()
	defer w.lmu.Unlock()
	return l.gone
}
