package tasks_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"

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
