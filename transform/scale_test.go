package transform_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/detbus/detbus/internal/testnats"
	"github.com/detbus/detbus/transform"
	"github.com/detbus/detbus/transport"
)

// tallyDET counts its inputs {"n":N} and sums their N. It emits an output
// only for every 100,000th N and for inputs that ask ({"n":N,"echo":true}):
// the input's ESK and index with the count and sum so far, which depend on
// every input before it.
type tallyDET struct {
	Count uint64 `json:"count"`
	Sum   int64  `json:"sum"`
	// stepped, if set, is called before each step: a probe for the test,
	// not part of the state.
	stepped func(transform.Input)
}

type tallyOutput struct {
	ESK   string `json:"esk"`
	Index uint64 `json:"index"`
	Count uint64 `json:"count"`
	Sum   int64  `json:"sum"`
}

func (d *tallyDET) Step(_ *transform.Context, in transform.Input) ([][]byte, error) {
	if d.stepped != nil {
		d.stepped(in)
	}
	var v struct {
		N    int64
		Echo bool
	}
	if err := in.Decode(&v); err != nil {
		return nil, err
	}
	d.Count++
	d.Sum += v.N
	if v.N%100_000 != 0 && !v.Echo {
		return nil, nil
	}
	return [][]byte{transform.JSON(tallyOutput{ESK: in.ESK, Index: in.Index, Count: d.Count, Sum: d.Sum})}, nil
}

func (d *tallyDET) Snapshot() ([]byte, error) { return json.Marshal(d) }
func (d *tallyDET) Restore(b []byte) error    { return json.Unmarshal(b, d) }

// tallyInput is where the input with N = i goes and what it says: four
// ESKs in turn, so that N = i is index i/4 of its ESK.
func tallyInput(i int, echo bool) (esk string, payload []byte) {
	esk = "tally.in." + strconv.Itoa(i%4)
	if echo {
		return esk, fmt.Appendf(nil, `{"n":%d,"echo":true}`, i)
	}
	return esk, fmt.Appendf(nil, `{"n":%d}`, i)
}

