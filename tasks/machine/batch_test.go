package machine_test

import (
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/detbus/detbus/tasks/machine"
)

// TestBatchEqualsItsOps: applying a batch has the effect, and gives the
// outcomes, of applying its operations one by one as events with the
// batch's index and time. Random histories are cut into random batches.
func TestBatchEqualsItsOps(t *testing.T) {
	for seed := range uint64(30) {
		rng := rand.New(rand.NewPCG(seed, 11))
		events, _, _ := sequence(t, rng, machine.New("q"), 300, 0)
		one, batched := machine.New("q"), machine.New("q")
		for len(events) > 0 {
			n := min(len(events), 1+rng.IntN(8))
			group := events[:n]
			events = events[n:]
			first := group[0]
			var ops []string
			var want []machine.Outcome
			for _, ev := range group {
				if _, err := machine.Decode(ev.Data); err != nil {
					continue // a malformed op rejects a whole batch
				}
				ops = append(ops, string(ev.Data))
				want = append(want, one.Apply(machine.Event{Index: first.Index, Time: first.Time, Data: ev.Data}))
			}
			if len(ops) == 0 {
				continue
			}
			o := batched.Apply(machine.Event{Index: first.Index, Time: first.Time, Data: []byte(`{"op":"batch","ops":[` + strings.Join(ops, ",") + `]}`)})
			if o.Kind != machine.KindBatch || !reflect.DeepEqual(o.Ops, want) {
				t.Fatalf("seed %d: batch of %s\n got %+v\nwant %+v", seed, ops, o, want)
			}
			if a, b := snap(t, one), snap(t, batched); a != b {
				t.Fatalf("seed %d: states differ after a batch:\n%s\n%s", seed, a, b)
			}
		}
	}
}

// TestBatchRejections: a malformed operation rejects the whole batch,
// naming its position, and changes nothing; refusals of well-formed
// operations are each op's own.
func TestBatchRejections(t *testing.T) {
	q := machine.New("q")
	run(t, q, 0, []step{
		{0, `{"op":"batch","ops":[{"op":"create_queue"},{"op":"enqueue","id":"t1"},{"op":"enqueue","id":"t1"}]}`, "batch"},
		{1, `{"op":"batch","ops":[{"op":"claim","worker":"w1"},{"op":"claim","worker":"w2"}]}`, "batch"},
		{2, `{"op":"batch","ops":[{"op":"enqueue","id":"t2"},{"op":"enqueue","id":7}]}`, "rejected: ops[1]: id must be a string"},
		{2, `{"op":"batch","ops":[{"op":"batch","ops":[{"op":"cancel","id":"t1"}]}]}`, "rejected: ops[0]: a batch cannot hold a batch"},
		{2, `{"op":"batch","ops":[]}`, "rejected: ops must not be empty"},
		{2, `{"op":"batch","ops":{"op":"cancel"}}`, "rejected: ops must be a JSON array"},
		{2, `{"op":"batch"}`, "rejected: missing ops"},
		{2, `{"op":"batch","ops":[1]}`, "rejected: ops[0]: operation must be a JSON object"},
	})
	o := q.Apply(machine.Event{Index: 1, Time: at(1), Data: []byte(`{"op":"batch","ops":[{"op":"claim","worker":"w1"},{"op":"claim","worker":"w2"}]}`)})
	var got []string
	for _, x := range o.Ops {
		got = append(got, format(x))
	}
	if want := []string{"rejected w1: no claimable task", "rejected w2: no claimable task"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("second claims: %q", got)
	}
	if _, ok := q.Task("t2"); ok {
		t.Fatal("a rejected batch enqueued t2")
	}
	if task, _ := q.Task("t1"); task.State != machine.StateClaimed || task.Worker != "w1" {
		t.Fatalf("t1: %+v", task)
	}
	big := `{"op":"batch","ops":[` + strings.Repeat(`{"op":"cancel","id":"x"},`, machine.MaxBatchOps) + `{"op":"cancel","id":"x"}]}`
	if _, err := machine.Decode([]byte(big)); err == nil || !strings.Contains(err.Error(), "ops holds more than 1000 operations") {
		t.Fatalf("an oversized batch: %v", err)
	}
}
