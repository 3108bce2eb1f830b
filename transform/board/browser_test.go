package board_test

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/detbus/detbus/examples/tally"
	"github.com/detbus/detbus/internal/browsertest"
	"github.com/detbus/detbus/internal/node/web"
	"github.com/detbus/detbus/internal/testnats"
	"github.com/detbus/detbus/transform"
)

// TestBrowserTransforms drives the transforms page in a real Chromium:
// two instances of the tally race and the page shows both with their
// wins adding up to the outputs, and charts; then a non-deterministic
// instance starts beside them and the page shows its divergence, with the
// output index, the input and both hashes, as it appears.
func TestBrowserTransforms(t *testing.T) {
	tb := browsertest.Start(t)
	const token = "a-token-of-twenty-chars"
	e := newEnv(t, asNode(t, web.Access{Token: token}))
	css := func(s string) chromedp.CSS { return chromedp.CSS(s) }
	e.run("a", tally.Spec(), transform.Config{})
	e.run("b", tally.Spec(), transform.Config{})
	first := e.move("w1", "bolt", 5)
	const moves = 30
	for i := 1; i < moves; i++ {
		e.move(fmt.Sprint("w", i%3), "bolt", 1)
	}

	tb.Do(t, "open the page with the token and see both instances",
		chromedp.Navigate(e.api+"/transforms?token="+token),
		chromedp.WaitVisible(css(`#status[data-state="live"]`)),
		chromedp.WaitVisible(css(`#dets li[data-det="tally"].selected`)),
		chromedp.WaitVisible(css(`#instances tr[data-instance="a"]`)),
		chromedp.WaitVisible(css(`#instances tr[data-instance="b"]`)),
	)
	won := func(name string) int {
		n, err := strconv.Atoi(strings.ReplaceAll(tb.Text(t, `#instances tr[data-instance="`+name+`"] td.won`), ",", ""))
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	testnats.WaitFor(t, 30*time.Second, "the wins of both instances adding up to every output", func() error {
		outputs := tb.Text(t, `#det-stats dd[data-stat="outputs"]`)
		if a, b := won("a"), won("b"); a+b != moves || outputs != strconv.Itoa(moves) {
			return fmt.Errorf("a won %d, b won %d, outputs %s", a, b, outputs)
		}
		return nil
	})
	tb.Do(t, "see the charts",
		chromedp.WaitReady(css(`#chart-wins g[data-instance="a"] rect.bar`)),
		chromedp.WaitReady(css(`#chart-wins g[data-instance="b"] rect.bar`)),
		chromedp.WaitReady(css(`#chart-rate path.line`)),
		chromedp.WaitReady(css(`#chart-lag path.line`)),
	)
	if got := tb.Text(t, `#divergences-empty`); !strings.Contains(got, "None") {
		t.Fatalf("before the divergence: %q", got)
	}

	// Without snapshots the newcomer replays from the first input, and
	// computes another output 0 than the one that landed.
	e.run("noisy", noisySpec(), transform.Config{SnapshotEvery: -1})
	tb.Do(t, "see the divergence appear",
		chromedp.WaitVisible(css(`#divergences tr[data-instance="noisy"][data-index="0"]`)),
		chromedp.WaitVisible(css(`#dets li[data-det="tally"] .diverged`)),
		chromedp.WaitVisible(css(`#instances tr[data-instance="noisy"][data-state="stopped"]`)),
	)
	row := `#divergences tr[data-instance="noisy"] `
	if in, own, landed := tb.Text(t, row+"td.input"), tb.Text(t, row+"td.own"), tb.Text(t, row+"td.landed"); in != fmt.Sprintf("%s · seq %d", first.ESK, first.Seq) ||
		len(own) != 12 || len(landed) != 12 || own == landed {
		t.Fatalf("divergence row: input %q, own %q, landed %q", in, own, landed)
	}
	if path := os.Getenv("DETBUS_UI_SCREENSHOT"); path != "" {
		tb.Do(t, "viewport", chromedp.EmulateViewport(1440, 900))
		png, err := chromedp.Run(tb.Ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
