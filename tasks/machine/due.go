package machine

import (
	"slices"

	"github.com/detbus/detbus/hlc"
)

// Due summarises, for a worker deciding when to claim, what claims could
// do at a time.
type Due struct {
	// Claimable counts the tasks a claim at the time could win.
	Claimable int
	// Expired lists, sorted, the claimed tasks whose last allowed
	// attempt's lease has expired: a claim naming one moves it to the
	// dead letters, which no claim without id does.
	Expired []string
	// Next is the earliest time after the given one when a pending task
	// falls due or a lease expires; zero when none will.
	Next hlc.Timestamp
}

// Due returns what claims at time at could do. It is a pure function of
// the state and at, like the rest of the machine, and costs a look at
// each task in flight or delayed, not at every task.
func (q *Queue) Due(at hlc.Timestamp) Due {
	var d Due
	if q.cfg == nil {
		return d
	}
	later := func(t hlc.Timestamp) {
		if d.Next.IsZero() || t.Less(d.Next) {
			d.Next = t
		}
	}
	d.Claimable = len(q.live.inReady)
	for _, t := range q.live.timed {
		switch {
		case q.claimable(t, at):
			d.Claimable++
		case t.State == StatePending:
			later(t.NotBefore)
		case t.State != StateClaimed:
		case at.Less(t.LeaseUntil):
			later(t.LeaseUntil)
		default: // expired, no attempt left
			d.Expired = append(d.Expired, t.ID)
		}
	}
	slices.Sort(d.Expired)
	return d
}
