package transform_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/detbus/detbus/internal/testnats"
	"github.com/detbus/detbus/transform"
	"github.com/detbus/detbus/transport"
)

// settled waits until in has stepped through the input at seq last and
// settled every output it stepped.
func settled(t *testing.T, in *instance, last uint64) transform.Status {
	t.Helper()
	testnats.WaitFor(t, time.Minute, "instance settled", func() error {
		if st := in.r.Status(); st.InputSeq < last || st.Pending > 0 {
			return fmt.Errorf("at input %d of %d, %d outputs pending", st.InputSeq, last, st.Pending)
		}
		return nil
	})
	return in.r.Status()
}

// TestGroupCommitRace: three instances start together over inputs
// already in the log, so outputs pile up behind each append and go out as
// atomic batches that race. Every output lands exactly once (the won
// counts add up to the outputs: a losing batch landed nothing), and the
// log equals a single instance's run byte for byte.
func TestGroupCommitRace(t *testing.T) {
	s := testnats.Node(t)
	url := s.ClientURL()
	l := testnats.Log(t, url, transport.Config{})
	const n = 3000
	last := writeInputs(t, l, 0, n)
	ref := reference(t, url, l, n)
	want, rejected := expected(n)

	var insts []*instance
	for i := range 3 {
		insts = append(insts, start(t, url, transform.Config{Spec: sumSpec("gc", "gc.out"), Instance: fmt.Sprint("i", i)}))
	}
	waitOutputs(t, l, "gc.out", want)
	waitOutputs(t, l, "gc.out.rejected", rejected)
	var won, batches uint64
	for i, in := range insts {
		st := settled(t, in, last)
		if st.Won+st.Lost != want+rejected || len(st.Divergences) != 0 {
			t.Fatalf("instance %d: won %d + lost %d of %d, divergences %v", i, st.Won, st.Lost, want+rejected, st.Divergences)
		}
		won += st.Won
		batches += st.Batches
	}
	if won != want+rejected {
		t.Fatalf("the instances wrote %d outputs in all, want each of the %d once", won, want+rejected)
	}
	if batches == 0 {
		t.Fatal("no output went out in a batch")
	}
	if got := outputsOf(t, l, "gc.out"); fmt.Sprint(got) != fmt.Sprint(ref) {
		t.Fatal("outputs of racing batches differ from the reference run")
	}
	if got, want := outputsOf(t, l, "gc.out.rejected"), outputsOf(t, l, "ref.out.rejected"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("rejections %v, want %v", got, want)
	}
}

// fanDET turns an input {"n":N,"size":S} into N outputs of S bytes.
type fanDET struct{ Steps int }

func (d *fanDET) Step(_ *transform.Context, in transform.Input) ([][]byte, error) {
	var v struct{ N, Size int }
	if err := in.Decode(&v); err != nil {
		return nil, err
	}
	d.Steps++
	outs := make([][]byte, v.N)
	for i := range outs {
		head := fmt.Sprintf("%d.%d.", d.Steps, i)
		outs[i] = append([]byte(head), bytes.Repeat([]byte{'a' + byte(i%26)}, max(0, v.Size-len(head)))...)
	}
	return outs, nil
}

func (d *fanDET) Snapshot() ([]byte, error) { return json.Marshal(d) }
func (d *fanDET) Restore(b []byte) error    { return json.Unmarshal(b, d) }

// TestGroupCommitLimits: one input whose outputs overflow a batch by
// count, then one that overflows it by bytes. Every output lands in
// order; no batch holds more than 1,000 events or more than the byte
// bound, and a full batch of 1,000 went out.
func TestGroupCommitLimits(t *testing.T) {
	s := testnats.Node(t)
	url := s.ClientURL()
	l := testnats.Log(t, url, transport.Config{})
	ctx := ctxT(t)
	spec := transform.Spec{Name: "fan", Version: "1", Inputs: []string{"fan.in"}, Output: "fan.out",
		New: func() transform.Transform { return &fanDET{} }}
	in := start(t, url, transform.Config{Spec: spec, Instance: "one"})
	const many, heavy, heavySize = 5000, 40, 512 << 10
	if _, err := l.Write(ctx, "fan.in", []byte(fmt.Sprintf(`{"n":%d,"size":16}`, many))); err != nil {
		t.Fatal(err)
	}
	waitOutputs(t, l, "fan.out", many)
	pos, err := l.Write(ctx, "fan.in", []byte(fmt.Sprintf(`{"n":%d,"size":%d}`, heavy, heavySize)))
	if err != nil {
		t.Fatal(err)
	}
	waitOutputs(t, l, "fan.out", many+heavy)
	st := settled(t, in, pos.Seq)

	// Group the stored outputs by write id: the events of one batch share
	// it, an output appended alone has its own.
	ref := &fanDET{}
	var wantOuts [][]byte
	for _, v := range []string{fmt.Sprintf(`{"n":%d,"size":16}`, many), fmt.Sprintf(`{"n":%d,"size":%d}`, heavy, heavySize)} {
		outs, err := ref.Step(nil, transform.Input{Data: []byte(v)})
		if err != nil {
			t.Fatal(err)
		}
		wantOuts = append(wantOuts, outs...)
	}
	type group struct {
		id           string
		count, bytes int
		lastSeq      uint64
	}
	var groups []group
	i := 0
	for ev, err := range l.Events(ctx, []string{"fan.out"}, transport.ReadOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(ev.Data, wantOuts[i]) {
			t.Fatalf("output %d: %.40q, want %.40q", i, ev.Data, wantOuts[i])
		}
		i++
		id := ev.Header.Get(transport.HeaderWriteID)
		if n := len(groups); n > 0 && groups[n-1].id == id {
			if ev.Seq != groups[n-1].lastSeq+1 {
				t.Fatalf("a batch is not contiguous: seq %d after %d", ev.Seq, groups[n-1].lastSeq)
			}
			groups[n-1].count++
			groups[n-1].bytes += len(ev.Data)
			groups[n-1].lastSeq = ev.Seq
			continue
		}
		groups = append(groups, group{id: id, count: 1, bytes: len(ev.Data), lastSeq: ev.Seq})
	}
	full, heavyBatch := false, false
	for _, g := range groups {
		if g.count > transport.MaxBatch || g.bytes > transform.BatchMaxBytes {
			t.Fatalf("a batch of %d events, %d bytes", g.count, g.bytes)
		}
		full = full || g.count == transport.MaxBatch
		heavyBatch = heavyBatch || g.bytes > transform.BatchMaxBytes/2
	}
	if !full || !heavyBatch {
		t.Fatalf("batches %+v: want one of %d events and one over half the byte bound", groups, transport.MaxBatch)
	}
	batches := 0
	for _, g := range groups {
		if g.count > 1 {
			batches++
		}
	}
	if st.Batches != uint64(batches) {
		t.Fatalf("the status counts %d batches, the log holds %d", st.Batches, batches)
	}
}

