package transform_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/detbus/detbus/internal/testnats"
	"github.com/detbus/detbus/transform"
	"github.com/detbus/detbus/transport"
)

// TestNewGenerationAfterDivergence: a faulty instance wrote outputs that
// the fixed DET contradicts, so the output can never be extended again.
// The DET goes on as generation 2 from a position where the log confirms
// a snapshot, and as generation 3 from the first input; each new output
// equals the reference, the faulty output stays as it was, and the status
// board lists every generation.
func TestNewGenerationAfterDivergence(t *testing.T) {
	s := testnats.Node(t)
	url := s.ClientURL()
	l := testnats.Log(t, url, transport.Config{})
	ctx := ctxT(t)
	store, err := transform.OpenSnapshotStore(ctx, l, "")
	if err != nil {
		t.Fatal(err)
	}
	board, err := transform.OpenStatusBoard(ctx, l)
	if err != nil {
		t.Fatal(err)
	}
	var seqs []uint64
	for i := range 30 {
		seqs = append(seqs, writeInputs(t, l, i, 1))
	}
	want, _ := expected(30)
	ref := reference(t, url, l, 30)

	// The faulty one: from its 15th step on, its outputs differ.
	spec := sumSpec("gen", "gen.out")
	faulty := spec
	faulty.New = func() transform.Transform { return &salted{sumDET: &sumDET{Totals: map[string]int64{}}, from: 15} }
	f := start(t, url, transform.Config{Spec: faulty, Instance: "faulty", Snapshots: store, SnapshotEvery: 10, Board: board})
	waitOutputs(t, l, "gen.out", want)
	settled(t, f, seqs[29])
	f.halt(t)
	audit := outputsOf(t, l, "gen.out")

	// The fixed DET, replaying from the start, meets the faulty output.
	fixed := start(t, url, transform.Config{Spec: spec, Instance: "fixed", Board: board})
	var d *transform.DivergenceError
	if err := <-fixed.done; !errors.As(err, &d) {
		t.Fatalf("the fixed DET: %v, want a divergence", err)
	}
	fixed.done <- nil

	// Generation 2, from the snapshot after the 10th input.
	g2 := start(t, url, transform.Config{Spec: spec, Instance: "fixed", Board: board, Snapshots: store, SnapshotEvery: 10,
		Generation: 2, StartAfter: seqs[9]})
	out2 := transform.GenerationOutput("gen.out", 2)
	before, _ := expected(10)
	waitOutputs(t, l, out2, want-before)
	st := settled(t, g2, seqs[29])
	if st.Inputs != 20 || st.Generation != 2 || st.Output != out2 || st.Won != want-before+uint64(len(outputsOf(t, l, out2+".rejected"))) {
		t.Fatalf("generation 2: %+v", st)
	}
	if got := outputsOf(t, l, out2); fmt.Sprint(got) != fmt.Sprint(ref[before:]) {
		t.Fatal("generation 2 differs from the reference after the 10th input")
	}
	g2.halt(t)
	// A restart of generation 2 restores its own snapshot.
	g2b := start(t, url, transform.Config{Spec: spec, Instance: "fixed-b", Snapshots: store, Generation: 2, StartAfter: seqs[9]})
	last := writeInputs(t, l, 30, 3)
	want33, _ := expected(33)
	waitOutputs(t, l, out2, want33-before)
	if st := settled(t, g2b, last); st.Inputs != 3 {
		t.Fatalf("restarted generation 2 applied %d inputs, want the 3 new ones", st.Inputs)
	}
	g2b.halt(t)

	// Generation 3, from the first input.
	g3 := start(t, url, transform.Config{Spec: spec, Instance: "fixed", Board: board, Generation: 3})
	out3 := transform.GenerationOutput("gen.out", 3)
	waitOutputs(t, l, out3, want33)
	settled(t, g3, last)
	ref33 := reference(t, url, l, 33)
	if got := outputsOf(t, l, out3); fmt.Sprint(got) != fmt.Sprint(ref33) {
		t.Fatal("generation 3 differs from the reference")
	}
	g3.halt(t)

	if got := outputsOf(t, l, "gen.out"); fmt.Sprint(got) != fmt.Sprint(audit) {
		t.Fatal("the faulty generation's output changed")
	}
	list, err := board.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	gens := map[string]bool{}
	for _, s := range list {
		gens[fmt.Sprintf("%s/%d/%s", s.Instance, s.Generation, s.Output)] = true
	}
	for _, k := range []string{"faulty/1/gen.out", "fixed/2/" + out2, "fixed/3/" + out3} {
		if !gens[k] {
			t.Errorf("the board lacks %s: %v", k, gens)
		}
	}

	// No snapshot of generation 2 at the position asked: refused, with
	// the reason.
	bad := startWith(t, transform.Config{Spec: spec, Instance: "x", Log: testnats.Log(t, url, transport.Config{}), Snapshots: store,
		Generation: 4, StartAfter: seqs[4], StatusInterval: time.Hour})
	if err := <-bad.done; err == nil || !errors.Is(err, transform.ErrSnapshotUnconfirmed) && !errors.Is(err, transport.ErrNotFound) {
		t.Fatalf("generation 4 after an input with no snapshot: %v", err)
	}
	bad.done <- nil
}
