package transform_test

import (
	"fmt"
	"testing"

	"github.com/detbus/detbus/internal/testnats"
	"github.com/detbus/detbus/transform"
	"github.com/detbus/detbus/transport"
)

// TestShadow: a shadow of a new version reads the same inputs and
// compares each output it computes with the one that landed, writing
// nothing. An equal version matches every output, including those landed
// after it caught up; one that differs from its 20th step is caught at
// the first output it changes, with the input and both hashes, and goes
// on comparing.
func TestShadow(t *testing.T) {
	s := testnats.Node(t)
	url := s.ClientURL()
	l := testnats.Log(t, url, transport.Config{})
	ctx := ctxT(t)
	store, err := transform.OpenSnapshotStore(ctx, l, "")
	if err != nil {
		t.Fatal(err)
	}
	var seqs []uint64
	for i := range 40 {
		seqs = append(seqs, writeInputs(t, l, i, 1))
	}
	spec := sumSpec("sh", "sh.out")
	live := start(t, url, transform.Config{Spec: spec, Instance: "live", Snapshots: store, SnapshotEvery: 10})
	want, rejected := expected(40)
	waitOutputs(t, l, "sh.out", want)
	settled(t, live, seqs[39])
	counts := func() string {
		st, err := l.State(ctx, ">")
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprint(st.LastSeq, st.ESKs)
	}
	before := counts()

	v2 := spec
	v2.Version = "2"
	same := start(t, url, transform.Config{Spec: v2, Instance: "v2-same", Shadow: true, Snapshots: store})
	v2bad := spec
	v2bad.Version = "2-bad"
	v2bad.New = func() transform.Transform { return &salted{sumDET: &sumDET{Totals: map[string]int64{}}, from: 20} }
	bad := start(t, url, transform.Config{Spec: v2bad, Instance: "v2-bad", Shadow: true})

	st := settled(t, same, seqs[39])
	if !st.Shadow || st.Matches != want+rejected || st.Mismatches != 0 || st.FirstMismatch != nil || st.Won != 0 {
		t.Fatalf("shadow of an equal version: %+v", st)
	}
	sb := settled(t, bad, seqs[39])
	// Its 21st step is input 21 (input 16 is rejected, with no step); the
	// output's index counts the outputs of the inputs before.
	firstBad, _ := expected(21)
	m := sb.FirstMismatch
	if m == nil || m.Index != firstBad || m.InputSeq != seqs[21] || m.OwnHash == m.FoundHash || m.OwnHash == "" || sb.Mismatches < 2 || sb.Matches == 0 {
		t.Fatalf("shadow of a different version: %+v, first mismatch %+v; want it at output %d, input seq %d", sb, m, firstBad, seqs[21])
	}
	if got := counts(); got != before {
		t.Fatalf("the shadows wrote: %s, before %s", got, before)
	}

	// New inputs: the shadow compares what the live instance writes.
	last := writeInputs(t, l, 40, 6)
	want46, rej46 := expected(46)
	waitOutputs(t, l, "sh.out", want46)
	if st := settled(t, same, last); st.Matches != want46+rej46 || st.Mismatches != 0 {
		t.Fatalf("shadow after new inputs: %+v", st)
	}
}
