package kv

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/detbus/detbus/internal/testnats"
	"github.com/detbus/detbus/transport"
)

// TestScaleOpenFromSnapshotFoldsOnlyTheTail: a store folds a log of
// 1,000,000 ops published by a plain JetStream client and snapshots it; a
// store opened later on a fresh Log restores that snapshot, reads only the
// ops written after it, and holds the same state as the first.
func TestScaleOpenFromSnapshotFoldsOnlyTheTail(t *testing.T) {
	if testnats.Race {
		t.Skip("folds a log of a million events: runs without the race detector (the second pass of scripts/test.sh)")
	}
	if testing.Short() {
		t.Skip("folds a log of a million events")
	}
	const n, keys = 1_000_000, 5000
	srv := testnats.Node(t)
	url := srv.ClientURL()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	check := testnats.Log(t, url, transport.Config{}) // for the test's own reads and writes

	// Op 0 declares the lww table "users"; op i sets key k-<i mod keys>
	// to {"i":i}, so a key's value is its last set in log order.
	op := func(i int) (string, []byte) {
		if i == 0 {
			return check.Subject("kv._config"), []byte(`{"op":"set","key":"users","value":{"crdt":"lww"}}`)
		}
		return check.Subject("kv.users"), fmt.Appendf(nil, `{"op":"set","key":"k-%d","value":{"i":%d}}`, i%keys, i)
	}
	begin := time.Now()
	if err := testnats.Publish(ctx, url, n, op); err != nil {
		t.Fatal(err)
	}
	st, err := check.State(ctx, "")
	if err != nil || st.Messages != n {
		t.Fatalf("the log holds %d events (%v), want %d", st.Messages, err, n)
	}
	t.Logf("published %d ops in %v", n, time.Since(begin).Round(time.Millisecond))

	la := testnats.Log(t, url, transport.Config{})
	begin = time.Now()
	a := open(t, la, Options{Replica: "a"})
	if err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("first store: opened and folded %d ops in %v", n, time.Since(begin).Round(time.Millisecond))
	info, ok := a.Table("users")
	if !ok || info.Ops != n-1 || info.Rejected != 0 {
		t.Fatalf("table users: %+v, %v; want %d ops, none rejected", info, ok, n-1)
	}
	for _, j := range []int{0, 1, keys / 2, keys - 1} {
		last := n - 1 - (n-1-j)%keys // the last i < n with i mod keys == j
		if got, want := getValue(t, a, "users", "k-"+strconv.Itoa(j)), fmt.Sprintf(`{"i":%d}`, last); got != want {
			t.Fatalf("k-%d = %s, want %s", j, got, want)
		}
	}
	snapAt, err := a.Snapshot(ctx)
	if err != nil || snapAt != st.LastSeq {
		t.Fatalf("snapshot at seq %d (%v), want %d", snapAt, err, st.LastSeq)
	}

	// A few more ops: sets of an old and a new key, a delete, a
	// declaration, and a malformed op, which the fold rejects.
	tailOps := []struct{ esk, op string }{
		{"kv.users", `{"op":"set","key":"k-1","value":"after"}`},
		{"kv.users", `{"op":"set","key":"new","value":1}`},
		{"kv.users", `{"op":"delete","key":"k-2"}`},
		{"kv._config", `{"op":"set","key":"hits","value":{"crdt":"counter"}}`},
		{"kv.hits", `{"op":"incr","key":"home","delta":3}`},
		{"kv.users", `{"op":"set","key":`},
	}
	for _, o := range tailOps {
		if _, err := check.Write(ctx, o.esk, []byte(o.op)); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}

	// The second store, on a fresh Log, opens from the snapshot.
	lb := testnats.Log(t, url, transport.Config{})
	begin = time.Now()
	b := open(t, lb, Options{Replica: "b"})
	opened := time.Since(begin)
	if err := b.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	ready := time.Since(begin)
	if b.Restored() != snapAt {
		t.Fatalf("the second store restored seq %d, want the snapshot at %d", b.Restored(), snapAt)
	}
	rs := lb.ReadStats()
	if rs.Delivered != uint64(len(tailOps)) {
		t.Fatalf("the second store's log delivered %d events, want only the %d ops after the snapshot", rs.Delivered, len(tailOps))
	}
	if rs.DirectMsgs > 2*1000+64 {
		t.Fatalf("the second store read %d messages by direct get: it walked", rs.DirectMsgs)
	}
	da, sa, err := a.Dump()
	if err != nil {
		t.Fatal(err)
	}
	db, sb, err := b.Dump()
	if err != nil {
		t.Fatal(err)
	}
	if sa != sb || string(da) != string(db) {
		t.Fatalf("the restored store's state (seq %d, %d bytes) differs from the first store's (seq %d, %d bytes)", sb, len(db), sa, len(da))
	}
	if got := getValue(t, b, "users", "k-1"); got != `"after"` {
		t.Fatalf("k-1 = %s after the snapshot's tail, want \"after\"", got)
	}
	if info, _ := b.Table("users"); info.Rejected != 1 {
		t.Fatalf("table users: %d rejected, want the malformed op", info.Rejected)
	}
	t.Logf("second store: restored the snapshot at seq %d (%d bytes of state) in %v, folded the %d ops after it by %v; its log delivered %d events, %d direct gets, %d messages by direct get",
		snapAt, len(db), opened.Round(time.Microsecond), len(tailOps), ready.Round(time.Microsecond), rs.Delivered, rs.DirectGets, rs.DirectMsgs)
}
