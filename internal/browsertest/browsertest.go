// Package browsertest drives a headless Chromium for the tests of the
// browser UI (kv/kvhttp and tasks/taskshttp).
package browsertest

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
)

// ChromiumPath is where Debian's chromium package puts the browser.
const ChromiumPath = "/usr/bin/chromium"

// Tab is a page of a headless Chromium, with the JavaScript exceptions
// thrown on it.
type Tab struct {
	Ctx context.Context // the tab's chromedp context
	mu  sync.Mutex
	exc []string
}

// Start starts a headless Chromium (Debian's package) for the test and
// returns a tab. Without Chromium the test is skipped, or fails when $CI
// is set. At cleanup the test fails if the page threw a JavaScript
// exception, and Chromium stops.
func Start(t *testing.T) *Tab {
	t.Helper()
	if _, err := os.Stat(ChromiumPath); err != nil {
		msg := fmt.Sprintf("%s not found: run scripts/install-tools.sh as root (it installs Debian's chromium package)", ChromiumPath)
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	// A deadline for the whole browser, which ends it should a step hang.
	base, cancelBase := context.WithTimeout(context.Background(), 2*time.Minute)
	actx, cancelAlloc := chromedp.NewExecAllocator(base,
		chromedp.ExecPath(ChromiumPath),
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
	tb := &Tab{Ctx: ctx}
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
		if exc := tb.Exceptions(); len(exc) > 0 {
			t.Errorf("JavaScript exceptions:\n%s", strings.Join(exc, "\n"))
		}
	})
	return tb
}

// Exceptions returns the JavaScript exceptions thrown so far.
func (tb *Tab) Exceptions() []string {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return slices.Clone(tb.exc)
}

// Do runs the steps; on failure it reports the page and any exceptions.
func (tb *Tab) Do(t *testing.T, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(tb.Ctx, steps...); err != nil {
		page, _ := chromedp.Run(tb.Ctx, chromedp.OuterHTML(chromedp.CSS("body")))
		t.Fatalf("%s: %v\nexceptions: %v\npage:\n%s", what, err, tb.Exceptions(), page)
	}
}

// Text returns the text of the first element matching a CSS selector.
func (tb *Tab) Text(t *testing.T, sel string) string {
	t.Helper()
	s, err := chromedp.Run(tb.Ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("text of %s: %v", sel, err)
	}
	return s
}
