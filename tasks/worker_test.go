package tasks_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/detbus/detbus/internal/testnats"
	"github.com/detbus/detbus/transport"

	"github.com/detbus/detbus/tasks"
	"github.com/detbus/detbus/tasks/machine"
)

// TestWorkerCompletes: tasks enqueued before and after a worker starts
// all run once and complete with the worker's ID and attempt 1.
func TestWorkerCompletes(t *testing.T) {
	c, _ := withClient(t)
	create(t, c, "q", machine.DefaultConfig())
	for i := range 20 {
		if _, err := c.Enqueue(ctxT(t), "q", tasks.NewTask{ID: fmt.Sprint("t", i), Payload: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i))}); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	ran := map[string]int{}
	w := must[*tasks.Worker](t)(tasks.NewWorker(c, "q", func(ctx context.Context, task tasks.Task) error {
		mu.Lock()
		ran[task.ID]++
		mu.Unlock()
		return nil
	}, tasks.WorkerOptions{ID: "w1", Concurrency: 3}))
	runWorker(t, w)
	for i := 20; i < 40; i++ {
		if _, err := c.Enqueue(ctxT(t), "q", tasks.NewTask{ID: fmt.Sprint("t", i)}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 40 {
		task := waitState(t, c, "q", fmt.Sprint("t", i), machine.StateCompleted)
		if task.Worker != "w1" || task.Attempts != 1 {
			t.Errorf("task %s: %+v", task.ID, task)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for id, n := range ran {
		if n != 1 {
			t.Errorf("task %s ran %d times", id, n)
		}
	}
}

// TestRetryBackoffDeadRequeue: a failing task is retried after the
// queue's backoff (50ms, then 100ms), goes to the dead letters after its
// third attempt with the last error, and a requeue runs it again from
// attempt 1.
func TestRetryBackoffDeadRequeue(t *testing.T) {
	c, _ := withClient(t)
	create(t, c, "q", cfg(10*time.Second, 3, 50*time.Millisecond))
	var mu sync.Mutex
	var starts []time.Time
	healed := false
	w := must[*tasks.Worker](t)(tasks.NewWorker(c, "q", func(ctx context.Context, task tasks.Task) error {
		mu.Lock()
		defer mu.Unlock()
		starts = append(starts, time.Now())
		if healed {
			return nil
		}
		if task.Attempt > 1 && task.LastError != fmt.Sprintf("boom %d", task.Attempt-1) {
			return fmt.Errorf("attempt %d was told the last error %q", task.Attempt, task.LastError)
		}
		return fmt.Errorf("boom %d", task.Attempt)
	}, tasks.WorkerOptions{ID: "w1"}))
	runWorker(t, w)
	must[any](t)(c.Enqueue(ctxT(t), "q", tasks.NewTask{ID: "bad"}))
	dead := waitState(t, c, "q", "bad", machine.StateDead)
	if dead.Attempts != 3 || dead.LastError != "boom 3" || dead.Worker != "w1" {
		t.Fatalf("dead task: %+v", dead)
	}
	mu.Lock()
	if len(starts) != 3 {
		t.Fatalf("%d attempts ran, want 3", len(starts))
	}
	for i, want := range []time.Duration{50 * time.Millisecond, 100 * time.Millisecond} {
		if gap := starts[i+1].Sub(starts[i]); gap < want {
			t.Errorf("attempt %d started %v after attempt %d, before the backoff of %v", i+2, gap, i+1, want)
		}
	}
	healed = true
	mu.Unlock()
	letters := must[[]machine.Task](t)(c.Dead("q"))
	if len(letters) != 1 || letters[0].ID != "bad" {
		t.Fatalf("dead letters: %+v", letters)
	}
	must[any](t)(c.Requeue(ctxT(t), "q", "bad"))
	done := waitState(t, c, "q", "bad", machine.StateCompleted)
	if done.Attempts != 1 {
		t.Fatalf("requeued task completed at attempt %d", done.Attempts)
	}
	testnats.WaitFor(t, 10*time.Second, "the worker's counts", func() error {
		if st := w.Stats(); st.Failed != 3 || st.Dead != 1 || st.Completed != 1 || st.Won != 4 {
			return fmt.Errorf("stats: %+v", st)
		}
		return nil
	})
}

// TestIdempotentEnqueue: enqueuing an id again, whatever its payload,
// changes nothing, and the task runs once.
func TestIdempotentEnqueue(t *testing.T) {
	c, _ := withClient(t)
	create(t, c, "q", machine.DefaultConfig())
	first := outcome(t, c, "q", machine.Op{Op: machine.OpEnqueue, ID: "t1", Payload: json.RawMessage(`{"v":1}`)})
	again := outcome(t, c, "q", machine.Op{Op: machine.OpEnqueue, ID: "t1", Payload: json.RawMessage(`{"v":2}`)})
	if first.Kind != machine.KindEnqueued || again.Kind != machine.KindDuplicate {
		t.Fatalf("outcomes %s, %s", first.Kind, again.Kind)
	}
	var mu sync.Mutex
	var payloads []string
	w := must[*tasks.Worker](t)(tasks.NewWorker(c, "q", func(ctx context.Context, task tasks.Task) error {
		mu.Lock()
		payloads = append(payloads, string(task.Payload))
		mu.Unlock()
		return nil
	}, tasks.WorkerOptions{Concurrency: 4}))
	runWorker(t, w)
	waitState(t, c, "q", "t1", machine.StateCompleted)
	// Enqueued again after it completed: still the same task.
	pos := must[transport.Position](t)(c.Enqueue(ctxT(t), "q", tasks.NewTask{ID: "t1"}))
	if o := must[machine.Outcome](t)(c.Outcome(ctxT(t), pos)); o.Kind != machine.KindDuplicate {
		t.Fatalf("enqueue after completion: %+v", o)
	}
	if err := c.Wait(ctxT(t), pos); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(payloads) != 1 || payloads[0] != `{"v":1}` {
		t.Fatalf("handler ran on %q", payloads)
	}
}

// TestGracefulShutdown: after Run's context ends the worker claims
// nothing more, running handlers finish and are reported, and Run
// returns nil; a handler still running at the shutdown deadline has its
// context cancelled with ErrShutdown and its attempt fails.
func TestGracefulShutdown(t *testing.T) {
	c, _ := withClient(t)
	create(t, c, "q", cfg(10*time.Second, 5, time.Millisecond))
	release := make(chan struct{})
	started := make(chan string, 10)
	w := must[*tasks.Worker](t)(tasks.NewWorker(c, "q", func(ctx context.Context, task tasks.Task) error {
		started <- task.ID
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}, tasks.WorkerOptions{Concurrency: 2}))
	stop := runWorker(t, w)
	for _, id := range []string{"a", "b"} {
		must[any](t)(c.Enqueue(ctxT(t), "q", tasks.NewTask{ID: id}))
	}
	<-started
	<-started
	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	// Shutting down: a new task is not claimed.
	pos := must[transport.Position](t)(c.Enqueue(ctxT(t), "q", tasks.NewTask{ID: "late"}))
	if err := c.Wait(ctxT(t), pos); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-stopped:
		t.Fatalf("Run returned %v with handlers running", err)
	case id := <-started:
		t.Fatalf("task %s started during shutdown", id)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	if err := <-stopped; err != nil {
		t.Fatalf("Run: %v", err)
	}
	// Run returned after the reports were acknowledged: a sync shows them.
	if err := c.Sync(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a", "b"} {
		if task := must[machine.Task](t)(c.Show("q", id)); task.State != machine.StateCompleted {
			t.Errorf("task %s is %s after shutdown", id, task.State)
		}
	}
	if task := must[machine.Task](t)(c.Show("q", "late")); task.State != machine.StatePending {
		t.Errorf("late task is %s", task.State)
	}

	// A handler that outlives the shutdown deadline.
	w2 := must[*tasks.Worker](t)(tasks.NewWorker(c, "q", func(ctx context.Context, task tasks.Task) error {
		started <- task.ID
		<-ctx.Done()
		return context.Cause(ctx)
	}, tasks.WorkerOptions{ShutdownTimeout: 50 * time.Millisecond}))
	stop2 := runWorker(t, w2)
	if id := <-started; id != "late" {
		t.Fatalf("started %s", id)
	}
	if err := stop2(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if err := c.Sync(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	late := must[machine.Task](t)(c.Show("q", "late"))
	if late.State != machine.StatePending || late.LastError != tasks.ErrShutdown.Error() {
		t.Fatalf("late task after a forced shutdown: %+v", late)
	}
}

// TestLeaseLost: cancelling a running task cancels its handler's context
// with ErrLeaseLost, and nothing is reported for it.
func TestLeaseLost(t *testing.T) {
	c, _ := withClient(t)
	create(t, c, "q", machine.DefaultConfig())
	causes := make(chan error, 1)
	started := make(chan struct{})
	w := must[*tasks.Worker](t)(tasks.NewWorker(c, "q", func(ctx context.Context, task tasks.Task) error {
		close(started)
		<-ctx.Done()
		causes <- context.Cause(ctx)
		return nil
	}, tasks.WorkerOptions{}))
	runWorker(t, w)
	must[any](t)(c.Enqueue(ctxT(t), "q", tasks.NewTask{ID: "t1"}))
	<-started
	must[any](t)(c.Cancel(ctxT(t), "q", "t1"))
	select {
	case err := <-causes:
		if !errors.Is(err, tasks.ErrLeaseLost) {
			t.Fatalf("handler cancelled with %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("handler not cancelled")
	}
	testnats.WaitFor(t, 10*time.Second, "the lost lease counted", func() error {
		if st := w.Stats(); st.LeaseLost != 1 || st.Completed != 0 {
			return fmt.Errorf("stats %+v", st)
		}
		return nil
	})
}

// TestRedeliveryAfterExpiry: a task claimed by a worker that never
// reports is run by another worker once the lease expires, as attempt 2;
// a task whose last attempt expired is moved to the dead letters.
func TestRedeliveryAfterExpiry(t *testing.T) {
	c, _ := withClient(t)
	create(t, c, "q", cfg(200*time.Millisecond, 2, time.Millisecond))
	for _, id := range []string{"t1", "t2"} {
		must[any](t)(c.Enqueue(ctxT(t), "q", tasks.NewTask{ID: id}))
		if o := outcome(t, c, "q", machine.Op{Op: machine.OpClaim, ID: id, Worker: "ghost"}); o.Kind != machine.KindClaimed {
			t.Fatalf("ghost claim: %+v", o)
		}
	}
	// t2's second attempt is the ghost's too: after it expires, t2 is dead.
	testnats.WaitFor(t, 10*time.Second, "t2's lease to expire", func() error {
		o := outcome(t, c, "q", machine.Op{Op: machine.OpClaim, ID: "t2", Worker: "ghost"})
		if o.Kind != machine.KindClaimed {
			return fmt.Errorf("%s: %s", o.Kind, o.Reason)
		}
		return nil
	})
	var mu sync.Mutex
	attempts := map[string]int{}
	w := must[*tasks.Worker](t)(tasks.NewWorker(c, "q", func(ctx context.Context, task tasks.Task) error {
		mu.Lock()
		attempts[task.ID] = task.Attempt
		mu.Unlock()
		return nil
	}, tasks.WorkerOptions{ID: "w1"}))
	runWorker(t, w)
	t1 := waitState(t, c, "q", "t1", machine.StateCompleted)
	if t1.Attempts != 2 || t1.Worker != "w1" || !strings.HasPrefix(t1.LastError, "lease of attempt 1 expired") {
		t.Fatalf("t1: %+v", t1)
	}
	t2 := waitState(t, c, "q", "t2", machine.StateDead)
	if !strings.HasPrefix(t2.LastError, "lease of attempt 2 expired") {
		t.Fatalf("t2: %+v", t2)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(attempts) != 1 || attempts["t1"] != 2 {
		t.Fatalf("handler ran %v", attempts)
	}
}
