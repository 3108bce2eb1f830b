package kv

import (
	"context"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/detbus/detbus/internal/faults"
	"github.com/detbus/detbus/internal/testnats"
	"github.com/detbus/detbus/transport"
)

// siteStores opens a kv store at each site, with the tables declared and
// seen everywhere.
func siteStores(tb testing.TB, s *faults.Sites) map[string]*Store {
	tb.Helper()
	ctx := context.Background()
	logs := map[string]*transport.Log{}
	for _, n := range s.Names {
		testnats.WaitFor(tb, time.Minute, "site "+n, func() (err error) {
			logs[n], err = transport.Connect(ctx, s.URL(n), transport.Config{Site: n, Timeout: 5 * time.Second})
			return err
		})
		tb.Cleanup(func() { logs[n].Close() })
	}
	for _, n := range s.Names {
		testnats.WaitFor(tb, time.Minute, "copies at "+n, func() error {
			o, err := logs[n].SyncCopies(ctx)
			if err == nil && len(o) != len(s.Names)-1 {
				err = fmt.Errorf("origins %v", o)
			}
			return err
		})
	}
	stores := map[string]*Store{}
	for _, n := range s.Names {
		st, err := Open(ctx, logs[n], Options{StampHLC: true})
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { st.Close() })
		stores[n] = st
	}
	return stores
}

// visibility writes at from and waits until the store to has folded
// each write; it returns the latencies.
func visibility(b *testing.B, from, to *Store) []time.Duration {
	ctx := context.Background()
	ch := to.Watch(ctx, "bench")
	lat := make([]time.Duration, 0, b.N)
	for i := range b.N {
		t0 := time.Now()
		if _, err := from.Set(ctx, "bench", "k", i); err != nil {
			b.Fatal(err)
		}
		want := fmt.Sprint(i)
		for c := range ch {
			if c.Key == "k" && string(c.Value.Value) == want {
				break
			}
		}
		lat = append(lat, time.Since(t0))
	}
	return lat
}

func reportLatency(b *testing.B, lat []time.Duration) {
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}

// BenchmarkSites measures the kv store across sites beside one site:
// how long until a write acknowledged at one site is folded by a store at
// another (p50, p99), and write throughput at a site with its links up
// and down, beside a raw JetStream publish on one server.
func BenchmarkSites(b *testing.B) {
	ctx := context.Background()
	one := testnats.Node(b)
	ol := testnats.Log(b, one.ClientURL(), transport.Config{})
	s1, err := Open(ctx, ol, Options{StampHLC: true})
	if err != nil {
		b.Fatal(err)
	}
	defer s1.Close()
	s2, err := Open(ctx, ol, Options{StampHLC: true})
	if err != nil {
		b.Fatal(err)
	}
	defer s2.Close()
	if _, err := s1.CreateTable(ctx, "bench", TypeLWW); err != nil {
		b.Fatal(err)
	}
	sites := faults.StartSites(b, "a", "b", "c")
	stores := siteStores(b, sites)
	if _, err := stores["a"].CreateTable(ctx, "bench", TypeLWW); err != nil {
		b.Fatal(err)
	}
	testnats.WaitFor(b, time.Minute, "the table at every site", func() error {
		for n, st := range stores {
			if _, ok := st.Table("bench"); !ok {
				return fmt.Errorf("not at %s yet", n)
			}
		}
		return nil
	})
	if err := s2.Sync(ctx); err != nil {
		b.Fatal(err)
	}

	b.Run("visible/one-site", func(b *testing.B) { reportLatency(b, visibility(b, s1, s2)) })
	b.Run("visible/across-sites", func(b *testing.B) { reportLatency(b, visibility(b, stores["a"], stores["b"])) })
	b.Run("write/raw-publish", func(b *testing.B) {
		js := ol.JetStream()
		for i := range b.N {
			if _, err := js.Publish(ctx, ol.Subject("raw.bench"), fmt.Appendf(nil, "%d", i)); err != nil {
				b.Fatal(err)
			}
		}
	})
	set := func(st *Store) func(b *testing.B) {
		return func(b *testing.B) {
			for i := range b.N {
				if _, err := st.Set(ctx, "bench", fmt.Sprint("w", i%100), i); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	b.Run("write/one-site", set(s1))
	b.Run("write/site-links-up", set(stores["c"]))
	sites.Net.Partition("c")
	b.Run("write/site-links-down", set(stores["c"]))
	sites.Net.Heal()
}

// TestSiteConvergenceFigure measures how long sites take to hold the same
// kv state after a partition of DETBUS_SITE_PARTITION (e.g. 30s) heals,
// with writes at every site during it (paced by DETBUS_SITE_WRITE_EVERY).
// It runs only when DETBUS_SITE_PARTITION is set.
func TestSiteConvergenceFigure(t *testing.T) {
	d, err := time.ParseDuration(os.Getenv("DETBUS_SITE_PARTITION"))
	if err != nil || d <= 0 {
		t.Skip("set DETBUS_SITE_PARTITION to a duration to measure convergence after a partition")
	}
	ctx := context.Background()
	sites := faults.StartSites(t, "a", "b", "c")
	stores := siteStores(t, sites)
	if _, err := stores["a"].CreateTable(ctx, "c", TypeCounter); err != nil {
		t.Fatal(err)
	}
	testnats.WaitFor(t, time.Minute, "the table everywhere", func() error {
		for n, st := range stores {
			if _, ok := st.Table("c"); !ok {
				return fmt.Errorf("not at %s", n)
			}
		}
		return nil
	})
	// DETBUS_SITE_WRITE_EVERY paces the rounds of writes (one at each
	// site); unset, they go as fast as they are acknowledged.
	every, _ := time.ParseDuration(os.Getenv("DETBUS_SITE_WRITE_EVERY"))
	sites.Net.Partition("c")
	end := time.Now().Add(d)
	written := 0
	for time.Now().Before(end) {
		next := time.Now().Add(every)
		for _, n := range sites.Names {
			if _, err := stores[n].Incr(ctx, "c", "k", 1); err != nil {
				t.Fatal(err)
			}
			written++
		}
		time.Sleep(time.Until(next))
	}
	sites.Net.Heal()
	healed := time.Now()
	testnats.WaitFor(t, 5*time.Minute, "the same state everywhere", func() error {
		var want string
		for _, n := range sites.Names {
			v, err := stores[n].Get("c", "k")
			if err != nil {
				return err
			}
			if string(v.Value) != fmt.Sprint(written) {
				return fmt.Errorf("%s counts %s of %d", n, v.Value, written)
			}
			dump, _, err := stores[n].Dump()
			if err != nil {
				return err
			}
			if want == "" {
				want = string(dump)
			} else if string(dump) != want {
				return fmt.Errorf("%s's state differs", n)
			}
		}
		return nil
	})
	t.Logf("partition %v, %d events written during it: converged %v after healing", d, written, time.Since(healed).Round(time.Millisecond))
}
