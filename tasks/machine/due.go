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
// the tasks a claim at that time could take, not at every task.
func (q *Queue) Due(at hlc.Timestamp) Due {
	var d Due
	if q.cfg == nil {
		return d
	}
	d.Claimable = len(q.live.inReady)
	due, next := q.live.due(at)
	for _, e := range due {
		if q.claimable(e.t, at) {
			d.Claimable++
		} else {
			d.Expired = append(d.Expired, e.t.ID) // claimed, no attempt left
		}
	}
	if next != nil {
		d.Next = next.at
	}
	slices.Sort(d.Expired)
	return d
}
