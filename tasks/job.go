package tasks

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/detbus/detbus/tasks/machine"
)

// jobKey names one attempt at a task.
type jobKey struct {
	id      string
	attempt int
}

// job is a handler running on a won claim.
type job struct {
	jobKey
	lease *lease
}

// jobDone tells Run's loop that a job ended, with the report to write,
// if any.
type jobDone struct {
	key    jobKey
	report *machine.Op
}

// lease is the state of a running attempt's lease, updated by the fold.
type lease struct {
	worker  string
	attempt int
	length  time.Duration
	margin  time.Duration
	cancel  context.CancelCauseFunc
	timer   *time.Timer
	gone    bool // the fold shows the task is no longer this attempt's; under Worker.lmu
}

// onOutcome runs in the fold for every outcome of the queue: it extends
// the leases of running attempts when their heartbeats are accepted, and
// cancels them when the task changes hands (claimed by another attempt,
// cancelled, dead-lettered) or a heartbeat is refused.
func (w *Worker) onOutcome(o machine.Outcome) {
	if o.TaskID == "" {
		return
	}
	w.lmu.Lock()
	defer w.lmu.Unlock()
	for _, l := range w.held[o.TaskID] {
		mine := o.Worker == l.worker && o.Attempt == l.attempt
		switch {
		case o.Kind == machine.KindDuplicate:
		case o.Kind == machine.KindHeartbeat && mine:
			l.timer.Reset(time.Until(time.Unix(0, o.LeaseUntil.WallTime)) - l.margin)
		case o.Kind == machine.KindRejected && !(mine && o.Op == machine.OpHeartbeat):
		default: // the task changed, or this attempt's heartbeat was refused
			l.gone = true
			l.cancel(ErrLeaseLost)
		}
	}
}

// hold files a running attempt's lease for onOutcome, and returns the
// task's state when it did.
func (w *Worker) hold(id string, l *lease) machine.Task {
	t, _ := w.c.taskWith(w.queue, id, func() {
		w.lmu.Lock()
		w.held[id] = append(w.held[id], l)
		w.lmu.Unlock()
	})
	return t
}

// release removes a lease filed by hold, and reports whether the fold
// showed it lost.
func (w *Worker) release(id string, l *lease) (gone bool) {
	w.lmu.Lock()
	defer w.lmu.Unlock()
	w.held[id] = slices.DeleteFunc(w.held[id], func(x *lease) bool { return x == l })
	if len(w.held[id]) == 0 {
		delete(w.held, id)
	}
	return l.gone
}

// start runs the handler on a won claim in a goroutine, cancelling its
// context when the lease is lost, and sends the report to done.
func (w *Worker) start(hard context.Context, s *sent, o machine.Outcome, done chan<- jobDone) *job {
	hctx, cancel := context.WithCancelCause(hard)
	l := &lease{worker: w.opts.ID, attempt: o.Attempt, cancel: cancel, margin: w.opts.LeaseMargin}
	// The timer exists before the lease is filed: onOutcome may reset it.
	l.timer = time.AfterFunc(time.Hour, func() { cancel(ErrLeaseLost) })
	t := w.hold(o.TaskID, l)
	w.lmu.Lock()
	l.length = t.Lease
	if l.margin == 0 {
		l.margin = t.Lease / 10
	}
	if t.State != machine.StateClaimed || t.Worker != w.opts.ID || t.Attempts != o.Attempt {
		l.gone = true // cancelled or lost before it started
	} else {
		l.timer.Reset(time.Until(time.Unix(0, t.LeaseUntil.WallTime)) - l.margin)
	}
	gone := l.gone
	w.lmu.Unlock()
	j := &job{jobKey: jobKey{id: o.TaskID, attempt: o.Attempt}, lease: l}
	go func() {
		defer l.timer.Stop()
		defer cancel(nil)
		var err error
		if !gone {
			err = w.call(hctx, Task{
				Queue: w.queue, ID: t.ID, Payload: t.Payload, Priority: t.Priority, Attempt: o.Attempt, Worker: w.opts.ID,
				LeaseUntil: time.Unix(0, t.LeaseUntil.WallTime), LastError: t.LastError, Claim: s.pos,
			})
		}
		lost := errors.Is(context.Cause(hctx), ErrLeaseLost)
		cancel(nil)
		gone = w.release(o.TaskID, l)
		if lost || gone {
			w.leaseLost.Add(1)
			w.opts.Logger.Warn("lease lost", "queue", w.queue, "task", t.ID, "attempt", o.Attempt, "taken", gone)
		}
		if gone {
			done <- jobDone{key: j.jobKey} // no longer this attempt's: a report would be refused
			return
		}
		op := machine.Op{Op: machine.OpComplete, ID: t.ID, Worker: w.opts.ID, Attempt: o.Attempt}
		if err != nil {
			op.Op, op.Error = machine.OpFail, err.Error()
			if op.Error == "" {
				op.Error = "error with no text"
			}
			if len(op.Error) > maxErrorText {
				op.Error = strings.ToValidUTF8(op.Error[:maxErrorText], "") + "…"
			}
		}
		done <- jobDone{key: j.jobKey, report: &op}
	}()
	return j
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
