package kvhttp_test

import (
	"os"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/detbus/detbus/internal/browsertest"
	"github.com/detbus/detbus/kv"
)

// TestBrowserUI drives the UI in a real Chromium: enter the token, create
// a table, put a value through the form and see it
// listed with its CRDT internals, then see a value written by the Go SDK
// appear live.
func TestBrowserUI(t *testing.T) {
	tb := browsertest.Start(t)
	e := newEnv(t, envConfig{token: token})
	css := func(s string) chromedp.CSS { return chromedp.CSS(s) }

	tb.Do(t, "open the UI without the token, then enter it",
		chromedp.Navigate(e.url+"/"),
		chromedp.WaitVisible(css(`#login-token`)),
		chromedp.SendKeys(css(`#login-token`), token),
		chromedp.Click(css(`#login-submit`)),
		chromedp.WaitVisible(css(`#status[data-state="live"]`)),
	)

	tb.Do(t, "create a table",
		chromedp.SendKeys(css(`#new-table-name`), "users"),
		chromedp.SetValue(css(`#new-table-crdt`), "lww"),
		chromedp.Click(css(`#create-table-submit`)),
		chromedp.WaitVisible(css(`#tables li[data-table="users"]`)),
		chromedp.WaitVisible(css(`#table-view`)),
	)
	if got := tb.Text(t, `#table-name`); got != "users" {
		t.Fatalf("table view shows %q", got)
	}
	if info, ok := e.store.Table("users"); !ok || info.Type != kv.TypeLWW {
		t.Fatalf("the store has %+v, %v", info, ok)
	}

	tb.Do(t, "put a value",
		chromedp.SendKeys(css(`#op-key`), "alice"),
		chromedp.SendKeys(css(`#op-value`), `{"age":3}`),
		chromedp.Click(css(`#op-submit`)),
		chromedp.WaitVisible(css(`#keys tr[data-key="alice"]`)),
		chromedp.WaitVisible(css(`#key-detail`)),
	)
	if cell, msg := tb.Text(t, `#keys tr[data-key="alice"] td.value`), tb.Text(t, `#op-msg`); cell != `{"age":3}` || !strings.Contains(msg, "applied at kv.users#0") {
		t.Fatalf("after the put: cell %q, message %q", cell, msg)
	}
	if v, err := e.store.Get("users", "alice"); err != nil || string(v.Value) != `{"age":3}` {
		t.Fatalf("the store has %s, %v", v.Value, err)
	}
	if meta := tb.Text(t, `#detail-meta`); !strings.Contains(meta, `"ts"`) || !strings.Contains(meta, `"esk": "kv.users"`) {
		t.Fatalf("CRDT internals: %s", meta)
	}

	// A write by the SDK shows up without a reload.
	if _, err := e.store.Set(ctxT(t), "users", "bob", "from the SDK"); err != nil {
		t.Fatal(err)
	}
	tb.Do(t, "see the SDK's write live",
		chromedp.WaitVisible(css(`#keys tr[data-key="bob"]`)),
		chromedp.WaitVisible(css(`#events li[data-key="bob"]`)),
	)
	if cell, feed := tb.Text(t, `#keys tr[data-key="bob"] td.value`), tb.Text(t, `#events`); cell != `"from the SDK"` || !strings.Contains(feed, "users / bob") {
		t.Fatalf("live: cell %q, feed %q", cell, feed)
	}

	// The form offers each type's ops: a counter takes a delta.
	tb.Do(t, "increment a counter",
		chromedp.SendKeys(css(`#new-table-name`), "hits"),
		chromedp.SetValue(css(`#new-table-crdt`), "counter"),
		chromedp.Click(css(`#create-table-submit`)),
		chromedp.WaitVisible(css(`#tables li[data-table="hits"].selected`)),
		chromedp.SendKeys(css(`#op-key`), "home"),
		chromedp.SetValue(css(`#op-delta`), "5"),
		chromedp.Click(css(`#op-submit`)),
		chromedp.WaitVisible(css(`#keys tr[data-key="home"]`)),
	)
	if kind, cell := tb.Text(t, `#op-kind`), tb.Text(t, `#keys tr[data-key="home"] td.value`); kind != "incr" || cell != "5" {
		t.Fatalf("counter: op %q, cell %q", kind, cell)
	}

	if path := os.Getenv("DETBUS_UI_SCREENSHOT"); path != "" {
		tb.Do(t, "back to users", chromedp.Click(css(`#tables li[data-table="users"]`)), chromedp.WaitVisible(css(`#keys tr[data-key="alice"]`)))
		tb.Do(t, "select alice", chromedp.EmulateViewport(1440, 820), chromedp.Click(css(`#keys tr[data-key="alice"]`)),
			chromedp.WaitVisible(css(`#key-detail`)))
		png, err := chromedp.Run(tb.Ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