// panicDET is sumDET that panics on the input {"n":13}, or, as the
// reference, rejects it with an error.
type panicDET struct {
	*sumDET
	reference bool
}

func (d *panicDET) Step(ctx *transform.Context, in transform.Input) ([][]byte, error) {
	if strings.Contains(string(in.Data), `"n":13}`) {
		if d.reference {
			return nil, errors.New("thirteen")
		}
		var m map[string]int
		m["thirteen"]++ // a nil map: panics
	}
	return d.sumDET.Step(ctx, in)
}

// TestStepPanicIsARejection: a Step that panics rejects the input on every
// instance alike, and the instances go on with the next input.
func TestStepPanicIsARejection(t *testing.T) {
	s := testnats.Node(t)
	url := s.ClientURL()
	l := testnats.Log(t, url, transport.Config{})
	const n = 60
	last := writeInputs(t, l, 0, n)
	spec := func(name string, reference bool) transform.Spec {
		return transform.Spec{Name: name, Version: "1", Inputs: []string{"nums.*"}, Output: name + ".out",
			New: func() transform.Transform {
				return &panicDET{sumDET: &sumDET{Totals: map[string]int64{}}, reference: reference}
			}}
	}
	ref := start(t, url, transform.Config{Spec: spec("pref", true), Instance: "ref"})
	settled(t, ref, last)
	want, wantRejected := outputsOf(t, l, "pref.out"), outputsOf(t, l, "pref.out.rejected")

	var insts []*instance
	for i := range 3 {
		insts = append(insts, start(t, url, transform.Config{Spec: spec("pan", false), Instance: fmt.Sprint("i", i)}))
	}
	for i, in := range insts {
		st := settled(t, in, last)
		if st.Stopped != "" || len(st.Divergences) != 0 || st.Rejections != uint64(len(wantRejected)) {
			t.Fatalf("instance %d: %+v", i, st)
		}
	}
	if got := outputsOf(t, l, "pan.out"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatal("outputs after a panic differ from those after a rejection")
	}
	rejected := outputsOf(t, l, "pan.out.rejected")
	if len(rejected) != len(wantRejected) {
		t.Fatalf("%d rejections, want %d", len(rejected), len(wantRejected))
	}
	panics := 0
	for i, r := range rejected {
		var rec struct{ Error string }
		if err := json.Unmarshal([]byte(r), &rec); err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(rec.Error, "panic: ") {
			panics++
			if !strings.Contains(wantRejected[i], "thirteen") || !strings.Contains(rec.Error, "nil map") {
				t.Fatalf("rejection %d: %s, where the reference has %s", i, r, wantRejected[i])
			}
		}
	}
	if panics != 1 {
		t.Fatalf("%d panics recorded, want 1: %v", panics, rejected)
	}
}

// TestInputsThatEndAreResumed: when the inputs end without the context
// (here after 10 inputs, once), the runner resumes after the last input
// it applied, and says so.
func TestInputsThatEndAreResumed(t *testing.T) {
	s := testnats.Node(t)
	url := s.ClientURL()
	l := testnats.Log(t, url, transport.Config{})
	const n = 40
	last := writeInputs(t, l, 0, n)
	var logs testnats.SyncBuffer
	cfg := transform.Config{Spec: sumSpec("end", "end.out"), Instance: "one", Logger: slogTo(&logs)}
	cfg.Log = testnats.Log(t, url, transport.Config{})
	var once sync.Once
	in := startPrepared(t, cfg, func(r *transform.Runner) {
		transform.WrapInputs(r, func(inputs iter.Seq2[transport.Event, error]) iter.Seq2[transport.Event, error] {
			cut := false
			once.Do(func() { cut = true })
			if !cut {
				return inputs
			}
			return func(yield func(transport.Event, error) bool) {
				k := 0
				for ev, err := range inputs {
					if k == 10 || !yield(ev, err) {
						return
					}
					k++
				}
			}
		})
	})
	want, rejected := expected(n)
	waitOutputs(t, l, "end.out", want)
	waitOutputs(t, l, "end.out.rejected", rejected)
	if st := settled(t, in, last); st.Inputs != n {
		t.Fatalf("applied %d inputs, want %d: none twice, none skipped", st.Inputs, n)
	}
	if !strings.Contains(logs.String(), "the inputs stopped; resuming") {
		t.Fatalf("nothing logged about the inputs ending: %s", logs.String())
	}
}

func slogTo(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
}
