package faults

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/detbus/detbus/internal/testnats"
	"github.com/detbus/detbus/kv"
	"github.com/detbus/detbus/transport"
)

// siteKVWriter writes kv ops at its site's store until stopped: sets and
// adds on keys every site shares, removes, and increments.
type siteKVWriter struct {
	site  string
	store *kv.Store
	acked int // ops acknowledged
}

func (w *siteKVWriter) run(ctx context.Context) {
	for k := 0; ctx.Err() == nil; k++ {
		wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		var err error
		switch k % 4 {
		case 0:
			_, err = w.store.Set(wctx, "users", fmt.Sprintf("u%d", k%7), fmt.Sprintf("%s-%d", w.site, k))
		case 1:
			_, err = w.store.Add(wctx, "tags", "t", fmt.Sprintf("%s%d", w.site, k%5))
		case 2:
			_, err = w.store.Remove(wctx, "tags", "t", fmt.Sprintf("%s%d", w.site, (k+2)%5))
		default:
			_, err = w.store.Incr(wctx, "hits", "h", 1)
		}
		cancel()
		if err == nil {
			w.acked++
		}
		select {
		case <-ctx.Done():
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// siteWriter writes numbered events to ESK "w" of its site's own log
// until stopped, and keeps what was acknowledged.
type siteWriter struct {
	site string
	l    *transport.Log

	mu    sync.Mutex
	acked map[string]uint64 // payload -> stream sequence
	times []time.Time       // when each ack came
}

func (w *siteWriter) run(ctx context.Context) {
	for k := 0; ctx.Err() == nil; k++ {
		payload := fmt.Sprintf(`{"site":%q,"k":%d}`, w.site, k)
		wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		pos, err := w.l.Write(wctx, "w", []byte(payload))
		cancel()
		if err == nil {
			w.mu.Lock()
			w.acked[payload] = pos.Seq
			w.times = append(w.times, time.Now())
			w.mu.Unlock()
		}
		select {
		case <-ctx.Done():
		case <-time.After(2 * time.Millisecond):
		}
	}
}

func (w *siteWriter) ackedBetween(from, to time.Time) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, t := range w.times {
		if !t.Before(from) && t.Before(to) {
			n++
		}
	}
	return n
}

// TestSitesPartitionAndRestart runs three sites as processes, writing at
// every one, cuts one off, kills and restarts it while it is cut off,
// and heals: the cut-off site acknowledges writes throughout, after its
// restart too, and afterwards every origin's log holds every
// acknowledged write once, and every copy equals its origin.
func TestSitesPartitionAndRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("sites take a minute to heal")
	}
	bin := detbusBinary(t)
	c := StartSiteProcesses(t, bin, "a", "b", "c")
	ctx := context.Background()
	open := func(site string) *transport.Log {
		var l *transport.Log
		testnats.WaitFor(t, time.Minute, "the log of site "+site, func() (err error) {
			l, err = transport.Connect(ctx, c.Node(site).DirectURL(), transport.Config{Site: site, NoProvision: true, Timeout: 5 * time.Second}, ClientOptions()...)
			return err
		})
		t.Cleanup(func() { l.Close() })
		return l
	}
	logs := map[string]*transport.Log{}
	writers := map[string]*siteWriter{}
	for _, n := range []string{"a", "b", "c"} {
		logs[n] = open(n)
		writers[n] = &siteWriter{site: n, l: logs[n], acked: map[string]uint64{}}
	}
	testnats.WaitFor(t, time.Minute, "every copy", func() error {
		for n, l := range logs {
			cs, err := l.Copies(ctx)
			if err != nil {
				return err
			}
			if len(cs) != 2 || cs[0].Error != "" || cs[1].Error != "" {
				return fmt.Errorf("%s's copies: %+v", n, cs)
			}
		}
		return nil
	})
	stores := map[string]*kv.Store{}
	siteKVWriters := map[string]*siteKVWriter{}
	for n, l := range logs {
		st, err := kv.Open(ctx, l, kv.Options{StampHLC: true, NoRestore: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		stores[n] = st
		siteKVWriters[n] = &siteKVWriter{site: n, store: st}
	}
	for table, typ := range map[string]kv.Type{"users": kv.TypeLWW, "tags": kv.TypeORSet, "hits": kv.TypeCounter} {
		if _, err := stores["a"].CreateTable(ctx, table, typ); err != nil {
			t.Fatal(err)
		}
	}
	testnats.WaitFor(t, time.Minute, "the tables at every site", func() error {
		for n, st := range stores {
			if len(st.Tables()) != 4 {
				return fmt.Errorf("%d tables at %s", len(st.Tables()), n)
			}
		}
		return nil
	})
	wctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, w := range writers {
		wg.Add(1)
		go func() { defer wg.Done(); w.run(wctx) }()
	}
	for _, w := range siteKVWriters {
		wg.Add(1)
		go func() { defer wg.Done(); w.run(wctx) }()
	}
	waitAcks := func(site string, from time.Time, n int) {
		t.Helper()
		testnats.WaitFor(t, time.Minute, fmt.Sprintf("%d writes acknowledged at %s", n, site), func() error {
			if got := writers[site].ackedBetween(from, time.Now().Add(time.Hour)); got < n {
				return fmt.Errorf("%d so far", got)
			}
			return nil
		})
	}
	start := time.Now()
	for n := range writers {
		waitAcks(n, start, 50)
	}
	cut := time.Now()
	c.Net.Partition("c")
	// Two sites declare one table differently while apart.
	if _, err := stores["c"].CreateTable(ctx, "split", kv.TypeCounter); err != nil {
		t.Fatal(err)
	}
	if _, err := stores["a"].CreateTable(ctx, "split", kv.TypeLWW); err != nil {
		t.Fatal(err)
	}
	waitAcks("c", cut, 100)
	waitAcks("a", cut, 100)
	// Killed and restarted while cut off, c comes back on its own and
	// takes writes again.
	c.Node("c").Kill()
	if err := c.Node("c").Restart(); err != nil {
		t.Fatal(err)
	}
	if err := c.Node("c").WaitReady(2 * time.Minute); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now()
	waitAcks("c", restarted, 100)
	c.Net.Heal()
	healed := time.Now()
	for n := range writers {
		waitAcks(n, healed, 50)
	}
	stop()
	wg.Wait()
	t.Logf("acknowledged at c while cut off: %d before its restart, %d after", writers["c"].ackedBetween(cut, restarted), writers["c"].ackedBetween(restarted, healed))

	// Every copy catches up with its origin.
	last := map[string]uint64{}
	for n, l := range logs {
		// Right after healing, a site that restarted alone joins the
		// others' metadata, and may not answer for a moment.
		testnats.WaitFor(t, time.Minute, "the last sequence of "+n, func() (err error) {
			last[n], err = l.LastSeq(ctx, ">")
			return err
		})
	}
	testnats.WaitFor(t, 3*time.Minute, "the copies after healing", func() error {
		for n, l := range logs {
			cs, err := l.Copies(ctx)
			if err != nil {
				return err
			}
			for _, cp := range cs {
				if cp.LastSeq < last[cp.Origin] { // the nodes tick on
					return fmt.Errorf("%s's copy of %s at %d of %d", n, cp.Origin, cp.LastSeq, last[cp.Origin])
				}
			}
		}
		return nil
	})
	t.Logf("copies complete %v after healing", time.Since(healed).Round(time.Millisecond))

	// Each origin holds its acknowledged writes once; each copy equals it.
	type stored struct {
		seq     uint64
		payload string
	}
	readAll := func(l *transport.Log) []stored {
		t.Helper()
		var out []stored
		for ev, err := range l.Events(ctx, []string{"w"}, transport.ReadOptions{}) {
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, stored{ev.Seq, string(ev.Data)})
		}
		return out
	}
	for _, o := range []string{"a", "b", "c"} {
		own := readAll(logs[o])
		seen := map[string]bool{}
		for _, e := range own {
			if seen[e.payload] {
				t.Fatalf("%s's log holds %s twice", o, e.payload)
			}
			seen[e.payload] = true
		}
		w := writers[o]
		for p, seq := range w.acked {
			if !seen[p] {
				t.Fatalf("%s acknowledged %s at %d, and its log lacks it", o, p, seq)
			}
		}
		for _, n := range []string{"a", "b", "c"} {
			if n == o {
				continue
			}
			cp, err := logs[n].Copy(ctx, o)
			if err != nil {
				t.Fatal(err)
			}
			if got := readAll(cp); !slices.Equal(got, own) {
				t.Fatalf("%s's copy of %s holds %d events, the origin %d, or they differ", n, o, len(got), len(own))
			}
			if _, err := cp.Write(ctx, "w", []byte(`{}`)); !errors.Is(err, transport.ErrNotOwner) {
				t.Fatalf("write to %s's copy of %s: %v", n, o, err)
			}
			cp.Close()
		}
		t.Logf("site %s: %d events, %d acknowledged", o, len(own), len(w.acked))
	}

	// The kv stores hold the same bytes, and count every increment that
	// landed (a write cut short by the kill may have landed or not).
	landed := 0
	for _, l := range logs {
		for _, err := range l.Events(ctx, []string{"kv.hits"}, transport.ReadOptions{}) {
			if err != nil {
				t.Fatal(err)
			}
			landed++
		}
	}
	var want []byte
	testnats.WaitFor(t, time.Minute, "the same kv state at every site", func() error {
		want = nil
		for _, n := range []string{"a", "b", "c"} {
			if err := stores[n].Sync(ctx); err != nil {
				return err
			}
			v, err := stores[n].Get("hits", "h")
			if err != nil || string(v.Value) != fmt.Sprint(landed) {
				return fmt.Errorf("hits at %s: %s %v, %d landed", n, v.Value, err, landed)
			}
			got, _, err := stores[n].Dump()
			if err != nil {
				return err
			}
			if want == nil {
				want = got
			} else if string(got) != string(want) {
				return fmt.Errorf("the kv state at %s differs from a's", n)
			}
		}
		return nil
	})
	var winner kv.Type
	for _, n := range []string{"a", "b", "c"} {
		info, ok := stores[n].Table("split")
		if !ok || (winner != "" && info.Type != winner) {
			t.Fatalf("table split at %s: %+v %v, want %s", n, info, ok, winner)
		}
		winner = info.Type
		lost := false
		for _, r := range stores[n].Rejections(kv.ConfigTable) {
			lost = lost || strings.Contains(string(r.Data), `"split"`)
		}
		if !lost {
			t.Fatalf("the losing declaration of split is not visible at %s", n)
		}
	}
	for n, w := range siteKVWriters {
		t.Logf("kv at %s: %d ops acknowledged; %+v", n, w.acked, stores[n].SiteStats())
	}
}
