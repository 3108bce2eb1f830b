package tasks_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"os"

	"github.com/detbus/detbus/tasks"
	"github.com/detbus/detbus/tasks/machine"
	"github.com/detbus/detbus/transport"
	"github.com/nats-io/nats.go"
)

// startExampleLog starts an embedded node reachable only in-process.
func startExampleLog() (*transport.Log, func()) {
	dir, err := os.MkdirTemp("", "detbus-example")
	if err != nil {
		log.Fatal(err)
	}
	srv, err := transport.StartServer(transport.ServerConfig{Name: "example", DontListen: true, StoreDir: dir})
	if err != nil {
		log.Fatal(err)
	}
	nc, err := nats.Connect("", nats.InProcessServer(srv.NATS()))
	if err != nil {
		log.Fatal(err)
	}
	l, err := transport.Open(context.Background(), nc, transport.Config{})
	if err != nil {
		log.Fatal(err)
	}
	return l, func() { l.Close(); nc.Close(); srv.Shutdown(); os.RemoveAll(dir) }
}

func ExampleWorker() {
	l, stop := startExampleLog()
	defer stop()
	ctx := context.Background()
	c, err := tasks.Open(ctx, l, tasks.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	if _, err := c.Create(ctx, "emails", machine.DefaultConfig()); err != nil {
		log.Fatal(err)
	}
	pos, err := c.Enqueue(ctx, "emails", tasks.NewTask{ID: "welcome-42", Payload: json.RawMessage(`{"to":"ada@example.com"}`)})
	if err != nil {
		log.Fatal(err)
	}
	// The same id again is a duplicate: enqueue is idempotent.
	again, _ := c.Enqueue(ctx, "emails", tasks.NewTask{ID: "welcome-42"})
	o, _ := c.Outcome(ctx, again)
	fmt.Println("enqueued at index", pos.Index, "then", o.Kind)

	sent := make(chan string, 1)
	w, err := tasks.NewWorker(c, "emails", func(ctx context.Context, t tasks.Task) error {
		var p struct{ To string }
		if err := json.Unmarshal(t.Payload, &p); err != nil {
			return err // fails the attempt; the queue retries it
		}
		sent <- p.To
		return nil // completes the task
	}, tasks.WorkerOptions{ID: "mailer-1", Concurrency: 4})
	if err != nil {
		log.Fatal(err)
	}
	wctx, stopWorker := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- w.Run(wctx) }()
	fmt.Println("sent to", <-sent)
	stopWorker() // graceful: waits for running handlers and their reports
	if err := <-done; err != nil {
		log.Fatal(err)
	}

	if err := c.Sync(ctx); err != nil {
		log.Fatal(err)
	}
	t, _ := c.Show("emails", "welcome-42")
	fmt.Println(t.ID, t.State, "by", t.Worker, "attempt", t.Attempts)
	// Output:
	// enqueued at index 1 then duplicate
	// sent to ada@example.com
	// welcome-42 completed by mailer-1 attempt 1
}
