package tasks_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/detbus/detbus/internal/testnats"
	"github.com/detbus/detbus/tasks"
	"github.com/detbus/detbus/tasks/machine"
	"github.com/detbus/detbus/transport"
)

// TestMalformedRejectedVisibly: malformed operations written straight to
// the log are rejected with their position and reason, counted and kept,
// while the valid operations around them are applied and run.
func TestMalformedRejectedVisibly(t *testing.T) {
	c, _ := withClient(t)
	l := c.Log()
	ctx := ctxT(t)
	write := func(body string) transport.Position {
		t.Helper()
		return must[transport.Position](t)(l.Write(ctx, "tasks.q", []byte(body)))
	}
	write(`{"op":"create_queue","lease":"10s"}`)
	bad := map[uint64]string{}
	for i, body := range []string{
		`not json`,
		`{"op":"enqueue","id":"t1"}`,
		`{"op":"dance"}`,
		`{"op":"enqueue","id":"t2"}`,
		`{"op":"enqueue","id":7}`,
		`{"op":"enqueue","id":"t3","priority":1.5}`,
		`{"op":"complete","id":"t1","worker":"w","attempt":1}`, // well-formed, refused
		`{"op":"enqueue","id":"t4"}`,
	} {
		pos := write(body)
		if !strings.Contains(body, `"id":"t`) || strings.Contains(body, "priority") {
			bad[pos.Index] = body
		}
		_ = i
	}
	w := must[*tasks.Worker](t)(tasks.NewWorker(c, "q", func(context.Context, tasks.Task) error { return nil }, tasks.WorkerOptions{}))
	runWorker(t, w)
	for _, id := range []string{"t1", "t2", "t4"} {
		waitState(t, c, "q", id, machine.StateCompleted)
	}
	info := must[tasks.QueueInfo](t)(c.Queue("q"))
	if info.Malformed != 4 || info.Tasks[machine.StateCompleted] != 3 {
		t.Fatalf("queue info: %+v", info)
	}
	malformed, refused := must2[[]tasks.Rejection, []tasks.Rejection](t)(c.Rejections("q"))
	want := []struct {
		index  uint64
		reason string
	}{{1, "malformed JSON"}, {3, `unknown op "dance"`}, {5, "id must be a string"}, {6, "priority must be an integer"}}
	if len(malformed) != len(want) {
		t.Fatalf("malformed: %+v", malformed)
	}
	for i, r := range malformed {
		if r.Index != want[i].index || r.Reason != want[i].reason || !r.Malformed || r.ESK != "tasks.q" || r.Seq == 0 {
			t.Errorf("rejection %d: %+v, want index %d %q", i, r, want[i].index, want[i].reason)
		}
		if string(r.Data) != bad[r.Index] {
			t.Errorf("rejection %d keeps %q", i, r.Data)
		}
	}
	if len(refused) == 0 || refused[0].Index != 7 || refused[0].Reason != `task "t1" is pending` || refused[0].Malformed {
		t.Errorf("refused: %+v", refused)
	}

	// Through the client, bad operations are errors and nothing is written.
	before := must[uint64](t)(l.Count(ctx, "tasks.q"))
	for _, c := range []struct {
		err  error
		call func() error
		want string
	}{
		{tasks.ErrInvalid, func() error { _, err := c.Enqueue(ctx, "q", tasks.NewTask{}); return err }, "missing id"},
		{tasks.ErrInvalid, func() error { _, err := c.Enqueue(ctx, "q", tasks.NewTask{ID: "x", Payload: []byte("{")}); return err }, "malformed JSON"},
		{tasks.ErrInvalid, func() error { _, err := c.Enqueue(ctx, "a..b", tasks.NewTask{ID: "x"}); return err }, `queue name "a..b"`},
		{tasks.ErrInvalid, func() error { _, err := c.Create(ctx, "q", machine.Config{}); return err }, "lease must be positive"},
		{tasks.ErrInvalid, func() error { _, err := c.Cancel(ctx, "q", ""); return err }, "missing id"},
	} {
		err := c.call()
		if !errors.Is(err, c.err) || !strings.Contains(fmt.Sprint(err), c.want) {
			t.Errorf("got %v, want %v naming %q", err, c.err, c.want)
		}
	}
	if after := must[uint64](t)(l.Count(ctx, "tasks.q")); after != before {
		t.Errorf("bad writes landed: count %d -> %d", before, after)
	}
	if _, err := c.Show("q", "nope"); !errors.Is(err, tasks.ErrNoTask) {
		t.Errorf("Show of a missing task: %v", err)
	}
	if _, err := c.List("nope"); !errors.Is(err, tasks.ErrNoQueue) {
		t.Errorf("List of a missing queue: %v", err)
	}
}

