package transform_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/detbus/detbus/internal/testnats"
	"github.com/detbus/detbus/transform"
	"github.com/detbus/detbus/transport"
)

// sumDET keeps a running total per input ESK. Each input {"n":N} yields
// one output, every third input a second one; a negative N is rejected.
type sumDET struct {
	Totals map[string]int64 `json:"totals"`
	Steps  int64            `json:"steps"`
	// salt makes an instance non-deterministic when set.
	salt string
}

func (d *sumDET) Step(ctx *transform.Context, in transform.Input) ([][]byte, error) {
	var v struct{ N int64 }
	if err := in.Decode(&v); err != nil {
		return nil, err
	}
	if v.N < 0 {
		return nil, fmt.Errorf("negative amount %d", v.N)
	}
	d.Totals[in.ESK] += v.N
	d.Steps++
	out := [][]byte{transform.JSON(map[string]any{"esk": in.ESK, "index": in.Index, "total": d.Totals[in.ESK], "salt": d.salt,
		"roll": ctx.Rand().IntN(1000), "t": ctx.Time().String()})}
	if d.Steps%3 == 0 {
		out = append(out, transform.JSON(map[string]any{"every_third": d.Steps}))
	}
	return out, nil
}

func (d *sumDET) Snapshot() ([]byte, error) { return json.Marshal(d) }
func (d *sumDET) Restore(b []byte) error    { return json.Unmarshal(b, d) }

