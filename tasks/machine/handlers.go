package machine

import (
	"strconv"

	strict "github.com/detbus/detbus/transform/fields"

	"github.com/detbus/detbus/hlc"
)

// Each handler runs after its operation has been parsed and the queue
// found created (create_queue aside). It returns a reason to reject the
// operation, having changed nothing, or "" having set o.Kind.

func (q *Queue) create(a *args, o *Outcome) string {
	if q.cfg != nil {
		if *q.cfg != a.config {
			return "queue already created with another config"
		}
		o.Kind = KindDuplicate
		return ""
	}
	c := a.config
	q.cfg = &c
	o.Kind = KindCreated
	return ""
}

func (q *Queue) enqueue(a *args, index uint64, o *Outcome) string {
	if _, ok := q.tasks[a.id]; ok {
		o.Kind = KindDuplicate
		return ""
	}
	q.tasks[a.id] = &Task{
		ID:           a.id,
		State:        StatePending,
		Priority:     a.priority,
		EnqueueIndex: index,
		Payload:      a.payload,
		NotBefore:    a.notBefore,
	}
	o.Kind, o.NotBefore = KindEnqueued, a.notBefore
	return ""
}

func (q *Queue) claim(a *args, now hlc.Timestamp, o *Outcome) string {
	var t *Task
	if a.id == "" {
		if t = q.best(now); t == nil {
			return "no claimable task"
		}
	} else {
		if t = q.tasks[a.id]; t == nil {
			return noTask(a.id)
		}
		switch {
		case t.State == StatePending && now.Less(t.NotBefore):
			return "task " + quote(t.ID) + " is not due until " + t.NotBefore.String()
		case t.State == StatePending:
		case t.State != StateClaimed:
			return "task " + quote(t.ID) + " is " + string(t.State)
		case now.Less(t.LeaseUntil) && t.Worker == a.worker:
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
	lease := a.lease
	if lease == 0 {
		lease = q.cfg.Lease
	}
	t.State, t.Worker, t.Lease, t.LeaseUntil = StateClaimed, a.worker, lease, after(now, lease)
	t.Attempts++
	o.Kind, o.TaskID, o.Attempt, o.LeaseUntil = KindClaimed, t.ID, t.Attempts, t.LeaseUntil
	return ""
}

// report handles the ops of a lease holder: heartbeat, complete and fail.
func (q *Queue) report(a *args, now hlc.Timestamp, o *Outcome) string {
	t := q.tasks[a.id]
	switch {
	case t == nil:
		return noTask(a.id)
	case a.op == OpComplete && t.State == StateCompleted && t.Worker == a.worker && t.Attempts == a.attempt:
		o.Kind = KindDuplicate
		return ""
	case t.State != StateClaimed:
		return "task " + quote(t.ID) + " is " + string(t.State)
	case a.attempt != t.Attempts:
		return "attempt " + itoa(a.attempt) + " is not the current attempt " + itoa(t.Attempts)
	case a.worker != t.Worker:
		return "attempt " + itoa(a.attempt) + " is held by " + quote(t.Worker)
	case !now.Less(t.LeaseUntil):
		return expired(t)
	}
	switch a.op {
	case OpHeartbeat:
		if until := after(now, t.Lease); t.LeaseUntil.Less(until) {
			t.LeaseUntil = until
		}
		o.Kind, o.LeaseUntil = KindHeartbeat, t.LeaseUntil
		return ""
	case OpComplete:
		t.State, t.Result = StateCompleted, a.result
		o.Kind = KindCompleted
	default: // OpFail
		t.LastError = a.errText
		o.Reason = a.errText
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

func (q *Queue) cancel(a *args, o *Outcome) string {
	t := q.tasks[a.id]
	switch {
	case t == nil:
		return noTask(a.id)
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

func (q *Queue) requeue(a *args, o *Outcome) string {
	t := q.tasks[a.id]
	switch {
	case t == nil:
		return noTask(a.id)
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
