package kv

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/detbus/detbus/internal/faults"
	"github.com/detbus/detbus/internal/testnats"
	"github.com/detbus/detbus/transport"
)

// TestScaleSiteStoreRestores: a store at a site folds its own log of a
// million ops and another site's copy, and snapshots; opened again it
// restores the snapshot, reads only what follows in each log, and holds
// the same state.
func TestScaleSiteStoreRestores(t *testing.T) {
	if testnats.Race {
		t.Skip("folds a log of a million events: runs without the race detector (the second pass of scripts/test.sh)")
	}
	if testing.Short() {
		t.Skip("folds a log of a million events")
	}
	n := testnats.ScaleEvents() / 2
	const keys = 5000
	s := faults.StartSites(t, "a", "b")
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	logs := map[string]*transport.Log{}
	for _, site := range s.Names {
		testnats.WaitFor(t, time.Minute, "site "+site, func() (err error) {
			logs[site], err = transport.Connect(ctx, s.URL(site), transport.Config{Site: site, Timeout: 10 * time.Second})
			return err
		})
		t.Cleanup(func() { logs[site].Close() })
	}
	la := logs["a"]
	op := func(i int) (string, []byte) {
		if i == 0 {
			return la.Subject("kv._config"), []byte(`{"op":"set","key":"users","value":{"crdt":"lww"}}`)
		}
		return la.Subject("kv.users"), fmt.Appendf(nil, `{"op":"set","key":"k-%d","value":{"i":%d}}`, i%keys, i)
	}
	begin := time.Now()
	if err := testnats.Publish(ctx, s.URL("a"), n, op); err != nil {
		t.Fatal(err)
	}
	t.Logf("published %d ops at a in %v", n, time.Since(begin).Round(time.Millisecond))
	// b ticks after them: nothing b writes later can come before them.
	if _, err := logs["b"].Write(ctx, SiteTickESK, []byte(`{}`), transport.WithHLC()); err != nil {
		t.Fatal(err)
	}
	testnats.WaitFor(t, time.Minute, "a's copy of b", func() error {
		if _, err := la.SyncCopies(ctx); err != nil {
			return err
		}
		c, err := la.Copy(ctx, "b")
		if err != nil {
			return err
		}
		defer c.Close()
		if n, err := c.Count(ctx, SiteTickESK); err != nil || n != 1 {
			return fmt.Errorf("%d ticks %v", n, err)
		}
		return nil
	})

	begin = time.Now()
	first, err := Open(ctx, la, Options{Replica: "first", SnapshotEvery: -1, SnapshotInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	if err := first.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("a store at a folded %d ops from the start in %v; %+v", n, time.Since(begin).Round(time.Millisecond), first.SiteStats())
	if info, ok := first.Table("users"); !ok || info.Ops != uint64(n-1) {
		t.Fatalf("table users: %+v %v", info, ok)
	}
	seq, err := first.Snapshot(ctx)
	if err != nil || seq == 0 {
		t.Fatalf("snapshot: %d %v", seq, err)
	}
	// More at a after the snapshot: the store opened again reads them.
	for i := range 10 {
		if _, err := la.Write(ctx, "kv.users", fmt.Appendf(nil, `{"op":"set","key":"after-%d","value":1}`, i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := first.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	before := la.ReadStats().Delivered
	begin = time.Now()
	again, err := Open(ctx, la, Options{Replica: "again", SnapshotEvery: -1, SnapshotInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if err := again.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("opened again: restored seq %d and caught up in %v", again.Restored(), time.Since(begin).Round(time.Millisecond))
	if again.Restored() != seq {
		t.Fatalf("restored %d, the snapshot covers %d", again.Restored(), seq)
	}
	if read := la.ReadStats().Delivered - before; read > 1000 {
		t.Fatalf("the store opened again read %d events of a's log", read)
	}
	want, _, err := first.Dump()
	if err != nil {
		t.Fatal(err)
	}
	if got, _, err := again.Dump(); err != nil || string(got) != string(want) {
		t.Fatalf("the restored store differs (%v)", err)
	}
}
