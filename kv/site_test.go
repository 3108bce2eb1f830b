package kv

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/detbus/detbus/hlc"
	"github.com/detbus/detbus/internal/faults"
	"github.com/detbus/detbus/internal/testnats"
	"github.com/detbus/detbus/transport"
)

// siteLogs makes a log of random ops for each site: declarations (some
// conflicting), sets on shared keys, adds and removes, increments, ticks.
func siteLogs(rng *rand.Rand, sites []string, n int) [][]transport.Event {
	logs := make([][]transport.Event, len(sites))
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	for i, site := range sites {
		index := map[string]uint64{}
		wall := base
		for k := range n {
			wall += int64(rng.IntN(3)) * int64(time.Millisecond) // equal times happen
			esk, op := "", ""
			tbl := fmt.Sprintf("kv.t%d", rng.IntN(4))
			key, el := rng.IntN(4), rng.IntN(3)
			switch r := rng.IntN(20); {
			case k == 0 || r == 0:
				typ := []string{"lww", "counter", "orset", "map", "mvreg"}[rng.IntN(5)]
				esk, op = "kv._config", fmt.Sprintf(`{"op":"set","key":"t%d","value":{"crdt":%q}}`, rng.IntN(4), typ)
			case r < 5:
				esk, op = tbl, fmt.Sprintf(`{"op":"set","key":"k%d","value":"%s%d"}`, key, site, k)
			case r < 6:
				esk, op = tbl, fmt.Sprintf(`{"op":"delete","key":"k%d"}`, key)
			case r < 9:
				esk, op = tbl, fmt.Sprintf(`{"op":"incr","key":"k%d","delta":%d}`, key, rng.IntN(5))
			case r < 12:
				esk, op = tbl, fmt.Sprintf(`{"op":"add","key":"k%d","element":"e%d"}`, key, el)
			case r < 14:
				esk, op = tbl, fmt.Sprintf(`{"op":"remove","key":"k%d","element":"e%d"}`, key, el)
			case r < 16:
				esk, op = tbl, fmt.Sprintf(`{"op":"set","key":"k%d","field":"f%d","value":%d}`, key, el, k)
			case r < 17:
				esk, op = tbl, fmt.Sprintf(`{"op":"remove","key":"k%d","field":"f%d"}`, key, el)
			case r < 18:
				esk, op = tbl, `{"op":"set","key":`
			default:
				esk, op = SiteTickESK, `{}`
			}
			ts := hlc.Timestamp{WallTime: wall}
			logs[i] = append(logs[i], transport.Event{ESK: esk, Index: index[esk], Seq: uint64(k + 1), Time: ts,
				Stored: time.Unix(0, wall), Data: []byte(op), Clamped: rng.IntN(30) == 0})
			index[esk]++
		}
	}
	return logs
}

