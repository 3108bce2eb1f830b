package tasks_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/detbus/detbus/internal/testnats"
	"github.com/detbus/detbus/tasks"
	"github.com/detbus/detbus/tasks/machine"
	"github.com/detbus/detbus/transport"
)

// withClient starts a node and opens a client on its own log.
func withClient(t *testing.T) (*tasks.Client, string) {
	t.Helper()
	url := testnats.Node(t).ClientURL()
	return openClient(t, url), url
}

// openClient opens a client on a new connection to url, closed at cleanup.
func openClient(t testing.TB, url string) *tasks.Client {
	t.Helper()
	l := testnats.Log(t, url, transport.Config{})
	c, err := tasks.Open(ctxT(t), l, tasks.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// must fails the test on err.
func must[T any](t testing.TB) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

// outcome writes op and returns what it did.
func outcome(t testing.TB, c *tasks.Client, queue string, op machine.Op) machine.Outcome {
	t.Helper()
	pos, err := c.Append(ctxT(t), queue, op)
	if err != nil {
		t.Fatalf("append %+v: %v", op, err)
	}
	o, err := c.Outcome(ctxT(t), pos)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// create creates queue with cfg and checks it was.
func create(t testing.TB, c *tasks.Client, queue string, cfg machine.Config) {
	t.Helper()
	if o := outcome(t, c, queue, machine.Op{Op: machine.OpCreateQueue, Config: cfg}); o.Kind != machine.KindCreated {
		t.Fatalf("create %s: %+v", queue, o)
	}
}

// waitState waits until task id of queue is in state.
func waitState(t testing.TB, c *tasks.Client, queue, id string, state machine.State) machine.Task {
	t.Helper()
	var task machine.Task
	testnats.WaitFor(t, 30*time.Second, fmt.Sprintf("task %s %s", id, state), func() error {
		var err error
		if task, err = c.Show(queue, id); err != nil {
			return err
		}
		if task.State != state {
			return fmt.Errorf("task %s is %s", id, task.State)
		}
		return nil
	})
	return task
}

// runWorker runs w until the test ends or stop is called; stop returns
// Run's error.
func runWorker(t testing.TB, w *tasks.Worker) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	stopped := false
	var err error
	stop = func() error {
		if !stopped {
			stopped = true
			cancel()
			err = <-done
		}
		return err
	}
	t.Cleanup(func() {
		if err := stop(); err != nil && !errors.Is(err, tasks.ErrClosed) {
			t.Errorf("worker %s: %v", w.ID(), err)
		}
	})
	return stop
}

// cfg is a queue config with a lease, attempts and a backoff.
func cfg(lease time.Duration, attempts int, initial time.Duration) machine.Config {
	c := machine.DefaultConfig()
	c.Lease, c.MaxAttempts = lease, attempts
	c.Backoff = machine.Backoff{Initial: initial, Factor: 2, Max: 10 * initial}
	return c
}
