package loghttp_test

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/detbus/detbus/internal/browsertest"
	"github.com/detbus/detbus/transport"
)

// TestBrowserLog drives the log page in a real Chromium: filter the ESKs
// by prefix, open one, read its events (a msgpack payload decoded), see
// an event written by the SDK arrive live, and jump to an index and to a
// stream position.
func TestBrowserLog(t *testing.T) {
	tb := browsertest.Start(t)
	e := newEnv(t, envConfig{token: token})
	css := func(s string) chromedp.CSS { return chromedp.CSS(s) }
	mp, err := transport.Msgpack.Marshal(map[string]any{"qty": 3, "side": "sell"})
	if err != nil {
		t.Fatal(err)
	}
	e.write("orders.eu", []byte(`{"side":"buy","qty":1}`), transport.WithHLC())
	e.write("other.x", []byte(`{}`))
	e.write("orders.eu", mp, transport.WithContentType(transport.ContentTypeMsgpack))
	p2 := e.write("orders.eu", []byte{0xde, 0xad, 0xbe, 0xef})
	e.write("orders.us", []byte(`"hello"`))

	tb.Do(t, "open the log page with the token",
		chromedp.Navigate(e.url+"/log?token="+token),
		chromedp.WaitVisible(css(`#esks li[data-esk="other.x"]`)),
		chromedp.WaitVisible(css(`#esks li[data-esk="orders.eu"]`)),
	)
	tb.Do(t, "filter the ESKs by prefix",
		chromedp.SendKeys(css(`#esk-prefix`), "orders."),
		chromedp.Click(css(`#esk-filter-submit`)),
		chromedp.WaitNotPresent(css(`#esks li[data-esk="other.x"]`)),
		chromedp.WaitVisible(css(`#esks li[data-esk="orders.us"]`)),
	)
	if total, count := tb.Text(t, `#esk-total`), tb.Text(t, `#esks li[data-esk="orders.eu"] .count`); !strings.Contains(total, "2 starting with") || count != "3" {
		t.Fatalf("list: total %q, orders.eu count %q", total, count)
	}

	tb.Do(t, "open orders.eu and follow it",
		chromedp.Click(css(`#esks li[data-esk="orders.eu"]`)),
		chromedp.WaitVisible(css(`#events tr[data-index="2"][data-format="bytes"]`)),
		chromedp.WaitVisible(css(`#status[data-state="live"]`)),
		chromedp.WaitVisible(css(`#esk-follow.live`)),
	)
	if row := tb.Text(t, `#events tr[data-index="0"] td.payload`); row != `{"side":"buy","qty":1}` {
		t.Fatalf("row 0 payload %q", row)
	}
	tb.Do(t, "see the msgpack event decoded",
		chromedp.Click(css(`#events tr[data-index="1"]`)),
		chromedp.WaitVisible(css(`#event-detail[data-index="1"]`)),
	)
	if format, payload, ct := tb.Text(t, `#detail-format`), tb.Text(t, `#detail-payload`), tb.Text(t, `#detail-fields dd[data-field="content type"]`); format != "msgpack" || !strings.Contains(payload, `"side": "sell"`) || ct != transport.ContentTypeMsgpack {
		t.Fatalf("msgpack detail: %q %q %q", format, payload, ct)
	}

	// A write by the SDK shows up without a reload.
	p3 := e.write("orders.eu", []byte(`{"side":"buy","qty":7}`), transport.WithHLC())
	tb.Do(t, "see the SDK's event arrive live",
		chromedp.WaitVisible(css(`#events tr[data-index="3"]`)),
		chromedp.WaitVisible(css(`#esks li[data-esk="orders.eu"]`)),
	)
	if row, seq, count := tb.Text(t, `#events tr[data-index="3"] td.payload`), tb.Text(t, `#events tr[data-index="3"] td.seq`), tb.Text(t, `#esk-stats div:first-child dd`); row != `{"side":"buy","qty":7}` || seq != fmt.Sprint(p3.Seq) || count != "4" {
		t.Fatalf("live row: payload %q, seq %q, stats %q", row, seq, count)
	}

	tb.Do(t, "jump to index 1",
		chromedp.SetValue(css(`#jump-index-value`), "1"),
		chromedp.Click(css(`#jump-index-submit`)),
		chromedp.WaitNotPresent(css(`#events tr[data-index="0"]`)),
		chromedp.WaitVisible(css(`#events tr:first-child[data-index="1"]`)),
	)
	tb.Do(t, "jump to the stream position of index 2",
		chromedp.SetValue(css(`#jump-seq-value`), fmt.Sprint(p2.Seq)),
		chromedp.Click(css(`#jump-seq-submit`)),
		chromedp.WaitVisible(css(`#events tr:first-child[data-index="2"]`)),
	)
	if msg := tb.Text(t, `#page-msg`); !strings.Contains(msg, fmt.Sprintf("the event at position %d is index 2", p2.Seq)) {
		t.Fatalf("after the jump: %q", msg)
	}
	tb.Do(t, "click the bytes event",
		chromedp.Click(css(`#events tr[data-index="2"]`)),
		chromedp.WaitVisible(css(`#event-detail[data-index="2"]`)),
	)
	if payload := tb.Text(t, `#detail-payload`); !strings.Contains(payload, "de ad be ef") {
		t.Fatalf("bytes detail %q", payload)
	}

	if path := os.Getenv("DETBUS_LOG_UI_SCREENSHOT"); path != "" {
		tb.Do(t, "back to the first event",
			chromedp.EmulateViewport(1440, 820),
			chromedp.Click(css(`#page-first`)),
			chromedp.WaitVisible(css(`#events tr[data-index="0"]`)),
			chromedp.Click(css(`#events tr[data-index="1"]`)),
			chromedp.WaitVisible(css(`#event-detail[data-index="1"]`)))
		png, err := chromedp.Run(tb.Ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
