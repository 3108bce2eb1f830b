package transform_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/detbus/detbus/internal/testnats"
	"github.com/detbus/detbus/transform"
	"github.com/detbus/detbus/transport"
)

// TestOutputsNameTheirInput: whichever racing instance wins an index, the
// output and every rejection name the input they came from and its hash;
// a DET reading another's outputs names those, and a trace from its
// output walks back through both DETs to the source's event.
func TestOutputsNameTheirInput(t *testing.T) {
	s := testnats.Node(t)
	l := testnats.Log(t, s.ClientURL(), transport.Config{})
	const n = 60
	writeInputs(t, l, 0, n-1)
	// One input as the nats CLI writes it: a raw publish with a header.
	if _, err := l.JetStream().PublishMsg(ctxT(t), &nats.Msg{Subject: "events.nums.c", Data: []byte(`{"n":5}`),
		Header: nats.Header{"traceparent": {"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}}}); err != nil {
		t.Fatal(err)
	}
	want, rejected := expected(n)
	// The raw input is the last: its step (the 57th) has two outputs.
	for i := range 3 {
		start(t, s.ClientURL(), transform.Config{Spec: sumSpec("sum", "sum.out"), Instance: fmt.Sprint("i", i)})
	}
	// A second DET reads the first one's outputs.
	second := transform.Spec{Name: "again", Version: "1", Inputs: []string{"sum.out"}, Output: "again.out",
		New: func() transform.Transform { return &echoDET{} }}
	start(t, s.ClientURL(), transform.Config{Spec: second, Instance: "a"})
	waitOutputs(t, l, "sum.out", want)
	waitOutputs(t, l, "sum.out.rejected", rejected)
	waitOutputs(t, l, "again.out", want)

	check := func(esk string, inputs []string) {
		t.Helper()
		for ev, err := range l.Events(ctxT(t), []string{esk}, transport.ReadOptions{}) {
			if err != nil {
				t.Fatal(err)
			}
			ref, ok, err := transport.InputOf(ev.Header)
			if err != nil || !ok {
				t.Fatalf("%s#%d names no input (%v): %v", esk, ev.Index, err, ev.Header)
			}
			in, err := l.Get(ctxT(t), ref.ESK, ref.Index)
			if err != nil {
				t.Fatal(err)
			}
			if ref.Stream != "EVENTS" || in.Seq != ref.Seq || l.EventHash(in) != ref.Hash || !slices.Contains(inputs, ref.ESK) {
				t.Fatalf("%s#%d names input %s %s; the event there is seq %d hash %s", esk, ev.Index, ref, ref.Hash, in.Seq, l.EventHash(in))
			}
		}
	}
	check("sum.out", []string{"nums.a", "nums.b", "nums.c"})
	check("sum.out.rejected", []string{"nums.a", "nums.b", "nums.c"})
	check("again.out", []string{"sum.out"})

	path, err := l.Trace(ctxT(t), "again.out", want-1)
	if err != nil {
		t.Fatal(err)
	}
	if len(path) != 3 || path[0].ESK != "again.out" || path[1].ESK != "sum.out" || path[2].ESK != "nums.c" || path[2].Index != n/3-1 || path[2].Input != nil {
		t.Fatalf("trace: %+v", path)
	}
}
