package transport_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/detbus/detbus/internal/faults"
	"github.com/detbus/detbus/internal/testnats"
	"github.com/detbus/detbus/transport"
)

// openSiteLogs opens every site's own log and makes every copy.
func openSiteLogs(t *testing.T, s *faults.Sites) map[string]*transport.Log {
	t.Helper()
	ctx := context.Background()
	logs := map[string]*transport.Log{}
	for _, n := range s.Names {
		testnats.WaitFor(t, 60*time.Second, "site "+n+"'s log", func() error {
			l, err := transport.Connect(ctx, s.URL(n), transport.Config{Site: n, Timeout: 5 * time.Second})
			if err != nil {
				return err
			}
			logs[n] = l
			return nil
		})
		t.Cleanup(func() { logs[n].Close() })
	}
	for _, n := range s.Names {
		testnats.WaitFor(t, 60*time.Second, "site "+n+"'s copies", func() error {
			origins, err := logs[n].SyncCopies(ctx)
			if err != nil {
				return err
			}
			if len(origins) != len(s.Names)-1 {
				return fmt.Errorf("origins %v", origins)
			}
			return nil
		})
	}
	return logs
}

// waitCopies waits until every site's copy of every other holds want
// events of it.
func waitCopies(t *testing.T, s *faults.Sites, logs map[string]*transport.Log, timeout time.Duration, want map[string]uint64) {
	t.Helper()
	testnats.WaitFor(t, timeout, "the copies", func() error {
		for _, n := range s.Names {
			cs, err := logs[n].Copies(context.Background())
			if err != nil {
				return err
			}
			for _, c := range cs {
				if c.Events != want[c.Origin] {
					return fmt.Errorf("%s's copy of %s holds %d events, want %d (%+v)", n, c.Origin, c.Events, want[c.Origin], c)
				}
			}
		}
		return nil
	})
}