// mergeInOrder feeds the logs to a site fold in a random interleaving of
// random batches (each log in its own order), as copies deliver them,
// and returns the state's encoding.
func mergeInOrder(t *testing.T, rng *rand.Rand, sites []string, logs [][]transport.Event) []byte {
	t.Helper()
	sf := newSiteFold(sites)
	st := newState()
	next := make([]int, len(logs))
	for {
		var open []int
		for i := range logs {
			if next[i] < len(logs[i]) {
				open = append(open, i)
			}
		}
		if len(open) == 0 {
			break
		}
		src := open[rng.IntN(len(open))]
		end := min(len(logs[src]), next[src]+1+rng.IntN(8))
		batch := logs[src][next[src]:end]
		if rng.IntN(5) == 0 && next[src] > 0 { // delivered again after a failed read
			batch = logs[src][next[src]-1 : end]
		}
		sf.receive(st, src, batch)
		next[src] = end
	}
	var buf bytes.Buffer
	if err := st.dump(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Sites that receive the same events in any order hold the same bytes.
func TestSiteFoldConverges(t *testing.T) {
	sites := []string{"a", "b", "c"}
	for seed := range uint64(40) {
		rng := rand.New(rand.NewPCG(seed, 7))
		logs := siteLogs(rng, sites, 80)
		want := mergeInOrder(t, rng, sites, logs)
		for range 5 {
			// The site's own log first at each site.
			perm := rng.Perm(len(sites))
			ps, pl := make([]string, len(sites)), make([][]transport.Event, len(sites))
			for i, j := range perm {
				ps[i], pl[i] = sites[j], logs[j]
			}
			if got := mergeInOrder(t, rng, ps, pl); !bytes.Equal(got, want) {
				t.Fatalf("seed %d: states differ by arrival order:\n%s\n%s", seed, got, want)
			}
		}
	}
}

// Three sites write to shared tables while one is cut off: afterwards
// their stores hold the same bytes, counters equal the increments that
// landed, and the table two sites declared differently during the
// partition has one winner and one visible rejection everywhere.
func TestStoresAtSitesConverge(t *testing.T) {
	if testing.Short() {
		t.Skip("sites take a minute to heal")
	}
	s := faults.StartSites(t, "a", "b", "c")
	ctx := context.Background()
	stores := siteStores(t, s)
	logs := map[string]*transport.Log{}
	for n, st := range stores {
		if got := st.SiteStats().Sites; len(got) != 3 || got[0] != n {
			t.Fatalf("store at %s folds %v", n, got)
		}
		logs[n] = st.log
	}
	must := func(_ transport.Position, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(stores["a"].CreateTable(ctx, "users", TypeLWW))
	must(stores["a"].CreateTable(ctx, "tags", TypeORSet))
	must(stores["b"].CreateTable(ctx, "hits", TypeCounter))
	// Every store sees every declaration before writing.
	testnats.WaitFor(t, 30*time.Second, "the declarations everywhere", func() error {
		for n, st := range stores {
			if len(st.Tables()) != 4 {
				return fmt.Errorf("%s has %d tables", n, len(st.Tables()))
			}
		}
		return nil
	})

	var mu sync.Mutex
	incrs := map[string]int64{}
	work := func(site string, rounds int) {
		st := stores[site]
		for k := range rounds {
			must(st.Set(ctx, "users", fmt.Sprintf("u%d", k%5), fmt.Sprintf("%s-%d", site, k)))
			must(st.Add(ctx, "tags", "t", fmt.Sprintf("%s%d", site, k%4)))
			if k%3 == 0 {
				must(st.Remove(ctx, "tags", "t", fmt.Sprintf("%s%d", site, (k+1)%4)))
			}
			must(st.Incr(ctx, "hits", "h", int64(k%7)))
			mu.Lock()
			incrs["h"] += int64(k % 7)
			mu.Unlock()
		}
	}
	var wg sync.WaitGroup
	phase := func(rounds int) {
		for _, n := range s.Names {
			wg.Add(1)
			go func() { defer wg.Done(); work(n, rounds) }()
		}
		wg.Wait()
	}
	phase(20)
	s.Net.Partition("c")
	phase(20) // c acknowledges its writes throughout
	must(stores["c"].CreateTable(ctx, "t2", TypeCounter))
	must(stores["a"].CreateTable(ctx, "t2", TypeLWW))
	s.Net.Heal()
	phase(10)

	// Once every copy holds its origin's log, every store holds the same.
	testnats.WaitFor(t, 3*time.Minute, "the copies", func() error {
		for n, l := range logs {
			cs, err := l.Copies(ctx)
			if err != nil {
				return err
			}
			for _, c := range cs {
				if !c.OriginReachable || c.Lag != 0 {
					return fmt.Errorf("%s's copy of %s: %+v", n, c.Origin, c)
				}
			}
		}
		return nil
	})
	var want []byte
	for _, n := range s.Names {
		// Right after healing, JetStream may answer "temporarily
		// unavailable" while a site's metadata catches up.
		testnats.WaitFor(t, time.Minute, "the store at "+n+" synced", func() error { return stores[n].Sync(ctx) })
		got, _, err := stores[n].Dump()
		if err != nil {
			t.Fatal(err)
		}
		if want == nil {
			want = got
		} else if !bytes.Equal(got, want) {
			t.Fatalf("the store at %s differs from a's:\n%s\n%s", n, got, want)
		}
		v, err := stores[n].Get("hits", "h")
		if err != nil || string(v.Value) != fmt.Sprint(incrs["h"]) {
			t.Fatalf("hits at %s: %s %v, want %d", n, v.Value, err, incrs["h"])
		}
		info, ok := stores[n].Table("t2")
		if !ok {
			t.Fatalf("no t2 at %s", n)
		}
		var lost bool
		for _, r := range stores[n].Rejections(ConfigTable) {
			lost = lost || (r.Table == ConfigTable && bytes.Contains(r.Data, []byte(`"t2"`)))
		}
		if !lost {
			t.Fatalf("the losing declaration of t2 (%s won) is not visible at %s", info.Type, n)
		}
		t.Logf("%s: t2 is %s; %+v", n, info.Type, stores[n].SiteStats())
	}

	// A store opened again at each site restores its snapshot and folds
	// only what follows, to the same bytes; writes after it still meet.
	for _, n := range s.Names {
		seq, err := stores[n].Snapshot(ctx)
		if err != nil || seq == 0 {
			t.Fatalf("snapshot at %s: %d %v", n, seq, err)
		}
		again, err := Open(ctx, logs[n], Options{StampHLC: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { again.Close() })
		if again.Restored() != seq {
			t.Fatalf("the store opened again at %s restored %d, the snapshot covers %d", n, again.Restored(), seq)
		}
		testnats.WaitFor(t, time.Minute, "the store opened again at "+n+" synced", func() error { return again.Sync(ctx) })
		if got, _, err := again.Dump(); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("the store restored at %s differs: %v\n%s\n%s", n, err, got, want)
		}
		stores[n] = again
	}
	must(stores["b"].Incr(ctx, "hits", "h", 5))
	must(stores["c"].Set(ctx, "users", "late", "c"))
	testnats.WaitFor(t, time.Minute, "the writes after the restores everywhere", func() error {
		var first []byte
		for _, n := range s.Names {
			if err := stores[n].Sync(ctx); err != nil {
				return err
			}
			got, _, err := stores[n].Dump()
			if err != nil {
				return err
			}
			if first == nil {
				first = got
			} else if !bytes.Equal(got, first) {
				return fmt.Errorf("%s differs", n)
			}
		}
		if v, err := stores["a"].Get("hits", "h"); err != nil || string(v.Value) != fmt.Sprint(incrs["h"]+5) {
			return fmt.Errorf("hits at a: %s %v", v.Value, err)
		}
		return nil
	})
}

// A site whose clock runs ahead cannot make its writes win over later
// writes elsewhere beyond the bound: a stamp further than
// transport.MaxEventSkew from the time its site stored it is not
// believed, and one within it is adopted by the other sites' clocks up to
// transport.MaxClockLead, so a later write elsewhere wins once the lead
// beyond that has passed (here at once for 20s ahead, never for 45s
// ahead within the test).
func TestSiteClockAheadCannotWinLater(t *testing.T) {
	s := faults.StartSites(t, "a", "b")
	ctx := context.Background()
	open := func(site string, ahead time.Duration) *Store {
		var l *transport.Log
		clock := hlc.NewClock(func() time.Time { return time.Now().Add(ahead) }, transport.MaxClockLead)
		testnats.WaitFor(t, time.Minute, "site "+site, func() (err error) {
			l, err = transport.Connect(ctx, s.URL(site), transport.Config{Site: site, Clock: clock, Timeout: 5 * time.Second})
			return err
		})
		t.Cleanup(func() { l.Close() })
		testnats.WaitFor(t, time.Minute, "copies at "+site, func() error {
			o, err := l.SyncCopies(ctx)
			if err == nil && len(o) != 1 {
				err = fmt.Errorf("origins %v", o)
			}
			return err
		})
		st, err := Open(ctx, l, Options{StampHLC: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
	for _, n := range s.Names { // both logs exist before either copies
		testnats.WaitFor(t, time.Minute, "site "+n, func() error {
			l, err := transport.Connect(ctx, s.URL(n), transport.Config{Site: n, Timeout: 5 * time.Second})
			if err == nil {
				l.Close()
			}
			return err
		})
	}
	b := open("b", 0)
	for _, c := range []struct {
		ahead    time.Duration
		fastWins bool // over b's write made after it arrived
	}{
		{5 * time.Minute, false},  // not believed: its stored time counts
		{20 * time.Second, false}, // adopted by b's clock
		{45 * time.Second, true},  // b's clock moves 30s ahead at most
	} {
		a := open("a", c.ahead)
		table := fmt.Sprintf("ahead%d", int(c.ahead.Seconds()))
		// Declared at b: an op made at b after a declaration from a site
		// further ahead than the lead would come before it in the merged
		// order, and be rejected as on an undeclared table.
		if _, err := b.CreateTable(ctx, table, TypeLWW); err != nil {
			t.Fatal(err)
		}
		testnats.WaitFor(t, 30*time.Second, "the table at a", func() error {
			if _, ok := a.Table(table); !ok {
				return fmt.Errorf("not yet")
			}
			return nil
		})
		if _, err := a.Set(ctx, table, "k", "fast"); err != nil {
			t.Fatal(err)
		}
		testnats.WaitFor(t, 30*time.Second, "a's write at b", func() error {
			if v, err := b.Get(table, "k"); err != nil || string(v.Value) != `"fast"` {
				return fmt.Errorf("%s %v", v.Value, err)
			}
			return nil
		})
		if _, err := b.Set(ctx, table, "k", "later"); err != nil {
			t.Fatal(err)
		}
		want := `"later"`
		if c.fastWins {
			want = `"fast"`
		}
		testnats.WaitFor(t, 30*time.Second, "the winner at both sites", func() error {
			for _, st := range []*Store{a, b} {
				if err := st.Sync(ctx); err != nil {
					return err
				}
				if v, err := st.Get(table, "k"); err != nil || string(v.Value) != want {
					return fmt.Errorf("%s %v, want %s", v.Value, err, want)
				}
			}
			return nil
		})
	}
}
