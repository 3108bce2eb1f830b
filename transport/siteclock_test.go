package transport_test

import (
	"context"
	"testing"
	"time"

	"github.com/detbus/detbus/hlc"
	"github.com/detbus/detbus/internal/faults"
	"github.com/detbus/detbus/internal/testnats"
	"github.com/detbus/detbus/transport"
)

// A site's clock feeds on the times of the other sites' events it reads:
// a write after them is stamped later, unless they are further ahead
// than MaxClockLead, which the clock moves at most.
func TestSiteClockFeedsOnCopies(t *testing.T) {
	s := faults.StartSites(t, "a", "b")
	ctx := context.Background()
	ahead := func(d time.Duration) *hlc.Clock {
		return hlc.NewClock(func() time.Time { return time.Now().Add(d) }, transport.MaxClockLead)
	}
	open := func(site string, clock *hlc.Clock) *transport.Log {
		var l *transport.Log
		testnats.WaitFor(t, 60*time.Second, "site "+site, func() (err error) {
			l, err = transport.Connect(ctx, s.URL(site), transport.Config{Site: site, Clock: clock, Timeout: 5 * time.Second})
			return err
		})
		t.Cleanup(func() { l.Close() })
		return l
	}
	a10 := open("a", ahead(10*time.Second)) // within the lead: adopted
	a45 := open("a", ahead(45*time.Second)) // within the skew, beyond the lead
	a5m := open("a", ahead(5*time.Minute))  // beyond the skew: not believed
	b := open("b", nil)
	testnats.WaitFor(t, 60*time.Second, "b's copy of a", func() error {
		_, err := b.SyncCopies(ctx)
		return err
	})
	bc, err := b.Copy(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	defer bc.Close()

	read := func(esk string) transport.Event {
		t.Helper()
		var ev transport.Event
		testnats.WaitFor(t, 30*time.Second, "b's copy of "+esk, func() error {
			got, err := bc.Get(ctx, esk, 0)
			ev = got
			return err
		})
		for e, err := range bc.Events(ctx, []string{esk}, transport.ReadOptions{}) {
			if err != nil {
				t.Fatal(err)
			}
			ev = e
		}
		return ev
	}
	stampAtB := func() hlc.Timestamp {
		t.Helper()
		pos, err := b.Write(ctx, "x", []byte(`{}`), transport.WithHLC())
		if err != nil {
			t.Fatal(err)
		}
		ev, err := b.Get(ctx, "x", pos.Index)
		if err != nil || ev.Clamped {
			t.Fatalf("b's own write: %+v %v", ev, err)
		}
		return ev.Time
	}

	if _, err := a10.Write(ctx, "k10", []byte(`{}`), transport.WithHLC()); err != nil {
		t.Fatal(err)
	}
	e10 := read("k10")
	if e10.Clamped {
		t.Fatalf("a 10s-ahead stamp was not believed: %+v", e10)
	}
	if got := stampAtB(); !e10.Time.Less(got) {
		t.Fatalf("b wrote after reading a's event at %v, but stamped %v", e10.Time, got)
	}

	before := bc.ClockStats().Limited
	if _, err := a45.Write(ctx, "k45", []byte(`{}`), transport.WithHLC()); err != nil {
		t.Fatal(err)
	}
	e45 := read("k45")
	if e45.Clamped {
		t.Fatalf("a 45s-ahead stamp was not believed: %+v", e45)
	}
	if bc.ClockStats().Limited == before {
		t.Fatalf("a stamp 45s ahead was not limited: %+v", bc.ClockStats())
	}
	got := stampAtB()
	if !got.Less(e45.Time) || time.Duration(e45.Time.WallTime-got.WallTime) > 45*time.Second-transport.MaxClockLead+5*time.Second {
		t.Fatalf("b stamped %v after a's %v: want behind it by at most the lead beyond MaxClockLead", got, e45.Time)
	}

	if _, err := a5m.Write(ctx, "k5m", []byte(`{}`), transport.WithHLC()); err != nil {
		t.Fatal(err)
	}
	e5m := read("k5m")
	if !e5m.Clamped || time.Duration(e5m.Time.WallTime-e5m.Stored.UnixNano()) != 0 {
		t.Fatalf("a stamp 5 minutes ahead was believed: %+v", e5m)
	}
	if got2 := stampAtB(); !e5m.Time.Less(got2) {
		t.Fatalf("b's later write %v does not win over a's clamped %v", got2, e5m.Time)
	}
}