func TestSitesWriteThroughPartition(t *testing.T) {
	if testing.Short() {
		t.Skip("sites take a minute to heal")
	}
	s := faults.StartSites(t, "a", "b", "c")
	logs := openSiteLogs(t, s)
	ctx := context.Background()
	if got := logs["a"].Config().Stream; got != "EVENTS_a" {
		t.Fatalf("stream %q", got)
	}
	want := map[string]uint64{}
	write := func(site string, k int) {
		t.Helper()
		if _, err := logs[site].ExistsOrWrite(ctx, "orders", uint64(k), fmt.Appendf(nil, `{"site":%q,"k":%d}`, site, k)); err != nil {
			t.Fatalf("write %d at %s: %v", k, site, err)
		}
		want[site]++
	}
	for k := range 5 {
		for _, n := range s.Names {
			write(n, k)
		}
	}
	waitCopies(t, s, logs, 30*time.Second, want)

	// A copy reads as the origin's log, and refuses writes.
	cp, err := logs["a"].Copy(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Close()
	ev, err := cp.Get(ctx, "orders", 3)
	if err != nil || string(ev.Data) != `{"site":"b","k":3}` {
		t.Fatalf("a's copy of b, orders 3: %q %v", ev.Data, err)
	}
	if _, err := cp.Write(ctx, "orders", []byte(`{}`)); !errors.Is(err, transport.ErrNotOwner) {
		t.Fatalf("write to a copy: %v", err)
	}
	if _, err := logs["a"].Copy(ctx, "zz"); !errors.Is(err, transport.ErrNotFound) {
		t.Fatalf("copy of an unknown site: %v", err)
	}
	// Buckets are the site's own.
	b, err := logs["c"].Bucket(ctx, transport.BucketConfig{Name: "state"})
	if err != nil || b.Name() != "state-c" {
		t.Fatalf("bucket at c: %v %v", b, err)
	}

	s.Net.Partition("c")
	// c keeps taking writes, conditional ones included, and reads its
	// copies; a and b take theirs.
	for k := 5; k < 10; k++ {
		for _, n := range s.Names {
			write(n, k)
		}
	}
	cb, err := logs["c"].Copy(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	defer cb.Close()
	if n, err := cb.Count(ctx, "orders"); err != nil || n != 5 {
		t.Fatalf("c's copy of b during the partition: %d %v", n, err)
	}
	var events int
	for _, err := range cb.Events(ctx, []string{"orders"}, transport.ReadOptions{}) {
		if err != nil {
			t.Fatalf("events of c's copy of b: %v", err)
		}
		events++
	}
	if events != 5 {
		t.Fatalf("c's copy of b delivered %d events", events)
	}
	// The owner is out of reach: its CP calls fail, and say so.
	octx, cancel := context.WithTimeout(ctx, 3*time.Second)
	if ob, err := logs["c"].Owner(octx, "b"); err == nil {
		_, err = ob.ExistsOrWrite(octx, "orders", 10, []byte(`{}`))
		if !errors.Is(err, transport.ErrUnavailable) {
			t.Fatalf("append at b from c during the partition: %v", err)
		}
	} else if !errors.Is(err, transport.ErrUnavailable) {
		t.Fatalf("owner b from c during the partition: %v", err)
	}
	cancel()
	cs, err := logs["c"].Copies(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		if c.OriginReachable {
			t.Fatalf("c reaches %s during the partition: %+v", c.Origin, c)
		}
	}

	s.Net.Heal()
	waitCopies(t, s, logs, 3*time.Minute, want)
	testnats.WaitFor(t, time.Minute, "every copy complete, its origin reachable", func() error {
		for _, n := range s.Names {
			cs, err := logs[n].Copies(ctx)
			if err != nil {
				return err
			}
			for _, c := range cs {
				if !c.OriginReachable || c.Lag != 0 || c.Behind != 0 {
					return fmt.Errorf("%s's copy of %s after healing: %+v", n, c.Origin, c)
				}
			}
		}
		return nil
	})
	// Every copy holds exactly its origin's events, in order.
	for _, n := range s.Names {
		for _, o := range s.Names {
			if o == n {
				continue
			}
			c, err := logs[n].Copy(ctx, o)
			if err != nil {
				t.Fatal(err)
			}
			// Right after healing, JetStream may answer "temporarily
			// unavailable" while a site's metadata catches up: read again.
			testnats.WaitFor(t, time.Minute, fmt.Sprintf("%s's copy of %s", n, o), func() error {
				var k int
				for ev, err := range c.Events(ctx, []string{"orders"}, transport.ReadOptions{}) {
					if err != nil {
						return err
					}
					if w := fmt.Sprintf(`{"site":%q,"k":%d}`, o, k); string(ev.Data) != w || ev.Index != uint64(k) {
						t.Fatalf("%s's copy of %s at %d: %q index %d", n, o, k, ev.Data, ev.Index)
					}
					k++
				}
				if k != 10 {
					t.Fatalf("%s's copy of %s holds %d events", n, o, k)
				}
				return nil
			})
			c.Close()
		}
	}
}

func TestSiteConfigErrors(t *testing.T) {
	for _, c := range []struct {
		cfg  transport.SiteConfig
		want string
	}{
		{transport.SiteConfig{Name: "Bad_Name", Port: 1}, "site name"},
		{transport.SiteConfig{Name: "a"}, "gateway port"},
		{transport.SiteConfig{Port: 7222}, "without a site name"},
		{transport.SiteConfig{Name: "a", Port: 1, Peers: []string{"B=nats://h:1"}}, "site name"},
		{transport.SiteConfig{Name: "a", Port: 1, Peers: []string{"nats://nohost"}}, "is not nats://host:port"},
	} {
		err := c.cfg.Validate()
		if !errors.Is(err, transport.ErrInvalidOption) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.cfg, err, c.want)
		}
	}
	// A peer given by URL alone must be up, to say its name.
	port := testnats.FreePorts(t, 2)
	_, err := transport.StartServer(transport.ServerConfig{Name: "x", Host: "127.0.0.1", Port: -1, StoreDir: t.TempDir(),
		Site: transport.SiteConfig{Name: "x", Port: port[0], Peers: []string{fmt.Sprintf("nats://127.0.0.1:%d", port[1])}}})
	if err == nil || !strings.Contains(err.Error(), "give it as name=") {
		t.Fatalf("unreachable unnamed peer: %v", err)
	}
}