// TestScaleRestoreReadsOnlyTheTail: a DET instance that runs through
// 1,000,000 inputs and snapshots at the last; a second instance on a fresh
// Log restores that snapshot and reads only the inputs written after it,
// producing the outputs a run from the start would have.
func TestScaleRestoreReadsOnlyTheTail(t *testing.T) {
	if testnats.Race {
		t.Skip("folds a log of a million events: runs without the race detector (the second pass of scripts/test.sh)")
	}
	if testing.Short() {
		t.Skip("folds a log of a million events")
	}
	const n, tail = 1_000_000, 10
	s := testnats.Node(t)
	url := s.ClientURL()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	check := testnats.Log(t, url, transport.Config{}) // for the test's own reads and writes

	begin := time.Now()
	err := testnats.Publish(ctx, url, n, func(i int) (string, []byte) {
		esk, p := tallyInput(i, false)
		return check.Subject(esk), p
	})
	if err != nil {
		t.Fatal(err)
	}
	st, err := check.State(ctx, "")
	if err != nil || st.Messages != n {
		t.Fatalf("the log holds %d events (%v), want %d", st.Messages, err, n)
	}
	lastInput := st.LastSeq
	t.Logf("published %d inputs in %v", n, time.Since(begin).Round(time.Millisecond))

	// The outputs of one DET folding every input from the start, in
	// process: what every instance must produce.
	oracle := &tallyDET{}
	var want []string
	fold := func(i int, echo bool) {
		esk, p := tallyInput(i, echo)
		in := transform.Input{ESK: esk, Index: uint64(i / 4), Data: p}
		outs, err := oracle.Step(transform.NewContext(in), in)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range outs {
			want = append(want, string(o))
		}
	}
	for i := range n {
		fold(i, false)
	}
	wantFirst := uint64(len(want))

	spec := transform.Spec{Name: "tally", Version: "1", Inputs: []string{"tally.in.*"}, Output: "tally.out",
		New: func() transform.Transform { return &tallyDET{} }}
	store1, err := transform.OpenSnapshotStore(ctx, check, "")
	if err != nil {
		t.Fatal(err)
	}
	// One snapshot, at the last input: SnapshotEvery counts the inputs.
	begin = time.Now()
	first := start(t, url, transform.Config{Spec: spec, Instance: "first", Snapshots: store1,
		SnapshotEvery: n, SnapshotInterval: time.Hour})
	testnats.WaitFor(t, 6*time.Minute, "the first instance to apply every input", func() error {
		if st := first.r.Status(); st.InputSeq < lastInput {
			return fmt.Errorf("at input %d of %d", st.InputSeq, lastInput)
		}
		return nil
	})
	t.Logf("first instance: %d inputs in %v", n, time.Since(begin).Round(time.Millisecond))
	var snap transform.Snapshot
	testnats.WaitFor(t, time.Minute, "a snapshot at the last input", func() error {
		s, ok, err := store1.Latest(ctx, spec)
		if err != nil || !ok || s.InputSeq != lastInput {
			return fmt.Errorf("latest at input %d (%v, %v)", s.InputSeq, ok, err)
		}
		snap = s
		return nil
	})
	first.halt(t)
	if st := first.r.Status(); st.Inputs != n || st.Outputs != wantFirst || st.Won != wantFirst || len(st.Divergences) != 0 {
		t.Fatalf("first instance: %+v; want %d inputs, %d outputs won", st, n, wantFirst)
	}
	if snap.Outputs != wantFirst || snap.Rejections != 0 {
		t.Fatalf("snapshot at input %d: %d outputs, %d rejections; want %d, 0", snap.InputSeq, snap.Outputs, snap.Rejections, wantFirst)
	}

	// A few more inputs, every other one asking for an output.
	var lastTail uint64
	for i := n; i < n+tail; i++ {
		echo := i%2 == 1
		esk, p := tallyInput(i, echo)
		pos, err := check.Write(ctx, esk, p)
		if err != nil {
			t.Fatal(err)
		}
		if pos.Index != uint64(i/4) {
			t.Fatalf("input %d landed at %s#%d, want index %d", i, esk, pos.Index, i/4)
		}
		lastTail = pos.Seq
		fold(i, echo)
	}
	wantTail := uint64(len(want)) - wantFirst

	// The second instance, on a fresh Log, restores the snapshot.
	l2 := testnats.Log(t, url, transport.Config{})
	store2, err := transform.OpenSnapshotStore(ctx, l2, "")
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	firstNew := make(chan time.Time, 1)
	spec2 := spec
	spec2.New = func() transform.Transform {
		return &tallyDET{stepped: func(transform.Input) { once.Do(func() { firstNew <- time.Now() }) }}
	}
	started := time.Now()
	second := startWith(t, transform.Config{Spec: spec2, Log: l2, Instance: "second", Snapshots: store2,
		SnapshotEvery: n, SnapshotInterval: time.Hour})
	var ready time.Duration
	select {
	case at := <-firstNew:
		ready = at.Sub(started)
	case err := <-second.done:
		second.done <- err // for the cleanup
		t.Fatalf("the second instance stopped: %v", err)
	case <-ctx.Done():
		t.Fatal("the second instance stepped no input")
	}
	testnats.WaitFor(t, time.Minute, "the second instance to apply the new inputs", func() error {
		if st := second.r.Status(); st.InputSeq < lastTail || st.Won < wantTail {
			return fmt.Errorf("at input %d of %d, %d outputs of %d", st.InputSeq, lastTail, st.Won, wantTail)
		}
		return nil
	})
	readyAll := time.Since(started)
	st2 := second.r.Status()
	if st2.Inputs != tail || st2.Outputs != wantFirst+wantTail || st2.Won != wantTail || st2.Lost != 0 || len(st2.Divergences) != 0 {
		t.Fatalf("second instance: %+v; want %d inputs applied, %d outputs (%d won)", st2, tail, wantFirst+wantTail, wantTail)
	}
	// It reads its inputs after the snapshot, and follows its own outputs
	// from the head of the log at its start: nothing else.
	rs := l2.ReadStats()
	if rs.Delivered < tail || rs.Delivered > tail+wantTail {
		t.Fatalf("the second instance's log delivered %d events; want the %d inputs after the snapshot and at most its %d outputs", rs.Delivered, tail, wantTail)
	}
	if rs.DirectMsgs > 2*1000+64 {
		t.Fatalf("the second instance read %d messages by direct get: it walked", rs.DirectMsgs)
	}
	got := outputsOf(t, check, spec.Output)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("outputs differ from a fold from the start\n got %q\nwant %q", got, want)
	}
	t.Logf("second instance: restored the snapshot at input %d, first new input stepped %v after Run started, all %d applied after %v; its log delivered %d events, %d direct gets, %d messages by direct get",
		snap.InputSeq, ready.Round(time.Microsecond), tail, readyAll.Round(time.Microsecond), rs.Delivered, rs.DirectGets, rs.DirectMsgs)
}