func sumSpec(name, output string) transform.Spec {
	return transform.Spec{Name: name, Version: "1", Inputs: []string{"nums.*"}, Output: output,
		New: func() transform.Transform { return &sumDET{Totals: map[string]int64{}} }}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// writeInputs appends n inputs over three ESKs, every 17th negative, and
// returns the stream sequence of the last.
func writeInputs(t *testing.T, l *transport.Log, from, n int) (last uint64) {
	t.Helper()
	for i := from; i < from+n; i++ {
		v := i
		if i%17 == 16 {
			v = -1
		}
		pos, err := l.Write(ctxT(t), fmt.Sprintf("nums.%c", 'a'+i%3), []byte(fmt.Sprintf(`{"n":%d}`, v)))
		if err != nil {
			t.Fatal(err)
		}
		last = pos.Seq
	}
	return last
}

// testLogger sends a runner's log lines to the test's log.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// expected counts outputs and rejections of sumDET over inputs 0..n-1.
func expected(n int) (outputs, rejections uint64) {
	steps := 0
	for i := range n {
		if i%17 == 16 {
			rejections++
			continue
		}
		steps++
		outputs++
		if steps%3 == 0 {
			outputs++
		}
	}
	return outputs, rejections
}

// outputsOf reads every payload of esk.
func outputsOf(t *testing.T, l *transport.Log, esk string) []string {
	t.Helper()
	var out []string
	for ev, err := range l.Events(ctxT(t), []string{esk}, transport.ReadOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		if ev.Index != uint64(len(out)) {
			t.Fatalf("%s: index %d after %d events", esk, ev.Index, len(out))
		}
		out = append(out, string(ev.Data))
	}
	return out
}

type instance struct {
	r    *transform.Runner
	stop context.CancelFunc
	done chan error
}

func start(t *testing.T, url string, cfg transform.Config) *instance {
	t.Helper()
	cfg.Log = testnats.Log(t, url, transport.Config{})
	return startWith(t, cfg)
}

// startWith runs an instance with cfg (its Log set) until cleanup.
func startWith(t *testing.T, cfg transform.Config) *instance {
	t.Helper()
	return startPrepared(t, cfg, nil)
}

// startPrepared is startWith, calling prepare (if not nil) on the runner
// before it runs.
func startPrepared(t *testing.T, cfg transform.Config, prepare func(*transform.Runner)) *instance {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	r, err := transform.NewRunner(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if prepare != nil {
		prepare(r)
	}
	ctx, cancel := context.WithCancel(context.Background())
	in := &instance{r: r, stop: cancel, done: make(chan error, 1)}
	go func() { in.done <- r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-in.done })
	return in
}

func (in *instance) halt(t *testing.T) {
	t.Helper()
	in.stop()
	if err := <-in.done; err != nil {
		t.Fatalf("instance stopped with %v", err)
	}
	in.done <- nil // for the cleanup
}

func waitOutputs(t *testing.T, l *transport.Log, esk string, n uint64) {
	t.Helper()
	testnats.WaitFor(t, 60*time.Second, fmt.Sprintf("%d outputs on %s", n, esk), func() error {
		c, err := l.Count(ctxT(t), esk)
		if err != nil {
			return err
		}
		if c < n {
			return fmt.Errorf("%d so far", c)
		}
		if c > n {
			t.Fatalf("%s has %d outputs, more than the %d expected", esk, c, n)
		}
		return nil
	})
}

// reference runs one instance of the DET under its own name and output,
// the run the racing instances are compared with.
func reference(t *testing.T, url string, l *transport.Log, n int) []string {
	t.Helper()
	want, _ := expected(n)
	ref := start(t, url, transform.Config{Spec: sumSpec("ref", "ref.out"), Instance: "ref"})
	waitOutputs(t, l, "ref.out", want)
	ref.halt(t)
	return outputsOf(t, l, "ref.out")
}

func TestRacingInstancesMatchReference(t *testing.T) {
	s := testnats.Node(t)
	l := testnats.Log(t, s.ClientURL(), transport.Config{})
	const n = 300
	writeInputs(t, l, 0, n)
	ref := reference(t, s.ClientURL(), l, n)
	want, rejected := expected(n)

	var insts []*instance
	for i := range 3 {
		insts = append(insts, start(t, s.ClientURL(), transform.Config{Spec: sumSpec("sum", "sum.out"), Instance: fmt.Sprint("i", i)}))
	}
	waitOutputs(t, l, "sum.out", want)
	waitOutputs(t, l, "sum.out.rejected", rejected)
	var won uint64
	for i, in := range insts {
		testnats.WaitFor(t, 30*time.Second, "instance caught up", func() error {
			if st := in.r.Status(); st.Won+st.Lost != want+rejected {
				return fmt.Errorf("instance %d: won %d + lost %d", i, st.Won, st.Lost)
			}
			return nil
		})
		st := in.r.Status()
		won += st.Won
		if len(st.Divergences) != 0 {
			t.Fatalf("instance %d diverged: %v", i, st.Divergences)
		}
	}
	if won != want+rejected {
		t.Fatalf("instances won %d outputs in all, want exactly %d", won, want+rejected)
	}
	if got := outputsOf(t, l, "sum.out"); fmt.Sprint(got) != fmt.Sprint(ref) {
		t.Fatalf("racing output differs from the reference run\n got %v\nwant %v", got[:min(5, len(got))], ref[:5])
	}
	rej := outputsOf(t, l, "sum.out.rejected")
	var r0 struct {
		Input struct{ ESK string }
		Error string
	}
	if err := json.Unmarshal([]byte(rej[0]), &r0); err != nil || r0.Error != "negative amount -1" || r0.Input.ESK != "nums.b" {
		t.Fatalf("rejection record %s: %v", rej[0], err)
	}
}

// TestKillAndRestartInstances stops instances mid-stream, including
// whichever is winning, and starts new ones while inputs keep coming.
func TestKillAndRestartInstances(t *testing.T) {
	s := testnats.Node(t)
	url := s.ClientURL()
	l := testnats.Log(t, url, transport.Config{})
	const n = 240
	writeInputs(t, l, 0, n)
	ref := reference(t, url, l, n)

	spec := sumSpec("kr", "kr.out")
	a := start(t, url, transform.Config{Spec: spec, Instance: "a"})
	b := start(t, url, transform.Config{Spec: spec, Instance: "b"})
	testnats.WaitFor(t, 30*time.Second, "some outputs", func() error {
		if st := a.r.Status(); st.Outputs < 20 {
			return fmt.Errorf("%d", st.Outputs)
		}
		return nil
	})
	a.halt(t)
	c := start(t, url, transform.Config{Spec: spec, Instance: "c"})
	testnats.WaitFor(t, 30*time.Second, "more outputs", func() error {
		if st := c.r.Status(); st.Outputs < 60 {
			return fmt.Errorf("%d", st.Outputs)
		}
		return nil
	})
	b.halt(t)
	want, _ := expected(n)
	waitOutputs(t, l, "kr.out", want)
	if got := outputsOf(t, l, "kr.out"); fmt.Sprint(got) != fmt.Sprint(ref) {
		t.Fatal("output after kills and restarts differs from the reference run")
	}
}

func TestNonDeterminismIsCaught(t *testing.T) {
	s := testnats.Node(t)
	url := s.ClientURL()
	l := testnats.Log(t, url, transport.Config{})
	writeInputs(t, l, 0, 10)
	var made atomic.Int64
	spec := sumSpec("nd", "nd.out")
	spec.New = func() transform.Transform {
		// The second instance made salts its outputs from input 5 on.
		d := &sumDET{Totals: map[string]int64{}}
		if made.Add(1) == 2 {
			return &salted{sumDET: d, from: 5}
		}
		return d
	}
	first := start(t, url, transform.Config{Spec: spec, Instance: "honest"})
	want, _ := expected(10)
	waitOutputs(t, l, "nd.out", want)
	first.halt(t)

	second := start(t, url, transform.Config{Spec: spec, Instance: "salted"})
	err := <-second.done
	second.done <- nil
	var d *transform.DivergenceError
	if !errors.As(err, &d) || !errors.Is(err, transform.ErrDivergence) {
		t.Fatalf("salted instance: %v, want a divergence", err)
	}
	// Input 5 is the 6th; outputs before it: inputs 0..4 give 5 + 1 (third step).
	if d.Index != 6 || d.InputSeq == 0 || d.OwnHash == d.FoundHash || d.What != "output" {
		t.Fatalf("divergence %+v, want it at output 6", d)
	}
	if st := second.r.Status(); len(st.Divergences) != 1 || st.Won != 0 {
		t.Fatalf("status after divergence: %+v", st)
	}
}

type salted struct {
	*sumDET
	from uint64
}

func (s *salted) Step(ctx *transform.Context, in transform.Input) ([][]byte, error) {
	if s.Steps+1 > int64(s.from) {
		s.salt = "x"
	}
	return s.sumDET.Step(ctx, in)
}

func TestObservePolicyKeepsComparing(t *testing.T) {
	s := testnats.Node(t)
	url := s.ClientURL()
	l := testnats.Log(t, url, transport.Config{})
	last := writeInputs(t, l, 0, 30)
	spec := sumSpec("ob", "ob.out")
	honest := start(t, url, transform.Config{Spec: spec, Instance: "honest"})
	want, _ := expected(30)
	waitOutputs(t, l, "ob.out", want)
	honest.halt(t)
	bad := spec
	bad.New = func() transform.Transform { return &sumDET{Totals: map[string]int64{}, salt: "x"} }
	obs := start(t, url, transform.Config{Spec: bad, Instance: "observer", OnDivergence: transform.ObserveOnDivergence})
	testnats.WaitFor(t, 30*time.Second, "observer through the inputs", func() error {
		if st := obs.r.Status(); st.InputSeq < last || st.Pending > 0 {
			return fmt.Errorf("at input %d, %d outputs not settled", st.InputSeq, st.Pending)
		}
		return nil
	})
	st := obs.r.Status()
	if !st.Observer || st.Won != 0 || len(st.Divergences) < 2 {
		t.Fatalf("observer status: observer=%v won=%d divergences=%d", st.Observer, st.Won, len(st.Divergences))
	}
	if c, _ := l.Count(ctxT(t), "ob.out"); c != want {
		t.Fatalf("an observer wrote: %d outputs", c)
	}
}

func TestConfigValidation(t *testing.T) {
	s := testnats.Node(t)
	l := testnats.Log(t, s.ClientURL(), transport.Config{})
	bad := sumSpec("a.b", "nums.x")
	bad.New = nil
	_, err := transform.NewRunner(transform.Config{Spec: bad, Log: l})
	for _, want := range []string{"spec name", "has no New", "matches the output"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("validation: %v, want it to say %q", err, want)
		}
	}
}
