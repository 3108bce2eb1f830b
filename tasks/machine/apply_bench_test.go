package machine_test

import (
	"fmt"
	"testing"

	"github.com/detbus/detbus/tasks/machine"
)

// BenchmarkApplyCycle applies the three events of a task's usual life
// (enqueue, claim without id, complete), as every client's fold does.
func BenchmarkApplyCycle(b *testing.B) {
	q := machine.New("q")
	q.Apply(machine.Event{Time: at(0), Data: []byte(`{"op":"create_queue"}`)})
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		id := fmt.Sprint("t", i)
		q.Apply(machine.Event{Index: uint64(3 * i), Time: at(1), Data: []byte(`{"op":"enqueue","id":"` + id + `","payload":{"t":1700000000000000000}}`)})
		q.Apply(machine.Event{Index: uint64(3*i + 1), Time: at(1), Data: []byte(`{"op":"claim","worker":"w1"}`)})
		q.Apply(machine.Event{Index: uint64(3*i + 2), Time: at(1), Data: []byte(`{"op":"complete","id":"` + id + `","worker":"w1","attempt":1}`)})
	}
}
