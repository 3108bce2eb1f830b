package tasks_test

import (
	"testing"

	"github.com/detbus/detbus/internal/testnats"
	"github.com/detbus/detbus/tasks"
	"github.com/detbus/detbus/tasks/machine"
)

// TestFarFutureClaimDoesNotSteal: a claim stamped far in the future by a
// raw publisher is judged at the time the stream stored it, so it cannot
// take a task whose honest lease has not expired, and the honest worker
// completes it.
func TestFarFutureClaimDoesNotSteal(t *testing.T) {
	cli := testnats.NatsCLI(t)
	c, url := withClient(t)
	ctx := ctxT(t)
	if _, err := c.Create(ctx, "payroll", machine.DefaultConfig()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Enqueue(ctx, "payroll", tasks.NewTask{ID: "pay-1"}); err != nil {
		t.Fatal(err)
	}
	if o := outcome(t, c, "payroll", machine.Op{Op: machine.OpClaim, ID: "pay-1", Worker: "honest"}); o.Kind != machine.KindClaimed {
		t.Fatalf("the honest claim: %+v", o)
	}
	testnats.NatsPub(t, ctx, cli, url, "events.tasks.payroll", `{"op":"claim","id":"pay-1","worker":"mallory"}`, true,
		"Detbus-Hlc:9223372036854775807.4294967295")
	if err := c.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if task, err := c.Show("payroll", "pay-1"); err != nil || task.Worker != "honest" {
		t.Fatalf("after the future claim the task is %+v (%v)", task, err)
	}
	if o := outcome(t, c, "payroll", machine.Op{Op: machine.OpComplete, ID: "pay-1", Worker: "honest", Attempt: 1}); o.Kind != machine.KindCompleted {
		t.Fatalf("the honest complete: %+v", o)
	}
	if q, err := c.Queue("payroll"); err != nil || q.Clamped != 1 {
		t.Fatalf("queue: %+v (%v), want 1 clamped event", q, err)
	}
}