func must2[A, B any](t testing.TB) func(A, B, error) (A, B) {
	return func(a A, b B, err error) (A, B) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return a, b
	}
}

// TestReadYourWrites: after Wait on a write's position, a new client and
// an old one both show it; Sync catches up with writes of others.
func TestReadYourWrites(t *testing.T) {
	c, url := withClient(t)
	other := openClient(t, url)
	create(t, c, "q", machine.DefaultConfig())
	for i := range 50 {
		pos := must[transport.Position](t)(c.Enqueue(ctxT(t), "q", tasks.NewTask{ID: fmt.Sprint("t", i), Priority: int64(i % 3)}))
		if err := c.Wait(ctxT(t), pos); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Show("q", fmt.Sprint("t", i)); err != nil {
			t.Fatalf("after Wait: %v", err)
		}
	}
	if err := other.Sync(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if got := len(must[[]machine.Task](t)(other.List("q", machine.StatePending))); got != 50 {
		t.Fatalf("the other client lists %d pending tasks", got)
	}
	late := openClient(t, url)
	qs := late.Queues()
	if len(qs) != 1 || qs[0].Name != "q" || qs[0].Tasks[machine.StatePending] != 50 || qs[0].Events != 51 {
		t.Fatalf("queues: %+v", qs)
	}
	best := must[[]machine.Task](t)(late.Claimable("q", time.Now()))
	if best[0].ID != "t2" || best[0].Priority != 2 {
		t.Fatalf("best claimable: %+v", best[0])
	}
}

// TestNatsCLIOps: operations published with the nats CLI, which carry no
// SDK headers and take the stream's time, reach the fold: a queue created
// and a task enqueued from the CLI run on a worker, and a malformed one
// is rejected visibly.
func TestNatsCLIOps(t *testing.T) {
	cli := testnats.NatsCLI(t)
	c, url := withClient(t)
	w := must[*tasks.Worker](t)(tasks.NewWorker(c, "emails", func(ctx context.Context, task tasks.Task) error {
		if string(task.Payload) != `{"to":"a@b"}` {
			return fmt.Errorf("payload %s", task.Payload)
		}
		return nil
	}, tasks.WorkerOptions{ID: "w1"}))
	runWorker(t, w)
	for _, body := range []string{
		`{"op":"create_queue","lease":"30s","max_attempts":3}`,
		`{"op":"enqueue","id":"t1","payload":{"to": "a@b"}}`,
		`{"op":"enqueue","id":"t2","payload":{"to":"a@b"},"bogus":1}`,
	} {
		testnats.NatsPub(t, context.Background(), cli, url, "events.tasks.emails", body, true)
	}
	task := waitState(t, c, "emails", "t1", machine.StateCompleted)
	if task.Worker != "w1" {
		t.Fatalf("t1: %+v", task)
	}
	// t1's claim and completion land before the CLI's last publish, so
	// seeing t1 completed says nothing of that enqueue: catch up with the
	// log before reading its rejection.
	if err := c.Sync(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	cfg := must[tasks.QueueInfo](t)(c.Queue("emails")).Config
	if cfg.MaxAttempts != 3 || cfg.Lease != 30*time.Second {
		t.Fatalf("config %+v", cfg)
	}
	bad, _ := must2[[]tasks.Rejection, []tasks.Rejection](t)(c.Rejections("emails"))
	if len(bad) != 1 || bad[0].Reason != `unknown field "bogus"` || !strings.Contains(string(bad[0].Data), `"bogus":1`) {
		t.Fatalf("rejections: %+v", bad)
	}
}

// TestCloseLogsNothing: closing a client, even while its reader is still
// starting, is not a failure of the fold and logs nothing.
func TestCloseLogsNothing(t *testing.T) {
	url := testnats.Node(t).ClientURL()
	l := testnats.Log(t, url, transport.Config{})
	var logs testnats.SyncBuffer
	for range 20 {
		c, err := tasks.Open(ctxT(t), l, tasks.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	if logs.Len() != 0 {
		t.Fatalf("closing clients logged:\n%s", logs.String())
	}
}
