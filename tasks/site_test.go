package tasks_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/detbus/detbus/internal/faults"
	"github.com/detbus/detbus/internal/testnats"
	"github.com/detbus/detbus/tasks"
	"github.com/detbus/detbus/tasks/machine"
	"github.com/detbus/detbus/transport"
)

// A queue lives at one site. A client at another site opens the owner's
// log (transport.Config.Site names the owner) and works the queue through
// the gateways; while the owner is cut off, its calls fail and say so.
func TestQueueAtAnotherSite(t *testing.T) {
	s := faults.StartSites(t, "a", "b")
	ctx := context.Background()
	open := func(at, owner string) *tasks.Client {
		var c *tasks.Client
		testnats.WaitFor(t, time.Minute, fmt.Sprintf("the queue log of %s from %s", owner, at), func() error {
			l, err := transport.Connect(ctx, s.URL(at), transport.Config{Site: owner, Timeout: 2 * time.Second})
			if err != nil {
				return err
			}
			if c, err = tasks.Open(ctx, l, tasks.Options{}); err != nil {
				l.Close()
				return err
			}
			t.Cleanup(func() { c.Close(); l.Close() })
			return nil
		})
		return c
	}
	atA := open("a", "a")
	if _, err := atA.Create(ctx, "jobs", machine.DefaultConfig()); err != nil {
		t.Fatal(err)
	}
	fromB := open("b", "a")
	if got := fromB.Log().Config().Stream; got != "EVENTS_a" {
		t.Fatalf("b's client uses %s", got)
	}
	if _, err := fromB.Enqueue(ctx, "jobs", tasks.NewTask{ID: "t1"}); err != nil {
		t.Fatal(err)
	}
	w, err := tasks.NewWorker(fromB, "jobs", func(context.Context, tasks.Task) error { return nil }, tasks.WorkerOptions{ID: "worker-at-b"})
	if err != nil {
		t.Fatal(err)
	}
	wctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()
	testnats.WaitFor(t, 30*time.Second, "t1 completed by the worker at b, as a sees it", func() error {
		if err := atA.Sync(ctx); err != nil {
			return err
		}
		task, err := atA.Show("jobs", "t1")
		if err != nil {
			return err
		}
		if task.State != machine.StateCompleted || task.Worker != "worker-at-b" {
			return fmt.Errorf("t1: %+v", task)
		}
		return nil
	})
	stop()
	<-done

	s.Net.Partition("a")
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := fromB.Enqueue(cctx, "jobs", tasks.NewTask{ID: "t2"}); !errors.Is(err, transport.ErrUnavailable) {
		t.Fatalf("enqueue from b while a is cut off: %v", err)
	}
	// a itself goes on.
	if _, err := atA.Enqueue(ctx, "jobs", tasks.NewTask{ID: "t3"}); err != nil {
		t.Fatalf("enqueue at a while cut off: %v", err)
	}
}
