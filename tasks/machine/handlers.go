package machine

import (
	"strconv"

	strict "github.com/detbus/detbus/transform/fields"

	"github.com/detbus/detbus/hlc"
)

// Each handler runs after its operation has been parsed and the queue
// found created (create_queue aside). It returns a reason to reject the
// operation, having changed nothing, or "" having set o.Kind.

func (q *Queue) create(a *Op, o *Outcome) string {
	if q.cfg != nil {
		if *q.cfg != a.Config {
			return "queue already created with another config"
		}
		o.Kind = KindDuplicate
		return ""
	}
	c := a.Config
	q.cfg = &c
	o.Kind = KindCreated
	return ""
}

func (q *Queue) enqueue(a *Op, index uint64, o *Outcome) string {
	if _, ok := q.tasks[a.ID]; ok {
		o.Kind = KindDuplicate
		return ""
	}
	q.tasks[a.ID] = &Task{
		ID:           a.ID,
		State:        StatePending,
		Priority:     a.Priority,
		EnqueueIndex: index,
		Payload:      a.Payload,
		NotBefore:    a.NotBefore,
	}
	o.Kind, o.NotBefore = KindEnqueued, a.NotBefore
	return ""
}

func (q *Queue) claim(a *Op, now hlc.Timestamp, o *Outcome) string {
	var t *Task
	if a.ID == "" {
		if t = q.best(now); t == nil {
			return "no claimable task"
		}
	} else {
		if t = q.tasks[a.ID]; t == nil {
			return noTask(a.ID)
		}
		switch {
		case t.State == StatePending && now.Less(t.NotBefore):
			return "task " + quote(t.ID) + " is not due until " + t.NotBefore.String()
		case t.State == StatePending:
		case t.State != StateClaimed:
			return "task " + quote(t.ID) + " is " + string(t.State)
		case now.Less(t.LeaseUntil) && t.Worker == a.Worker:
			o.Kind, o.Attempt, o.LeaseUntil = KindDuplicate, t.Attempts, t.LeaseUntil
			return ""
		case now.Less(t.LeaseUntil):
			return "task " + quote(t.ID) + " is held by " + quote(t.Worker) + " until " + t.LeaseUntil.String()
		case t.Attempts >= q.cfg.MaxAttempts:
			// The last attempt's lease ran out: the claim dead-letters the
			// task instead of taking it.
			reason := expired(t)
			o.Kind, o.Attempt, o.Reason = KindDead, t.Attempts, reason
			t.State, t.LastError, t.Lease, t.LeaseUntil = StateDead, reason, 0, hlc.Timestamp{}
			return ""
		}
	}
	if t.State == StateClaimed {
		t.LastError = expired(t)
	}
	lease := a.Lease
	if lease == 0 {
		lease = q.cfg.Lease
	}
	t.State, t.Worker, t.Lease, t.LeaseUntil = StateClaimed, a.Worker, lease, after(now, lease)
	t.Attempts++
	o.Kind, o.TaskID, o.Attempt, o.LeaseUntil = KindClaimed, t.ID, t.Attempts, t.LeaseUntil
	return ""
}

// report handles the ops of a lease holder: heartbeat, complete and fail.
func (q *Queue) report(a *Op, now hlc.Timestamp, o *Outcome) string {
	t := q.tasks[a.ID]
	switch {
	case t == nil:
		return noTask(a.ID)
	case a.Op == OpComplete && t.State == StateCompleted && t.Worker == a.Worker && t.Attempts == a.Attempt:
		o.Kind = KindDuplicate
		return ""
	case t.State != StateClaimed:
		return "task " + quote(t.ID) + " is " + string(t.State)
	case a.Attempt != t.Attempts:
		return "attempt " + itoa(a.Attempt) + " is not the current attempt " + itoa(t.Attempts)
	case a.Worker != t.Worker:
		return "attempt " + itoa(a.Attempt) + " is held by " + quote(t.Worker)
	case !now.Less(t.LeaseUntil):
		return expired(t)
	}
	switch a.Op {
	case OpHeartbeat:
		if until := after(now, t.Lease); t.LeaseUntil.Less(until) {
			t.LeaseUntil = until
		}
		o.Kind, o.LeaseUntil = KindHeartbeat, t.LeaseUntil
		return ""
	case OpComplete:
		t.State, t.Result = StateCompleted, a.Result
		o.Kind = KindCompleted
	default: // OpFail
		t.LastError = a.Error
		o.Reason = a.Error
		if t.Attempts >= q.cfg.MaxAttempts {
			t.State, o.Kind = StateDead, KindDead
		} else {
			t.State, t.NotBefore = StatePending, after(now, q.cfg.Backoff.Delay(t.Attempts))
			o.Kind, o.NotBefore = KindRetry, t.NotBefore
		}
	}
	t.Lease, t.LeaseUntil = 0, hlc.Timestamp{}
	return ""
}

func (q *Queue) cancel(a *Op, o *Outcome) string {
	t := q.tasks[a.ID]
	switch {
	case t == nil:
		return noTask(a.ID)
	case t.State == StateCancelled:
		o.Kind = KindDuplicate
		return ""
	case t.State == StateCompleted:
		return "task " + quote(t.ID) + " is completed"
	}
	t.State, t.Lease, t.LeaseUntil = StateCancelled, 0, hlc.Timestamp{}
	o.Kind = KindCancelled
	return ""
}

func (q *Queue) requeue(a *Op, o *Outcome) string {
	t := q.tasks[a.ID]
	switch {
	case t == nil:
		return noTask(a.ID)
	case t.State != StateDead:
		return "task " + quote(t.ID) + " is " + string(t.State) + ", not dead"
	}
	t.State, t.Attempts, t.Worker, t.NotBefore = StatePending, 0, "", hlc.Timestamp{}
	o.Kind = KindRequeued
	return ""
}

func expired(t *Task) string {
	return "lease of attempt " + itoa(t.Attempts) + " expired at " + t.LeaseUntil.String()
}

func noTask(id string) string { return "no task " + quote(id) }

func quote(s string) string { return strict.Quote(s) }

func itoa(n int) string { return strconv.Itoa(n) }
