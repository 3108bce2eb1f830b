package taskshttp_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/detbus/detbus/tasks"
	"github.com/detbus/detbus/tasks/machine"
)

const chromiumPath = "/usr/bin/chromium"

// tab is a page of a headless Chromium, with the JavaScript exceptions
// thrown on it.
type tab struct {
	ctx context.Context
	mu  sync.Mutex
	exc []string
}

// browser starts a headless Chromium (Debian's package) for the test and
// returns a tab. Without Chromium the test is skipped, or fails when $CI is
// set. Chromium stops at cleanup.
func browser(t *testing.T) *tab {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		msg := fmt.Sprintf("%s not found: run scripts/install-tools.sh as root (it installs Debian's chromium package)", chromiumPath)
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	// A deadline for the whole browser, which ends it should a step hang.
	base, cancelBase := context.WithTimeout(context.Background(), 2*time.Minute)
	actx, cancelAlloc := chromedp.NewExecAllocator(base,
		chromedp.ExecPath(chromiumPath),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
	)
	ctx, cancelTab := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc() // waits for Chromium to exit
		cancelBase()
	})
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	tb := &tab{ctx: ctx}
	go func() {
		for ev, err := range chromedp.Events(ctx, runtime.ExceptionThrown) {
			if err != nil {
				return
			}
			tb.mu.Lock()
			tb.exc = append(tb.exc, (&chromedp.ExceptionError{ExceptionDetails: ev.ExceptionDetails}).Error())
			tb.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		if exc := tb.exceptions(); len(exc) > 0 {
			t.Errorf("JavaScript exceptions:\n%s", strings.Join(exc, "\n"))
		}
	})
	return tb
}

func (tb *tab) exceptions() []string {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return slices.Clone(tb.exc)
}

// do runs the steps; on failure it reports the page and any exceptions.
func (tb *tab) do(t *testing.T, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(tb.ctx, steps...); err != nil {
		page, _ := chromedp.Run(tb.ctx, chromedp.OuterHTML(chromedp.CSS("body")))
		t.Fatalf("%s: %v\nexceptions: %v\npage:\n%s", what, err, tb.exceptions(), page)
	}
}

// text returns the text of the first element matching a CSS selector.
func (tb *tab) text(t *testing.T, sel string) string {
	t.Helper()
	s, err := chromedp.Run(tb.ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("text of %s: %v", sel, err)
	}
	return s
}

// TestBrowserTasks drives the tasks page in a real Chromium: it sees a
// queue and a task enqueued by the SDK, enqueues and cancels through the
// page, sees the tasks complete live when a worker runs them, then
// creates a queue whose task dies and retries it.
func TestBrowserTasks(t *testing.T) {
	tb := browser(t)
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

	tb.do(t, "open the kv page with the token, then the tasks page from its nav",
		chromedp.Navigate(e.url+"/?token="+token),
		chromedp.WaitVisible(css(`#status[data-state="live"]`)),
		chromedp.Click(css(`#nav-tasks`)),
		chromedp.WaitVisible(css(`#queues li[data-queue="emails"]`)),
		chromedp.WaitVisible(css(`#status[data-state="live"]`)),
	)
	tb.do(t, "select the queue and the SDK's task",
		chromedp.Click(css(`#queues li[data-queue="emails"]`)),
		chromedp.WaitVisible(css(`#tasks tr[data-id="t1"][data-state="pending"]`)),
		chromedp.Click(css(`#tasks tr[data-id="t1"]`)),
		chromedp.WaitVisible(css(`#task-detail[data-state="pending"]`)),
	)
	if payload, stat := tb.text(t, `#detail-payload`), tb.text(t, `#queue-stats dd[data-stat="pending"]`); !strings.Contains(payload, `"to": "a@b"`) || stat != "1" {
		t.Fatalf("task detail: payload %q, pending %q", payload, stat)
	}

	tb.do(t, "enqueue a task through the form",
		chromedp.SendKeys(css(`#enqueue-id`), "t2"),
		chromedp.SendKeys(css(`#enqueue-payload`), `{"n":2}`),
		chromedp.SetValue(css(`#enqueue-priority`), "5"),
		chromedp.Click(css(`#enqueue-submit`)),
		chromedp.WaitVisible(css(`#tasks tr[data-id="t2"][data-state="pending"]`)),
	)
	if task, err := e.client.Show("emails", "t2"); err != nil || string(task.Payload) != `{"n":2}` || task.Priority != 5 {
		t.Fatalf("the client has %+v, %v", task, err)
	}
	if msg := tb.text(t, `#enqueue-msg`); !strings.Contains(msg, "enqueued t2 at tasks.emails#2") {
		t.Fatalf("enqueue message %q", msg)
	}

	tb.do(t, "enqueue a delayed task and cancel it",
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
	tb.do(t, "see the worker complete the tasks",
		chromedp.WaitVisible(css(`#tasks tr[data-id="t1"][data-state="completed"]`)),
		chromedp.WaitVisible(css(`#tasks tr[data-id="t2"][data-state="completed"]`)),
		chromedp.WaitVisible(css(`#changes li[data-id="t1"][data-state="completed"]`)),
		chromedp.Click(css(`#tasks tr[data-id="t1"]`)),
		chromedp.WaitVisible(css(`#task-detail[data-state="completed"]`)),
	)
	if worker, row := tb.text(t, `#detail-fields dd[data-field="worker"]`), tb.text(t, `#tasks tr[data-id="t1"] td.worker`); worker != "w-browser" || row != "w-browser" {
		t.Fatalf("worker in the detail %q, in the row %q", worker, row)
	}

	tb.do(t, "create a queue of one attempt",
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
	tb.do(t, "see the task die with its error",
		chromedp.WaitVisible(css(`#tasks tr[data-id="boom"][data-state="dead"]`)),
		chromedp.Click(css(`#tasks tr[data-id="boom"]`)),
		chromedp.WaitVisible(css(`#task-detail[data-state="dead"] #retry-task`)),
	)
	if row, detail := tb.text(t, `#tasks tr[data-id="boom"] td.error`), tb.text(t, `#detail-fields dd[data-field="last error"]`); row != "disk full" || detail != "disk full" {
		t.Fatalf("last error in the row %q, in the detail %q", row, detail)
	}
	mu.Lock()
	heal = true
	mu.Unlock()
	tb.do(t, "retry it",
		chromedp.Click(css(`#retry-task`)),
		chromedp.WaitVisible(css(`#tasks tr[data-id="boom"][data-state="completed"]`)),
	)
	if msg := tb.text(t, `#action-msg`); !strings.HasPrefix(msg, "requeued at tasks.flaky#") {
		t.Fatalf("retry message %q", msg)
	}

	if path := os.Getenv("DETBUS_TASKS_UI_SCREENSHOT"); path != "" {
		tb.do(t, "back to emails",
			chromedp.EmulateViewport(1440, 820),
			chromedp.Click(css(`#queues li[data-queue="emails"]`)),
			chromedp.WaitVisible(css(`#tasks tr[data-id="t2"]`)),
			chromedp.Click(css(`#tasks tr[data-id="t2"]`)),
			chromedp.WaitVisible(css(`#task-detail[data-state="completed"]`)))
		png, err := chromedp.Run(tb.ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
