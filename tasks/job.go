package tasks

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"strings"
	"sync"
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

// lost reports whether the fold shows the lease lost.
func (l *lease) lost() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.gone
}

// start runs the handler on a won claim in a goroutine, cancelling its
// context when the lease is lost, and sends the report to done.
func (w *Worker) start(hard context.Context, s *sent, o machine.Outcome, done chan<- jobDone) *job {
	hctx, cancel := context.WithCancelCause(hard)
	l := &lease{worker: w.opts.ID, attempt: o.Attempt, cancel: cancel}
	t, unwatch := w.c.watchTask(w.queue, o.TaskID, l.onEvent)
	l.mu.Lock()
	l.length = t.Lease
	if t.State != machine.StateClaimed || t.Worker != w.opts.ID || t.Attempts != o.Attempt {
		l.gone = true // cancelled or lost before it started
	}
	l.margin = w.opts.LeaseMargin
	if l.margin == 0 {
		l.margin = t.Lease / 10
	}
	l.timer = time.AfterFunc(time.Until(time.Unix(0, t.LeaseUntil.WallTime))-l.margin, func() { cancel(ErrLeaseLost) })
	gone := l.gone
	l.mu.Unlock()
	j := &job{jobKey: jobKey{id: o.TaskID, attempt: o.Attempt}, lease: l}
	go func() {
		defer unwatch()
		defer l.timer.Stop()
		defer cancel(nil)
		if gone {
			w.leaseLost.Add(1)
			done <- jobDone{key: j.jobKey}
			return
		}
		err := w.call(hctx, Task{
			Queue: w.queue, ID: t.ID, Payload: t.Payload, Priority: t.Priority, Attempt: o.Attempt, Worker: w.opts.ID,
			LeaseUntil: time.Unix(0, t.LeaseUntil.WallTime), LastError: t.LastError, Claim: s.pos,
		})
		lost := errors.Is(context.Cause(hctx), ErrLeaseLost)
		cancel(nil)
		if lost {
			w.leaseLost.Add(1)
			w.opts.Logger.Warn("lease lost", "queue", w.queue, "task", t.ID, "attempt", o.Attempt, "taken", l.lost())
		}
		if l.lost() {
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
