package kvhttp_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/detbus/detbus/kv"
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

// TestBrowserUI drives the UI in a real Chromium: enter the token, create
// a table, put a value through the form and see it
// listed with its CRDT internals, then see a value written by the Go SDK
// appear live.
func TestBrowserUI(t *testing.T) {
	tb := browser(t)
	e := newEnv(t, envConfig{token: token})
	css := func(s string) chromedp.CSS { return chromedp.CSS(s) }

	tb.do(t, "open the UI without the token, then enter it",
		chromedp.Navigate(e.url+"/"),
		chromedp.WaitVisible(css(`#login-token`)),
		chromedp.SendKeys(css(`#login-token`), token),
		chromedp.Click(css(`#login-submit`)),
		chromedp.WaitVisible(css(`#status[data-state="live"]`)),
	)

	tb.do(t, "create a table",
		chromedp.SendKeys(css(`#new-table-name`), "users"),
		chromedp.SetValue(css(`#new-table-crdt`), "lww"),
		chromedp.Click(css(`#create-table-submit`)),
		chromedp.WaitVisible(css(`#tables li[data-table="users"]`)),
		chromedp.WaitVisible(css(`#table-view`)),
	)
	if got := tb.text(t, `#table-name`); got != "users" {
		t.Fatalf("table view shows %q", got)
	}
	if info, ok := e.store.Table("users"); !ok || info.Type != kv.TypeLWW {
		t.Fatalf("the store has %+v, %v", info, ok)
	}

	tb.do(t, "put a value",
		chromedp.SendKeys(css(`#op-key`), "alice"),
		chromedp.SendKeys(css(`#op-value`), `{"age":3}`),
		chromedp.Click(css(`#op-submit`)),
		chromedp.WaitVisible(css(`#keys tr[data-key="alice"]`)),
		chromedp.WaitVisible(css(`#key-detail`)),
	)
	if cell, msg := tb.text(t, `#keys tr[data-key="alice"] td.value`), tb.text(t, `#op-msg`); cell != `{"age":3}` || !strings.Contains(msg, "applied at kv.users#0") {
		t.Fatalf("after the put: cell %q, message %q", cell, msg)
	}
	if v, err := e.store.Get("users", "alice"); err != nil || string(v.Value) != `{"age":3}` {
		t.Fatalf("the store has %s, %v", v.Value, err)
	}
	if meta := tb.text(t, `#detail-meta`); !strings.Contains(meta, `"ts"`) || !strings.Contains(meta, `"esk": "kv.users"`) {
		t.Fatalf("CRDT internals: %s", meta)
	}

	// A write by the SDK shows up without a reload.
	if _, err := e.store.Set(ctxT(t), "users", "bob", "from the SDK"); err != nil {
		t.Fatal(err)
	}
	tb.do(t, "see the SDK's write live",
		chromedp.WaitVisible(css(`#keys tr[data-key="bob"]`)),
		chromedp.WaitVisible(css(`#events li[data-key="bob"]`)),
	)
	if cell, feed := tb.text(t, `#keys tr[data-key="bob"] td.value`), tb.text(t, `#events`); cell != `"from the SDK"` || !strings.Contains(feed, "users / bob") {
		t.Fatalf("live: cell %q, feed %q", cell, feed)
	}

	// The form offers each type's ops: a counter takes a delta.
	tb.do(t, "increment a counter",
		chromedp.SendKeys(css(`#new-table-name`), "hits"),
		chromedp.SetValue(css(`#new-table-crdt`), "counter"),
		chromedp.Click(css(`#create-table-submit`)),
		chromedp.WaitVisible(css(`#tables li[data-table="hits"].selected`)),
		chromedp.SendKeys(css(`#op-key`), "home"),
		chromedp.SetValue(css(`#op-delta`), "5"),
		chromedp.Click(css(`#op-submit`)),
		chromedp.WaitVisible(css(`#keys tr[data-key="home"]`)),
	)
	if kind, cell := tb.text(t, `#op-kind`), tb.text(t, `#keys tr[data-key="home"] td.value`); kind != "incr" || cell != "5" {
		t.Fatalf("counter: op %q, cell %q", kind, cell)
	}

	if path := os.Getenv("DETBUS_UI_SCREENSHOT"); path != "" {
		tb.do(t, "back to users", chromedp.Click(css(`#tables li[data-table="users"]`)), chromedp.WaitVisible(css(`#keys tr[data-key="alice"]`)))
		tb.do(t, "select alice", chromedp.EmulateViewport(1440, 820), chromedp.Click(css(`#keys tr[data-key="alice"]`)),
			chromedp.WaitVisible(css(`#key-detail`)))
		png, err := chromedp.Run(tb.ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
