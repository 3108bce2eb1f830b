package transport_test

import (
	"context"
	"testing"
	"time"

	"github.com/detbus/detbus/internal/faults"
	"github.com/detbus/detbus/transport"
)

// TestChainAcrossSites: site b's copy of site a's log verifies against
// a's checkpoints; an event written at b from an event of a names a's
// stream, and a trace at b follows it into b's copy, also while a is cut
// off.
func TestChainAcrossSites(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two sites")
	}
	s := faults.StartSites(t, "a", "b")
	logs := openSiteLogs(t, s)
	ctx := context.Background()
	a, b := logs["a"], logs["b"]
	writeN(t, a, "orders", 20)
	checkpointNow(t, a)
	writeN(t, a, "orders", 5)
	checkpointNow(t, a)
	st, err := a.State(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	waitCopies(t, s, logs, 30*time.Second, map[string]uint64{"a": st.Messages})
	cp, err := b.Copy(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Close()
	rep, err := cp.VerifyChain(ctx, transport.VerifyOptions{})
	if err != nil || rep.Origin != "EVENTS_a" || rep.Stream != "EVENTS_a_AT_b" || rep.Confirmed != 2 {
		t.Fatalf("b's copy of a: %+v, %v", rep, err)
	}

	in, err := cp.Get(ctx, "orders", 3)
	if err != nil {
		t.Fatal(err)
	}
	ref := cp.InputRef(in)
	if ref.Stream != "EVENTS_a" {
		t.Fatalf("an event of a's copy names stream %s", ref.Stream)
	}
	if _, err := b.Write(ctx, "derived", in.Data, transport.WithInput(ref)); err != nil {
		t.Fatal(err)
	}
	s.Net.Partition("a")
	path, err := b.Trace(ctx, "derived", 0)
	if err != nil || len(path) != 2 || path[0].Stream != "EVENTS_b" || path[1].Stream != "EVENTS_a_AT_b" || path[1].Seq != in.Seq {
		t.Fatalf("trace at b with a cut off: %+v, %v", path, err)
	}
	if rep, err := cp.VerifyChain(ctx, transport.VerifyOptions{From: rep.Resume}); err != nil || rep.Confirmed != 1 {
		t.Fatalf("b's copy of a, with a cut off: %+v, %v", rep, err)
	}
}
