package taskshttp_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/detbus/detbus/internal/browsertest"
	"github.com/detbus/detbus/tasks"
	"github.com/detbus/detbus/tasks/machine"
)

// TestBrowserTasks drives the tasks page in a real Chromium: it sees a
// queue and a task enqueued by the SDK, enqueues and cancels through the
// page, sees the tasks complete live when a worker runs them, then
// creates a queue whose task dies and retries it.
func TestBrowserTasks(t *testing.T) {
	tb := browsertest.Start(t)
	e := newEnv(t, envConfig{token: token, ui: true})
	css := func(s string) chromedp.CSS { return chromedp.CSS(s) }
	if _, err := e.client.Create(ctxT(t), "emails", machine.DefaultConfig()); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.Enqueue(ctxT(t), "emails", tasks.NewTask{ID: "t1", Payload: json.RawMessage(`{"to":"a@b"}`)}); err != nil {
		t.Fatal(err)
	}
	if err := e.client.Sync(ctxT(t)); err != nil {
		t.Fatal(err)
	}

	tb.Do(t, "open the kv page with the token, then the tasks page from its nav",
		chromedp.Navigate(e.url+"/?token="+token),
		chromedp.WaitVisible(css(`#status[data-state="live"]`)),
		chromedp.Click(css(`#nav-tasks`)),
		chromedp.WaitVisible(css(`#queues li[data-queue="emails"]`)),
		chromedp.WaitVisible(css(`#status[data-state="live"]`)),
	)
	tb.Do(t, "select the queue and the SDK's task",
		chromedp.Click(css(`#queues li[data-queue="emails"]`)),
		chromedp.WaitVisible(css(`#tasks tr[data-id="t1"][data-state="pending"]`)),
		chromedp.Click(css(`#tasks tr[data-id="t1"]`)),
		chromedp.WaitVisible(css(`#task-detail[data-state="pending"]`)),
	)
	if payload, stat := tb.Text(t, `#detail-payload`), tb.Text(t, `#queue-stats dd[data-stat="pending"]`); !strings.Contains(payload, `"to": "a@b"`) || stat != "1" {
		t.Fatalf("task detail: payload %q, pending %q", payload, stat)
	}

	tb.Do(t, "enqueue a task through the form",
		chromedp.SendKeys(css(`#enqueue-id`), "t2"),
		chromedp.SendKeys(css(`#enqueue-payload`), `{"n":2}`),
		chromedp.SetValue(css(`#enqueue-priority`), "5"),
		chromedp.Click(css(`#enqueue-submit`)),
		chromedp.WaitVisible(css(`#tasks tr[data-id="t2"][data-state="pending"]`)),
	)
	if task, err := e.client.Show("emails", "t2"); err != nil || string(task.Payload) != `{"n":2}` || task.Priority != 5 {
		t.Fatalf("the client has %+v, %v", task, err)
	}
	if msg := tb.Text(t, `#enqueue-msg`); !strings.Contains(msg, "enqueued t2 at tasks.emails#2") {
		t.Fatalf("enqueue message %q", msg)
	}

	tb.Do(t, "enqueue a delayed task and cancel it",
		chromedp.SendKeys(css(`#enqueue-id`), "later"),
		chromedp.SendKeys(css(`#enqueue-delay`), "1h"),
		chromedp.Click(css(`#enqueue-submit`)),
		chromedp.WaitVisible(css(`#tasks tr[data-id="later"][data-state="pending"]`)),
		chromedp.WaitVisible(css(`#task-detail[data-state="pending"] #cancel-task`)),
		chromedp.Click(css(`#cancel-task`)),
		chromedp.WaitVisible(css(`#tasks tr[data-id="later"][data-state="cancelled"]`)),
		chromedp.WaitVisible(css(`#task-detail[data-state="cancelled"]`)),
	)

	w, err := tasks.NewWorker(e.client, "emails", func(ctx context.Context, task tasks.Task) error { return nil }, tasks.WorkerOptions{ID: "w-browser"})
	if err != nil {
		t.Fatal(err)
	}
	runWorker(t, w)
	tb.Do(t, "see the worker complete the tasks",
		chromedp.WaitVisible(css(`#tasks tr[data-id="t1"][data-state="completed"]`)),
		chromedp.WaitVisible(css(`#tasks tr[data-id="t2"][data-state="completed"]`)),
		chromedp.WaitVisible(css(`#changes li[data-id="t1"][data-state="completed"]`)),
		chromedp.Click(css(`#tasks tr[data-id="t1"]`)),
		chromedp.WaitVisible(css(`#task-detail[data-state="completed"]`)),
	)
	if worker, row := tb.Text(t, `#detail-fields dd[data-field="worker"]`), tb.Text(t, `#tasks tr[data-id="t1"] td.worker`); worker != "w-browser" || row != "w-browser" {
		t.Fatalf("worker in the detail %q, in the row %q", worker, row)
	}

	tb.Do(t, "create a queue of one attempt",
		chromedp.SendKeys(css(`#new-queue-name`), "flaky"),
		chromedp.SendKeys(css(`#new-queue-attempts`), "1"),
		chromedp.SendKeys(css(`#new-queue-initial`), "10ms"),
		chromedp.Click(css(`#create-queue-submit`)),
		chromedp.WaitVisible(css(`#queues li[data-queue="flaky"].selected`)),
	)
	in, err := e.client.Queue("flaky")
	if err != nil || !in.Created || in.Config.MaxAttempts != 1 || in.Config.Backoff.Initial != 10*time.Millisecond || in.Config.Lease != 30*time.Second {
		t.Fatalf("the client has %+v, %v", in, err)
	}
	var mu sync.Mutex
	heal := false
	fw, err := tasks.NewWorker(e.client, "flaky", func(ctx context.Context, task tasks.Task) error {
		mu.Lock()
		defer mu.Unlock()
		if heal {
			return nil
		}
		return errors.New("disk full")
	}, tasks.WorkerOptions{ID: "w-flaky"})
	if err != nil {
		t.Fatal(err)
	}
	runWorker(t, fw)
	if _, err := e.client.Enqueue(ctxT(t), "flaky", tasks.NewTask{ID: "boom"}); err != nil {
		t.Fatal(err)
	}
	tb.Do(t, "see the task die with its error",
		chromedp.WaitVisible(css(`#tasks tr[data-id="boom"][data-state="dead"]`)),
		chromedp.Click(css(`#tasks tr[data-id="boom"]`)),
		chromedp.WaitVisible(css(`#task-detail[data-state="dead"] #retry-task`)),
	)
	if row, detail := tb.Text(t, `#tasks tr[data-id="boom"] td.error`), tb.Text(t, `#detail-fields dd[data-field="last error"]`); row != "disk full" || detail != "disk full" {
		t.Fatalf("last error in the row %q, in the detail %q", row, detail)
	}
	mu.Lock()
	heal = true
	mu.Unlock()
	tb.Do(t, "retry it",
		chromedp.Click(css(`#retry-task`)),
		chromedp.WaitVisible(css(`#tasks tr[data-id="boom"][data-state="completed"]`)),
	)
	if msg := tb.Text(t, `#action-msg`); !strings.HasPrefix(msg, "requeued at tasks.flaky#") {
		t.Fatalf("retry message %q", msg)
	}

	if path := os.Getenv("DETBUS_TASKS_UI_SCREENSHOT"); path != "" {
		tb.Do(t, "back to emails",
			chromedp.EmulateViewport(1440, 820),
			chromedp.Click(css(`#queues li[data-queue="emails"]`)),
			chromedp.WaitVisible(css(`#tasks tr[data-id="t2"]`)),
			chromedp.Click(css(`#tasks tr[data-id="t2"]`)),
			chromedp.WaitVisible(css(`#task-detail[data-state="completed"]`)))
		png, err := chromedp.Run(tb.Ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
