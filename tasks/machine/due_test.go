package machine_test

import (
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	"github.com/detbus/detbus/hlc"
	"github.com/detbus/detbus/tasks/machine"
)

// dueByScan is Due computed the slow way, from every task.
func dueByScan(q *machine.Queue, at hlc.Timestamp) machine.Due {
	var d machine.Due
	cfg, ok := q.Config()
	if !ok {
		return d
	}
	later := func(t hlc.Timestamp) {
		if d.Next.IsZero() || t.Less(d.Next) {
			d.Next = t
		}
	}
	for _, t := range q.Tasks() {
		switch {
		case t.State == machine.StatePending && !at.Less(t.NotBefore):
			d.Claimable++
		case t.State == machine.StatePending:
			later(t.NotBefore)
		case t.State != machine.StateClaimed:
		case at.Less(t.LeaseUntil):
			later(t.LeaseUntil)
		case t.Attempts < cfg.MaxAttempts:
			d.Claimable++
		default:
			d.Expired = append(d.Expired, t.ID)
		}
	}
	slices.Sort(d.Expired)
	return d
}

// TestDueMatchesScan: Due, which looks only at tasks in flight or
// delayed, agrees with a scan of every task after every event of random
// histories, at the event's time and later ones; Claimable lists as many
// tasks as Due counts.
func TestDueMatchesScan(t *testing.T) {
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 7))
		events, _, _ := sequence(t, rng, machine.New("q"), 300, 0)
		q := machine.New("q")
		for i, ev := range events {
			q.Apply(ev)
			for _, dt := range []int64{0, 1, 30, 120} {
				at := hlc.Timestamp{WallTime: ev.Time.WallTime + dt*1e9}
				got, want := q.Due(at), dueByScan(q, at)
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("seed %d event %d, +%ds: Due %+v, scan %+v", seed, i, dt, got, want)
				}
				if n := len(q.Claimable(at)); n != got.Claimable {
					t.Fatalf("seed %d event %d: Claimable lists %d, Due counts %d", seed, i, n, got.Claimable)
				}
			}
		}
	}
}
